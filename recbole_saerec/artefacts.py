"""The intent-artefact contract between offline intent construction and the models.

One directory per (dataset, intent build), written by ``recbole_saerec.intents``
and read by SAERec (and explain/steer, tune)::

    <intent_dir>/
      manifest.json        fingerprint + stats + file list (written LAST: its
                           presence means the build completed)
      intents.pt           {"vectors": float32 [m, d_t], "latent_ids": int64 [m],
                            "fingerprint": dict}
      item_intents.pt      {"item_tokens": list[str] (n), "indices": int64 [n, r],
                            "values": float32 [n, r], "fingerprint": dict}
                           sparse per-item activations over the m intent ROWS
                           (index into `vectors`, -1 = empty slot, value 0).
                           Items without text have all slots empty.
      catalogue.json       [{"row", "latent_id", "words", "summary", "verdict",
                             "frequency", ...}] one entry per kept intent, row order
      <dataset>.itemintent RecBole atomic file (item_id:token, intent_row:token_seq,
                           intent_act:float_seq) for users who load it as a plain
                           RecBole item feature; SAERec reads item_intents.pt.

All ``.pt`` files hold plain tensors/lists/dicts so they load with
``torch.load(weights_only=True)``.

The fingerprint names what the intents were built from::

    {"dataset": str, "items_sha1": str, "n_items": int, "encoder": str,
     "layer": int|None, "pooling": str, "corpus_sha1": str, "method": "sae"|"kmeans",
     "n_latents": int, "k": int|None, "keep": str, "judge": str, "format_version": int}

GuidedRec's attribute vectors are a second, single-file contract, built offline by
``recbole_saerec.intents.guided.build_guided`` and read by the model with :func:`load_guided`::

    <guided_cache_dir>/<dataset>/guided-<fingerprint>.pt
      {"names": list[str] (A attributes kept), "vectors": list of A float32 [T_a + 1, d_t]
       (row 0 = zeros: attribute missing), "index": int64 [n, A] (row of each item's text
       per attribute), "texts": list of A lists of T_a str, "item_tokens": list[str] (n),
       "fingerprint": str, "encoder": dict, "dataset": str, "format_version": int}

The fingerprint hashes the item set, the templates' filled texts and the encoder
settings; the path of the build a run used is ``guided_path`` in its config (set by
``quick_start.ensure_guided``), so a checkpoint names the exact file it was trained on.

A model refuses artefacts whose dataset differs from its config, whose item
set does not cover the dataset's items, or whose encoder differs from the one
the config names (``intent_encoder``), and any empty / NaN / malformed tensor.

The manifest also records the sha256 of every contract file (``sha256``) and of
the raw data files the corpus was read from (``sources``): a file changed or cut
short after the build is refused before it is unpickled, and changed item texts
are caught by ``intents.build.check_intent_sources``. Every file is written to a
per-process temporary name, fsynced and renamed into place, so an interrupted or
concurrent writer never leaves a torn file under the real name.
"""
import hashlib
import json
import os
from logging import getLogger

import torch

from recbole_saerec.fileio import file_sha256, save_tensor_file_atomic, write_json_atomic

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INTENTS = "intents.pt"
ITEM_INTENTS = "item_intents.pt"
CATALOGUE = "catalogue.json"


class IntentArtefactError(ValueError):
    """Intent artefacts are missing, malformed, or built for something else."""


def items_sha1(item_tokens):
    """Order-independent hash of an item-token set (the dataset's identity for intents)."""
    h = hashlib.sha1()
    for tok in sorted(str(t) for t in item_tokens):
        h.update(tok.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def resolve_intent_dir(config):
    """`intent_dir` if set, else `<intent_root>/<dataset>/<intent_tag>` (relative to the cwd)."""
    explicit = config["intent_dir"] if "intent_dir" in config else None
    if explicit:
        return os.path.abspath(explicit)
    root = config["intent_root"] if "intent_root" in config and config["intent_root"] else "saved_intents"
    tag = config["intent_tag"] if "intent_tag" in config and config["intent_tag"] else "default"
    return os.path.abspath(os.path.join(root, config["dataset"], tag))


def shared_cache_dir(intent_root, dataset):
    """The cache every build of a dataset shares: the default build's own (`<root>/<dataset>/default/cache`).

    build_intents keys each cached stage by its inputs and settings, so builds that differ
    only downstream (k, the judge filter, KMeans instead of the SAE) reuse the same text
    embeddings, and an ablation studies only the part it changes.
    """
    return os.path.join(os.path.abspath(intent_root or "saved_intents"), dataset, "default", "cache")


def build_hint(dataset, intent_dir):
    return (
        f"Build them with: python -m recbole_saerec.intents build --dataset={dataset} "
        f"--intent_dir={intent_dir}  (or set intent_dir / intent_tag to an existing build)."
    )


def save_artefacts(intent_dir, fingerprint, vectors, latent_ids, item_tokens, indices, values,
                   catalogue, stats=None, extra_files=(), sources=None):
    """Write a complete artefact set; the manifest goes last (a partial dir has none).

    ``sources``: {path: sha256} of the raw files the corpus was read from (checked later
    by ``intents.build.check_intent_sources``).
    """
    os.makedirs(intent_dir, exist_ok=True)
    fingerprint = dict(fingerprint, format_version=FORMAT_VERSION)
    vectors = torch.as_tensor(vectors, dtype=torch.float32).contiguous()
    latent_ids = torch.as_tensor(latent_ids, dtype=torch.int64).contiguous()
    indices = torch.as_tensor(indices, dtype=torch.int64).contiguous()
    values = torch.as_tensor(values, dtype=torch.float32).contiguous()
    manifest_path = os.path.join(intent_dir, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # invalidate the old build before overwriting its parts
    save_tensor_file_atomic(os.path.join(intent_dir, INTENTS),
                            {"vectors": vectors, "latent_ids": latent_ids, "fingerprint": fingerprint})
    save_tensor_file_atomic(os.path.join(intent_dir, ITEM_INTENTS),
                            {"item_tokens": [str(t) for t in item_tokens], "indices": indices,
                             "values": values, "fingerprint": fingerprint})
    write_json_atomic(os.path.join(intent_dir, CATALOGUE), catalogue)
    write_json_atomic(manifest_path, {
        "fingerprint": fingerprint, "n_intents": int(vectors.shape[0]), "dim": int(vectors.shape[1]),
        "n_items": len(item_tokens), "stats": stats or {},
        "files": [INTENTS, ITEM_INTENTS, CATALOGUE, *extra_files],
        "sha256": {name: file_sha256(os.path.join(intent_dir, name)) for name in (INTENTS, ITEM_INTENTS, CATALOGUE)},
        "sources": dict(sources or {}),
    })


class IntentArtefacts:
    """Loaded and validated artefacts. Attributes: vectors, latent_ids, fingerprint,
    item_tokens, indices, values, catalogue, manifest, intent_dir."""

    def __init__(self, intent_dir, vectors, latent_ids, fingerprint, item_tokens, indices, values,
                 catalogue, manifest):
        self.intent_dir = intent_dir
        self.vectors, self.latent_ids, self.fingerprint = vectors, latent_ids, fingerprint
        self.item_tokens, self.indices, self.values = item_tokens, indices, values
        self.catalogue, self.manifest = catalogue, manifest

    @property
    def n_intents(self):
        return self.vectors.shape[0]

    @property
    def dim(self):
        return self.vectors.shape[1]

    def item_activation_rows(self, token_to_id, n_items):
        """(index, values), each [n_items, r], in a RecBole dataset's internal item-id order: each
        item's top-r intents and their activations. Row 0 ([PAD]), items without text and empty
        slots get index 0 with value 0."""
        r = self.indices.shape[1]
        index = torch.zeros(n_items, r, dtype=torch.int64)
        values = torch.zeros(n_items, r)
        for pos, tok in enumerate(self.item_tokens):
            iid = token_to_id.get(tok)
            if iid is None:
                continue
            filled = self.indices[pos] >= 0
            index[iid] = torch.where(filled, self.indices[pos], 0)
            values[iid] = torch.where(filled, self.values[pos], 0.0)
        return index, values

    def item_activation_matrix(self, token_to_id, n_items):
        """Dense [n_items, m] activations in a RecBole dataset's internal item-id order.

        Row 0 ([PAD]) and items without text stay zero.
        """
        dense = torch.zeros(n_items, self.n_intents)
        rows, cols, vals = [], [], []
        for pos, tok in enumerate(self.item_tokens):
            iid = token_to_id.get(tok)
            if iid is None:
                continue
            mask = self.indices[pos] >= 0
            cols.append(self.indices[pos][mask])
            vals.append(self.values[pos][mask])
            rows.append(torch.full((int(mask.sum()),), iid, dtype=torch.int64))
        if rows:
            dense[torch.cat(rows), torch.cat(cols)] = torch.cat(vals)
        return dense


def _fail(intent_dir, dataset, what):
    raise IntentArtefactError(f"Intent artefacts in {intent_dir}: {what}\n{build_hint(dataset, intent_dir)}")


def check_file_hashes(intent_dir, dataset, manifest):
    """Refuse a contract file whose bytes differ from the build's (edited, overwritten, truncated)."""
    recorded = manifest.get("sha256")
    if not recorded:  # built before hashes were recorded: nothing to compare with
        getLogger().warning(f"Intent artefacts in {intent_dir} carry no content hashes (an older build): "
                            f"they are not checked for corruption. {build_hint(dataset, intent_dir)}")
        return
    for name, expected in recorded.items():
        path = os.path.join(intent_dir, name)
        if file_sha256(path) != expected:
            _fail(intent_dir, dataset, f"{name} ({os.path.getsize(path)} bytes) differs from the file the build "
                                       f"wrote (sha256 recorded in {MANIFEST}): it was modified, overwritten or "
                                       "truncated after the build. Rebuild the intents.")


def _load_tensor_file(intent_dir, dataset, name):
    try:
        return torch.load(os.path.join(intent_dir, name), weights_only=True)
    except Exception as exc:  # torch raises OSError/RuntimeError/UnpicklingError for torn or foreign files
        _fail(intent_dir, dataset, f"{name} cannot be read as a tensor file ({type(exc).__name__}: {exc}); "
                                   "it is truncated or not what the build wrote.")


def load_artefacts(intent_dir, dataset, item_tokens=None, encoder=None):
    """Load and check an artefact directory.

    Args:
        intent_dir: the directory.
        dataset: the dataset name the caller runs on (must equal the fingerprint's).
        item_tokens: the caller's item tokens (without [PAD]); every one must be
            covered by the artefacts (else they were built for another item set).
        encoder: if given, the encoder name the caller expects.
    """
    manifest_path = os.path.join(intent_dir, MANIFEST)
    if not os.path.isdir(intent_dir):
        _fail(intent_dir, dataset, "directory does not exist.")
    if not os.path.isfile(manifest_path):
        _fail(intent_dir, dataset, f"no {MANIFEST} (missing, or the build was interrupted before finishing).")
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        _fail(intent_dir, dataset, f"{MANIFEST} is not valid JSON ({exc}): the directory is damaged.")
    for name in (INTENTS, ITEM_INTENTS, CATALOGUE):
        if not os.path.isfile(os.path.join(intent_dir, name)):
            _fail(intent_dir, dataset, f"file {name} is missing.")
    check_file_hashes(intent_dir, dataset, manifest)
    fp = manifest.get("fingerprint", {})
    if fp.get("format_version") != FORMAT_VERSION:
        _fail(intent_dir, dataset, f"format version {fp.get('format_version')} != {FORMAT_VERSION}.")
    if fp.get("dataset") != dataset:
        _fail(intent_dir, dataset, f"built for dataset '{fp.get('dataset')}', not '{dataset}'.")
    if encoder and fp.get("encoder") != encoder:
        _fail(intent_dir, dataset, f"built with encoder '{fp.get('encoder')}', but the config names "
                                   f"intent_encoder='{encoder}'.")
    intents = _load_tensor_file(intent_dir, dataset, INTENTS)
    items = _load_tensor_file(intent_dir, dataset, ITEM_INTENTS)
    for name, part in ((INTENTS, intents), (ITEM_INTENTS, items)):
        if part.get("fingerprint") != fp:
            _fail(intent_dir, dataset, f"{name} has a different fingerprint than {MANIFEST} "
                                       "(files from two different builds).")
    vectors, latent_ids = intents["vectors"], intents["latent_ids"]
    if vectors.dim() != 2 or vectors.shape[0] == 0:
        _fail(intent_dir, dataset, f"intent matrix has shape {tuple(vectors.shape)}: the intent set is empty "
                                   "(the judge kept no latent? try keep: probably, or more latents).")
    if not torch.isfinite(vectors).all():
        _fail(intent_dir, dataset, "intent matrix contains NaN/inf.")
    if latent_ids.shape != (vectors.shape[0],):
        _fail(intent_dir, dataset, f"latent_ids shape {tuple(latent_ids.shape)} != ({vectors.shape[0]},).")
    indices, values = items["indices"], items["values"]
    if indices.shape != values.shape or indices.dim() != 2 or indices.shape[0] != len(items["item_tokens"]):
        _fail(intent_dir, dataset, "item_intents.pt: indices/values/item_tokens shapes disagree.")
    if indices.numel() and (indices.max() >= vectors.shape[0] or indices.min() < -1):
        _fail(intent_dir, dataset, f"item_intents.pt: intent index out of range [-1, {vectors.shape[0]}).")
    if not torch.isfinite(values).all():
        _fail(intent_dir, dataset, "item_intents.pt contains NaN/inf activations.")
    if item_tokens is not None:
        known = set(items["item_tokens"])
        missing = [t for t in item_tokens if t not in known]
        if missing:
            _fail(intent_dir, dataset, f"{len(missing)} of the dataset's {len(item_tokens)} items are not in "
                                       f"the artefacts (e.g. {missing[:3]}): built for another item set.")
    with open(os.path.join(intent_dir, CATALOGUE), encoding="utf-8") as f:
        catalogue = json.load(f)
    if len(catalogue) != vectors.shape[0]:
        _fail(intent_dir, dataset, f"catalogue has {len(catalogue)} entries for {vectors.shape[0]} intents.")
    return IntentArtefacts(intent_dir, vectors, latent_ids, fp, items["item_tokens"], indices, values,
                           catalogue, manifest)


# ---------------------------------------------------------------------------- GuidedRec's contract
ITEM_TEXT_FORMAT_VERSION = 1
ITEM_TEXT_KEYS = ("item_tokens", "vectors", "has_text", "fingerprint")


def item_text_file(intent_root, dataset, fingerprint):
    """Where the item-text vectors of a dataset live (intents/item_text.py)."""
    return os.path.join(os.path.abspath(intent_root or "saved_intents"), str(dataset), "item_text",
                        f"item_text-{fingerprint}.pt")


def load_item_text(path, dataset, item_tokens):
    """Load and check an item-text build; (vectors [len(item_tokens), d], has_text [len]) in that order.

    Refuses a missing, unreadable or malformed file, another dataset and a build that lacks any of
    the caller's items, with the file and the fix named.
    """
    def fail(what):
        raise ValueError(f"item-text vectors {path} for dataset '{dataset}': {what} Fix: delete the file and rerun "
                         f"(the run rebuilds it from the dataset's text).")

    if not path or not os.path.isfile(path):
        fail("no such file (item_text_path is not set, or points nowhere).")
    try:
        saved = torch.load(path, weights_only=True)
    except Exception as exc:  # a torn or foreign file: say which, never a bare unpickling error
        fail(f"unreadable ({type(exc).__name__}: {exc}).")
    missing = [k for k in ITEM_TEXT_KEYS if k not in saved]
    if missing:
        fail(f"keys {missing} are missing.")
    if saved.get("format_version") != ITEM_TEXT_FORMAT_VERSION:
        fail(f"format version {saved.get('format_version')} != {ITEM_TEXT_FORMAT_VERSION}.")
    if saved.get("dataset", dataset) != dataset:
        fail(f"built for dataset '{saved.get('dataset')}'.")
    vectors, has_text = saved["vectors"], saved["has_text"]
    if vectors.dim() != 2 or vectors.shape[0] != len(saved["item_tokens"]) or has_text.shape != vectors.shape[:1] \
            or not torch.isfinite(vectors).all():
        fail("vectors / has_text / item_tokens disagree in size, or hold NaN/inf.")
    row_of = {str(t): r for r, t in enumerate(saved["item_tokens"])}
    absent = [t for t in item_tokens if str(t) not in row_of]
    if absent:
        fail(f"{len(absent)} of the dataset's {len(item_tokens)} items are not in the build (e.g. {absent[:3]}): "
             f"built for another item set.")
    rows = torch.tensor([row_of[str(t)] for t in item_tokens], dtype=torch.long)
    return vectors[rows], has_text[rows]


GUIDED_FORMAT_VERSION = 1
GUIDED_KEYS = ("names", "vectors", "index", "texts", "item_tokens", "fingerprint")


def load_dataset_item_text(config, dataset):
    """The item-text vectors of a RecBole dataset's items, in its item-id order (id 1 first; no padding row)."""
    tokens = list(dataset.field2id_token[dataset.iid_field][1:])
    return load_item_text(config["item_text_path"], config["dataset"], tokens)


def guided_file(cache_dir, dataset, fingerprint):
    """Where the guided build with this fingerprint lives."""
    return os.path.join(cache_dir, str(dataset), f"guided-{fingerprint}.pt")


def _guided_fail(path, what):
    raise IntentArtefactError(
        f"GuidedRec attribute vectors {path}: {what} They are built offline before the model: "
        "run through recbole_saerec.quick_start (run_recbole_saerec.py, benchmark, tune do), or call "
        "recbole_saerec.quick_start.ensure_guided(config, dataset), or point guided_path at a build.")


def load_guided(path, dataset, item_tokens, encoder=None):
    """Load and check a guided build; ``index`` comes back in the order of ``item_tokens``.

    Args:
        path: the ``guided-<fingerprint>.pt`` file (``guided_path`` in the config).
        dataset: the dataset the caller runs on (must equal the build's, when it records one).
        item_tokens: the caller's item tokens (without [PAD]); every one must be in the build.
        encoder: if given, the encoder name the caller's config names.
    """
    if not path:
        _guided_fail(path, "guided_path is not set.")
    if not os.path.isfile(path):
        _guided_fail(path, "no such file.")
    try:
        guided = torch.load(path, weights_only=True)
    except Exception as exc:  # a torn or foreign file: say which, never a bare unpickling error
        _guided_fail(path, f"unreadable ({type(exc).__name__}: {exc}).")
    missing = [k for k in GUIDED_KEYS if k not in guided]
    if missing:
        _guided_fail(path, f"keys {missing} are missing.")
    if guided.get("format_version", GUIDED_FORMAT_VERSION) != GUIDED_FORMAT_VERSION:
        _guided_fail(path, f"format version {guided.get('format_version')} != {GUIDED_FORMAT_VERSION}.")
    if guided.get("dataset", dataset) != dataset:
        _guided_fail(path, f"built for dataset '{guided.get('dataset')}', not '{dataset}'.")
    if encoder and (guided.get("encoder") or {}).get("encoder", encoder) != encoder:
        _guided_fail(path, f"built with encoder '{guided['encoder'].get('encoder')}', the config names '{encoder}'.")
    names, vectors, index, texts = guided["names"], guided["vectors"], guided["index"], guided["texts"]
    if not names or not (len(names) == len(vectors) == len(texts)) or index.dim() != 2 \
            or index.shape != (len(guided["item_tokens"]), len(names)):
        _guided_fail(path, "names / vectors / texts / index disagree in size.")
    for a, vec in enumerate(vectors):
        if vec.dim() != 2 or vec.shape[0] != len(texts[a]) + 1 or vec.shape[1] != vectors[0].shape[1]:
            _guided_fail(path, f"vectors of attribute '{names[a]}' have shape {tuple(vec.shape)}.")
        if not torch.isfinite(vec).all() or vec[0].abs().sum() != 0:
            _guided_fail(path, f"vectors of attribute '{names[a]}' hold NaN/inf or a non-zero missing row.")
        if index[:, a].min() < 0 or index[:, a].max() >= vec.shape[0]:
            _guided_fail(path, f"index of attribute '{names[a]}' is out of range.")
    row_of = {str(t): r for r, t in enumerate(guided["item_tokens"])}
    absent = [t for t in item_tokens if str(t) not in row_of]
    if absent:
        _guided_fail(path, f"{len(absent)} of the dataset's {len(item_tokens)} items are not in the build "
                           f"(e.g. {absent[:3]}): built for another item set.")
    rows = torch.tensor([row_of[str(t)] for t in item_tokens], dtype=torch.long)
    return {**guided, "index": index[rows], "item_tokens": [str(t) for t in item_tokens], "path": path}
