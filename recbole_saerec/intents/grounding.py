"""Is a latent a real, nameable intent? Measured from the texts it fires on.

Three pieces, used by the intent build (:mod:`recbole_saerec.intents.build.grounding_stage`) and, for
the first one, by the RecSAE probe's concept verification (:mod:`recbole_saerec.analysis.probe.concepts`):

* :func:`detection_score` — THE project's one implementation of "does this concept
  predict activation": given a concept score for activating and for non-activating
  cases, the AUROC of telling them apart (sklearn's ``roc_auc_score``) and, with a
  threshold, the accuracy of "activating iff score > threshold".
* :func:`fragment_words` — the fragment guard: words of a latent that are sub-word
  pieces or non-words ("sau", "actu", "ookie", "ara" ...). A latent made mostly of them
  is "No" whatever its other scores (:func:`apply_fragment_guard`).
* :func:`grounding_scores` — per latent, ``detection_auc`` in the style of the
  automated-interpretability embedding scorer (EleutherAI delphi, arXiv 2410.13928):
  the latent's explanation (its words, plus the LM summary when a language model wrote
  one) is embedded with the intent encoder and used to retrieve the latent's held-out
  top-activating texts from an equal number of non-activating ones (half random texts,
  half hard negatives: top texts of the latents with the most similar directions that do
  not fire on this one). Not circular: the latent's top ``2n`` activating texts are split
  by alternate rank, the FIT half weights the words (a word counts by how much closer it
  is to the fit texts than to random texts) and only the HELD-OUT half is scored.
"""
import bisect
import re
from collections import Counter

import numpy as np

_TOKEN = re.compile(r"[^\W\d_]+")
_ASCII_VOWEL = re.compile(r"[aeiouy]")
INFLECTIONS = ("s", "es", "d", "ed", "r", "er", "ers", "rs", "ing", "ly")


# ----------------------------------------------------------------------------- detection
def detection_score(pos, neg, threshold=None):
    """How well a concept score separates activating (``pos``) from non-activating (``neg``) cases.

    Returns ``{"auroc", "n_pos", "n_neg"}`` (AUROC by ``sklearn.metrics.roc_auc_score``,
    ties count half; NaN when either side is empty) and, when ``threshold`` is given,
    ``"accuracy"`` of predicting "activating iff score > threshold" with its ``"tp"``
    and ``"tn"`` counts (the RecSAE probe's confidence).
    """
    from sklearn.metrics import roc_auc_score

    p = np.asarray(pos, dtype=np.float64).ravel()
    q = np.asarray(neg, dtype=np.float64).ravel()
    out = {"n_pos": int(len(p)), "n_neg": int(len(q))}
    if len(p) and len(q):
        labels = np.r_[np.ones(len(p)), np.zeros(len(q))]
        out["auroc"] = float(roc_auc_score(labels, np.r_[p, q]))
    else:
        out["auroc"] = float("nan")
    if threshold is not None:
        tp, tn = int((p > threshold).sum()), int((q <= threshold).sum())
        n = len(p) + len(q)
        out.update(tp=tp, tn=tn, accuracy=(tp + tn) / n if n else float("nan"))
    return out


# ----------------------------------------------------------------------------- fragments
class Lexicon:
    """Whole-token counts of a corpus, with fast 'how often is w a piece of a longer token' lookups.

    Tokens are maximal runs of letters (any length, stop words included), lower-cased.
    """

    def __init__(self, texts):
        counts = Counter()
        for text in texts:
            if text:
                counts.update(_TOKEN.findall(str(text).lower()))
        self.counts = counts
        self._fwd = sorted(counts)
        self._fwd_cum = np.cumsum([0] + [counts[w] for w in self._fwd])
        self._rev = sorted(w[::-1] for w in counts)
        self._rev_cum = np.cumsum([0] + [counts[w[::-1]] for w in self._rev])

    @staticmethod
    def _range_count(keys, cum, prefix):
        lo = bisect.bisect_left(keys, prefix)
        hi = bisect.bisect_left(keys, prefix + "\U0010ffff")
        return int(cum[hi] - cum[lo])

    def whole(self, word):
        """Occurrences of ``word`` as a whole token."""
        return int(self.counts.get(word, 0))

    def inside(self, word):
        """Occurrences of LONGER tokens that start or end with ``word`` ('ara' in 'mascara').

        The word's own inflections (``word`` + s, es, d, ed, r, er, ers, rs, ing, ly) do not
        count: 'tools' does not make 'tool' a piece.
        """
        w = self.whole(word)
        inflected = sum(self.whole(word + suffix) for suffix in INFLECTIONS)
        return (self._range_count(self._fwd, self._fwd_cum, word) - w - inflected
                + self._range_count(self._rev, self._rev_cum, word[::-1]) - w)


def fragment_reason(word, lexicon, min_len=3, piece_ratio=0.05, known_words=None):
    """Why ``word`` is a fragment or non-word, or None when it is a word.

    Rules, in order: shorter than ``min_len`` letters; not letters only; an ASCII word
    without a vowel (a, e, i, o, u, y); not a whole token of the corpus (``lexicon``);
    a sub-word piece: its whole-token count is below ``piece_ratio`` times the count of
    longer corpus tokens that start or end with it ("ara" vs "mascara") -- unless it is in
    ``known_words`` (e.g. the whole-word entries of the encoder's tokenizer vocabulary:
    "air" is a word although "hair" is far more frequent).
    """
    w = str(word).strip().lower()
    if len(w) < min_len:
        return "too short"
    if not w.isalpha():
        return "not letters"
    if w.isascii() and not _ASCII_VOWEL.search(w):
        return "no vowel"
    if lexicon is None:
        return None
    whole = lexicon.whole(w)
    if whole == 0:
        return "not a corpus word"
    inside = lexicon.inside(w)
    if whole < piece_ratio * inside and not (known_words and w in known_words):
        return f"sub-word piece ({whole} whole vs {inside} inside longer words)"
    return None


def fragment_words(latent_words, lexicon, min_len=3, piece_ratio=0.05, known_words=None):
    """Per latent: the list of its words that are fragments (see :func:`fragment_reason`)."""
    cache = {}
    out = []
    for words in latent_words:
        bad = []
        for w in words:
            if w not in cache:
                cache[w] = fragment_reason(w, lexicon, min_len, piece_ratio, known_words)
            if cache[w] is not None:
                bad.append(w)
        out.append(bad)
    return out


def apply_fragment_guard(verdicts, fragments, latent_words, max_fraction=0.5):
    """Verdict "No" for latents whose fragment share exceeds ``max_fraction`` (new dicts; inputs untouched).

    Each result gains ``fragments`` (the fragment words) and ``fragment_fraction``.
    """
    out = []
    for v, bad, words in zip(verdicts, fragments, latent_words):
        frac = len(bad) / max(len(words), 1)
        v = dict(v, fragments=list(bad), fragment_fraction=round(frac, 4))
        if frac > max_fraction and v.get("verdict") != "No":
            v["verdict_before_guard"] = v.get("verdict")
            v["verdict"] = "No"
        out.append(v)
    return out


def tokenizer_words(encoder):
    """Whole-word entries of the encoder's tokenizer vocabulary (WordPiece: no '##'), or None if it has none."""
    tok = getattr(encoder, "tokenizer", None) or getattr(getattr(encoder, "model", None), "tokenizer", None)
    try:
        vocab = tok.get_vocab()
    except AttributeError:
        return None
    return frozenset(w for w in vocab if w.isalpha() and w.islower())


# ----------------------------------------------------------------------------- grounding
def _unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def split_activating(texts_by_activation, n_examples):
    """(fit, held) halves of a latent's top ``2 * n_examples`` activating texts, by alternate rank.

    ``texts_by_activation`` = text indices sorted by activation, strongest first. Ranks
    0, 2, 4 ... fit the explanation, ranks 1, 3, 5 ... score it: both halves span the same
    activation range and never share a text.
    """
    top = np.asarray(texts_by_activation, dtype=np.int64)[:2 * int(n_examples)]
    return top[0::2], top[1::2]


def explanation_vector(word_vecs, fit_vecs, background_vecs, summary_vec=None):
    """The embedding that stands for a latent's explanation, fitted on its FIT texts only.

    Each word's weight = max(0, mean cosine to the fit texts - mean cosine to the
    background texts): words that do not describe what the latent fires on drop out.
    When no word is closer to the fit texts than to the background, all words weigh the
    same (the held-out score then shows that the words do not ground). A summary (from an
    LM) is added with the weight of the whole word part.
    """
    w = _unit(word_vecs)
    lift = (w @ _unit(fit_vecs).T).mean(1) - (w @ _unit(background_vecs).T).mean(1)
    weight = np.clip(lift, 0.0, None)
    if weight.sum() <= 0:
        weight = np.ones(len(w))
    vec = _unit((weight[:, None] * w).sum(0))
    if summary_vec is not None:
        vec = _unit(vec + _unit(summary_vec))
    return vec


def grounding_scores(text_codes, text_vecs, latent_ids, word_vecs, directions, summary_vecs=None, n_examples=20,
                     min_held=3, n_background=512, hard_latents=5, seed=0):
    """``detection_auc`` per latent, and what it was computed from.

    Inputs: ``text_codes`` scipy sparse [n_texts, M] (the SAE codes of the corpus),
    ``text_vecs`` [n_texts, d] (the corpus embeddings), ``latent_ids`` (the latents to
    score), ``word_vecs`` (per latent: [n_words, d] embeddings of its explanation words,
    fragments already removed; may be empty), ``directions`` [M, d] (latent directions, for
    the hard negatives), ``summary_vecs`` (per latent: [d] or None).

    Per latent: fit/held-out halves of the top ``2 * n_examples`` activating texts
    (:func:`split_activating`); explanation vector from the fit half
    (:func:`explanation_vector`); positives = the held-out half; negatives = as many
    non-activating texts, half hard (top activating texts of the ``hard_latents`` latents
    whose directions are most similar, skipping texts that activate this latent) and the
    rest random; AUROC of the cosine to the explanation (:func:`detection_score`).
    ``detection_auc`` is None with fewer than ``min_held`` held-out texts or no usable word.

    Returns a list of dicts: ``detection_auc``, ``n_pos``, ``n_neg``, ``n_hard``, ``fit``
    and ``held`` (text indices, for inspection and tests).
    """
    rng = np.random.default_rng(seed)
    csc = text_codes.tocsc()
    n_texts = csc.shape[0]
    x = _unit(text_vecs)
    background = x[rng.choice(n_texts, min(int(n_background), n_texts), replace=False)]
    dirs = _unit(directions)
    ranked = {}

    def by_activation(j):
        if j not in ranked:
            lo, hi = csc.indptr[j], csc.indptr[j + 1]
            order = np.argsort(-csc.data[lo:hi], kind="stable")
            ranked[j] = csc.indices[lo:hi][order]
        return ranked[j]

    out = []
    for pos, j in enumerate(latent_ids):
        j = int(j)
        fit, held = split_activating(by_activation(j), n_examples)
        words = np.asarray(word_vecs[pos], dtype=np.float32).reshape(-1, x.shape[1]) if len(word_vecs[pos]) else None
        rec = {"latent_id": j, "detection_auc": None, "n_pos": int(len(held)), "n_neg": 0, "n_hard": 0,
               "fit": fit.tolist(), "held": held.tolist()}
        if words is None or len(held) < min_held or not len(fit):
            out.append(rec)
            continue
        summary = None if summary_vecs is None else summary_vecs[pos]
        expl = explanation_vector(words, x[fit], background, summary)
        active = set(csc.indices[csc.indptr[j]:csc.indptr[j + 1]].tolist())
        # hard negatives: the nearest latents' strongest texts that do not fire on j
        n_hard_want = len(held) // 2
        hard = []
        sims = dirs @ dirs[j]
        sims[j] = -np.inf
        for k in np.argsort(-sims, kind="stable")[:int(hard_latents)]:
            for t in by_activation(int(k))[:n_hard_want]:
                if t not in active and t not in hard:
                    hard.append(int(t))
        hard = hard[:n_hard_want]
        n_rand = len(held) - len(hard)
        taken = active | set(hard)
        # enough random draws that n_rand of them are surely outside `taken`
        cand = rng.choice(n_texts, min(n_texts, n_rand + len(taken)), replace=False)
        rand = [int(t) for t in cand if t not in taken][:n_rand]
        neg = np.asarray(hard + rand, dtype=np.int64)
        scores = detection_score(x[held] @ expl, x[neg] @ expl)
        rec.update(detection_auc=round(scores["auroc"], 4), n_neg=int(len(neg)), n_hard=len(hard))
        out.append(rec)
    return out
