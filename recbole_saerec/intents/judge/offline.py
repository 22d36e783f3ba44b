"""The offline judge: a deterministic word-embedding rule, no language model (NOT the paper's LM filter)."""
import re

import numpy as np

from recbole_saerec.intents.judge.cache import Judge
from recbole_saerec.intents.judge.verdicts import VERDICTS


# Unrelated everyday words. Their mean pairwise cosine is the encoder's "no theme" baseline,
# so the offline thresholds mean the same for encoders with different cosine scales.
REFERENCE_WORDS = (
    "river", "guitar", "invoice", "carrot", "tuesday", "planet", "hammer", "poetry", "kitten", "elbow",
    "volcano", "ticket", "umbrella", "algebra", "pillow", "senator", "bicycle", "oxygen", "wedding", "marble",
    "tractor", "lemon", "passport", "cathedral", "battery", "shadow", "football", "vinegar", "glacier", "jacket",
    "microscope", "harbor", "violin", "sandwich", "lawyer", "thunder", "keyboard", "desert", "cotton", "museum",
)

_FUNCTION_LIKE = re.compile(r"^[^\W\d_]{3,}$")


def _content_word(word, stop_words):
    w = str(word).strip().lower()
    return bool(_FUNCTION_LIKE.match(w)) and w not in stop_words


class OfflineJudge(Judge):
    """A deterministic judge without a language model (the default here; NOT the paper's LM filter).

    For each latent's words w_1..w_N:

    1. Content words: alphabetic, >= 3 letters, not an English stop word
       (sklearn's list). If fewer than ``min_content`` (default 0.5) of the
       words are content words, or fewer than 2 are, the verdict is "No"
       (numbers, fragments, function words).
    2. Coherence: the content words are embedded with ``encoder`` (the
       intent encoder by default) and L2-normalised;
       ``coh = mean pairwise cosine``. It is rescaled against the encoder's
       baseline b = mean pairwise cosine of ``REFERENCE_WORDS`` (40 unrelated
       everyday words): ``score = (coh - b) / (1 - b)``; 0 = as unrelated as
       random words, 1 = identical.
    3. ``score >= yes`` -> Yes, ``>= probably`` -> Probably, ``>= maybe`` ->
       Maybe, else No (defaults 0.25 / 0.15 / 0.10, set by hand on ~20 word lists
       with all-MiniLM-L6-v2; random words score ~0, a clear theme 0.3-0.5).
    4. Optional ``example_intents`` (labels such as "sun protection"): the
       latent's centroid (mean of its content-word vectors) is compared with
       each label's embedding; when the best cosine is >= ``example_min_sim``
       the verdict is raised one level (never above Yes, never from a step-1
       "No") and the summary is that label.

    Summary otherwise: the 3 most central content words (highest mean cosine
    to the other content words), joined by ", ".

    All latents are judged in one vectorised pass (every distinct word is
    encoded once). It measures whether the words share a topic, not whether
    the topic is a shopping intent: coherent but useless themes (e.g. a
    cluster of first names or of colours) can pass, and a real intent whose
    words look unrelated can fail.
    """

    backend = "offline"

    def __init__(self, encoder=None, encoder_name=None, min_content=0.5, yes=0.25, probably=0.15, maybe=0.10,
                 example_intents=None, example_min_sim=0.5, encoder_factory=None, word_vectors=None):
        super().__init__()
        if not (yes >= probably >= maybe):
            raise ValueError(f"offline thresholds must satisfy yes >= probably >= maybe, got {yes}, {probably}, {maybe}")
        self._encoder = encoder
        self._encoder_factory = encoder_factory
        self.model = str(encoder_name or getattr(encoder, "name", None) or "all-MiniLM-L6-v2")
        self.min_content = float(min_content)
        self.thresholds = (float(yes), float(probably), float(maybe))
        self.example_intents = [str(x) for x in (example_intents or [])]
        self.example_min_sim = float(example_min_sim)
        self._vectors = {}
        if word_vectors is not None:  # (words, [V, d] array): reuse the vocabulary's embeddings
            words, vecs = word_vectors
            vecs = np.asarray(vecs, dtype=np.float32)
            for w, v in zip(words, vecs):
                self._vectors[str(w).lower()] = v
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        self.stop_words = frozenset(ENGLISH_STOP_WORDS)

    def cache_spec(self):
        return {**super().cache_spec(), "rule": 1, "min_content": self.min_content, "thresholds": self.thresholds,
                "examples": self.example_intents, "example_min_sim": self.example_min_sim}

    @property
    def encoder(self):
        if self._encoder is None:
            if self._encoder_factory is None:
                from recbole_saerec.intents.encode import TextEncoder

                self._encoder = TextEncoder(self.model, bf16=False)
            else:
                self._encoder = self._encoder_factory()
        return self._encoder

    def _encode(self, texts):
        out = self.encoder.encode(list(texts))
        if hasattr(out, "detach"):
            out = out.detach().cpu().float().numpy()
        out = np.asarray(out, dtype=np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _word_matrix(self, words):
        missing = sorted({w for w in words if w not in self._vectors})
        if missing:
            for w, v in zip(missing, self._encode(missing)):
                self._vectors[w] = v
        mat = np.stack([self._vectors[w] for w in words]) if words else np.zeros((0, 1), np.float32)
        return mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)

    def baseline(self):
        """Mean pairwise cosine of ``REFERENCE_WORDS`` under this encoder (the 'no theme' level)."""
        if not hasattr(self, "_baseline"):
            e = self._word_matrix(list(REFERENCE_WORDS))
            g = e @ e.T
            n = len(e)
            self._baseline = float((g.sum() - np.trace(g)) / (n * (n - 1)))
        return self._baseline

    def score(self, latent_words):
        """Per latent: content fraction, raw coherence, rescaled score, centroid ([M, d]) and valid mask."""
        m = len(latent_words)
        content = [[str(w).strip().lower() for w in ws if _content_word(w, self.stop_words)] for ws in latent_words]
        frac = np.array([len(c) / max(len(ws), 1) for c, ws in zip(content, latent_words)], dtype=np.float64)
        vocab = sorted({w for c in content for w in c})
        index = {w: i for i, w in enumerate(vocab)}
        base = self.baseline()
        n_max = max([len(c) for c in content] + [1])
        if vocab:
            emb = self._word_matrix(vocab)
            d = emb.shape[1]
        else:
            emb, d = np.zeros((0, 1), np.float32), 1
        ids = np.zeros((m, n_max), dtype=np.int64)
        mask = np.zeros((m, n_max), dtype=bool)
        for i, c in enumerate(content):
            ids[i, :len(c)] = [index[w] for w in c]
            mask[i, :len(c)] = True
        coh = np.full(m, np.nan)
        central = np.zeros((m, n_max))
        centroid = np.zeros((m, d), dtype=np.float32)
        chunk = 2048
        for s in range(0, m, chunk):
            sl = slice(s, s + chunk)
            x = emb[ids[sl]] * mask[sl, :, None] if len(emb) else np.zeros((len(ids[sl]), n_max, d), np.float32)
            g = np.einsum("bnd,bmd->bnm", x, x)  # zero rows/cols for padding
            n = mask[sl].sum(1).astype(np.float64)
            off = g.sum((1, 2)) - np.einsum("bnn->b", g)
            pairs = n * (n - 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                coh[sl] = np.where(pairs > 0, off / np.maximum(pairs, 1), np.nan)
                central[sl] = (g.sum(2) - np.einsum("bnn->bn", g)) / np.maximum(n - 1, 1)[:, None]
            c = x.sum(1)
            centroid[sl] = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        scaled = (coh - base) / max(1.0 - base, 1e-6)
        valid = np.array([len(c) >= 2 for c in content]) & (frac >= self.min_content)
        return {"content": content, "content_fraction": frac, "coherence": coh, "score": scaled,
                "centrality": central, "centroid": centroid, "valid": valid}

    def _judge_batch(self, latent_words, on_result):
        self.n_calls += 1
        s = self.score(latent_words)
        yes, probably, maybe = self.thresholds
        level = np.full(len(latent_words), 3)  # index into VERDICTS: 0 Yes .. 3 No
        sc = np.nan_to_num(s["score"], nan=-1.0)
        level[sc >= maybe] = 2
        level[sc >= probably] = 1
        level[sc >= yes] = 0
        level[~s["valid"]] = 3
        example_label, example_sim = [None] * len(latent_words), np.full(len(latent_words), np.nan)
        if self.example_intents and len(latent_words):
            ex = self._encode(self.example_intents)
            sims = s["centroid"] @ ex.T
            best = sims.argmax(1)
            example_sim = sims[np.arange(len(best)), best]
            hit = (example_sim >= self.example_min_sim) & s["valid"]
            level = np.where(hit, np.maximum(level - 1, 0), level)
            example_label = [self.example_intents[b] if h else None for b, h in zip(best, hit)]
        for i, words in enumerate(latent_words):
            content = s["content"][i]
            if not s["valid"][i]:
                summary = "no theme (mostly function words, numbers or fragments)"
            elif example_label[i] is not None:
                summary = example_label[i]
            else:
                order = np.argsort(-s["centrality"][i, :len(content)], kind="stable")
                summary = ", ".join(content[j] for j in order[:3])
            res = {"summary": summary, "verdict": VERDICTS[int(level[i])],
                   "content_fraction": round(float(s["content_fraction"][i]), 4),
                   "coherence": None if np.isnan(s["coherence"][i]) else round(float(s["coherence"][i]), 4),
                   "score": None if np.isnan(s["score"][i]) else round(float(s["score"][i]), 4)}
            if self.example_intents:
                res["example_sim"] = None if np.isnan(example_sim[i]) else round(float(example_sim[i]), 4)
            on_result(i, res)


