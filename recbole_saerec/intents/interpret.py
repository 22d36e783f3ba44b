"""Words for each SAE latent (docs/method.md, stage 1, step 4).

Two steps:

* :func:`build_vocabulary` — the candidate words: words of the task's own
  corpus, most frequent first.
* :func:`top_words_per_latent` — for every latent direction, the ``top_n``
  words by a mutual-information style score (Wu et al. 2025, "Interpreting
  and steering LLMs with mutual information-based explanations on sparse
  autoencoders"): a word is good for latent j when it is strongly aligned with
  the latent's direction AND that alignment is specific to j. A plain cosine
  ranking lets a generic word that points "everywhere" (e.g. "product",
  "great") top every latent; this score does not.
"""
import math
import re
from collections import Counter

import torch

try:  # the same list everywhere in the project (sklearn is a RecBole dependency)
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
except ImportError:  # pragma: no cover - sklearn is installed with RecBole
    raise ImportError("recbole_saerec.intents.interpret needs scikit-learn (pip install scikit-learn)")

STOP_WORDS = frozenset(ENGLISH_STOP_WORDS)
DEFAULT_TEMPERATURE = 0.05

# letters only (unicode-aware), optionally joined by apostrophes: "women's", "don't"
_TOKEN = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")


def tokenize(text):
    """Lower-cased word tokens of ``text`` kept by :func:`build_vocabulary`.

    Possessive ``'s`` is stripped ("women's" -> "women"); other tokens with an
    apostrophe (contractions: "don't", "it's") are dropped, as are tokens
    shorter than 3 letters and sklearn's English stop words.
    """
    out = []
    for tok in _TOKEN.findall(str(text).lower()):
        tok = tok.replace("\u2019", "'")
        if tok.endswith("'s"):
            tok = tok[:-2]
        if len(tok) < 3 or not tok.isalpha() or tok in STOP_WORDS:
            continue
        out.append(tok)
    return out


def build_vocabulary(texts, max_words=5000, min_count=2):
    """The ``max_words`` most frequent words of ``texts``, most frequent first.

    A word is a lower-cased alphabetic token of at least 3 letters that is not
    an English stop word (sklearn's ``ENGLISH_STOP_WORDS``); see
    :func:`tokenize`. Frequency is the DOCUMENT frequency (number of texts that
    contain the word, so one long review repeating a word does not promote it);
    ties are broken by the total number of occurrences, then alphabetically, so
    the result is deterministic. Words in fewer than ``min_count`` texts are
    dropped. ``max_words`` None or <= 0 = no limit.
    """
    doc_freq, total = Counter(), Counter()
    for text in texts:
        if text is None:
            continue
        toks = tokenize(text)
        total.update(toks)
        doc_freq.update(set(toks))
    words = [w for w, c in doc_freq.items() if c >= min_count]
    words.sort(key=lambda w: (-doc_freq[w], -total[w], w))
    if max_words is not None and max_words > 0:
        words = words[:max_words]
    return words


def _normalize(x):
    x = torch.as_tensor(x).float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def top_words_per_latent(directions, word_embeddings, words, top_n=10, temperature=DEFAULT_TEMPERATURE,
                         chunk_size=1024, device=None):
    r"""Top ``top_n`` words of every latent by a mutual-information score.

    Inputs: ``directions`` [M, d] (latent directions v_j, e.g. rows of the SAE
    encoder), ``word_embeddings`` [V, d] (the vocabulary embedded with the SAE's
    own text encoder), ``words`` (V strings). Both matrices are L2-normalised
    row-wise first, so <e_w, v_j> is a cosine.

    With a uniform prior over latents, p(j) = 1/M::

        p(w | j) = softmax_w( <e_w, v_j> / T )            (over the V words)
        p(w)     = (1/M) * sum_k p(w | k)                  (marginal over latents)
        score_j(w) = p(w | j) * log( p(w | j) / p(w) )

    score_j(w) is word w's term in KL(p(.|j) || p(.)); averaging the KL over j
    gives the mutual information I(W; J) between words and latents, so the
    score is w's contribution to that MI through latent j. The first factor
    rewards alignment with v_j; the log-ratio rewards specificity: a word
    that is equally aligned with every latent has p(w|j) = p(w) and scores 0,
    however large its cosine. T (``temperature``) sets how peaked p(w|j) is:
    for cosines in [-1, 1], T = 0.05 (default) lets a cosine gap of 0.1 be a
    factor e^2 in probability.

    Computed in chunks of ``chunk_size`` latents (two passes: the marginal
    p(w), then the scores), in log space (log-softmax, logsumexp), so memory is
    O(chunk_size * V) and M = 16k latents x V = 5k words is fine on a CPU.

    Returns ``(top_words, top_scores)``: a list of M lists of
    ``min(top_n, V)`` words, best first, and their scores as a float32 tensor
    [M, min(top_n, V)] (on the CPU).
    """
    if len(words) != len(word_embeddings):
        raise ValueError(f"{len(words)} words but {len(word_embeddings)} word embeddings")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    v = _normalize(directions)
    e = _normalize(word_embeddings)
    if v.dim() != 2 or e.dim() != 2 or v.shape[1] != e.shape[1]:
        raise ValueError(f"directions {tuple(v.shape)} and word embeddings {tuple(e.shape)} must be [M, d] and [V, d]")
    device = torch.device(device) if device is not None else v.device
    v, e = v.to(device), e.to(device)
    m, n_words = v.shape[0], e.shape[0]
    k = min(int(top_n), n_words)
    chunk_size = max(1, int(chunk_size))

    def log_p_w_given_j(start):
        return torch.log_softmax(v[start:start + chunk_size] @ e.T / temperature, dim=1)

    # pass 1: log p(w) = logsumexp_j log p(w|j) - log M
    acc = torch.full((n_words,), -math.inf, dtype=torch.float64, device=device)
    for s in range(0, m, chunk_size):
        acc = torch.logaddexp(acc, torch.logsumexp(log_p_w_given_j(s).double(), dim=0))
    log_p_w = (acc - math.log(m)).float()

    # pass 2: score_j(w) = p(w|j) * (log p(w|j) - log p(w)), top-k per latent
    idx_parts, score_parts = [], []
    for s in range(0, m, chunk_size):
        lp = log_p_w_given_j(s)
        score = lp.exp() * (lp - log_p_w)
        top = torch.topk(score, k, dim=1)
        idx_parts.append(top.indices.cpu())
        score_parts.append(top.values.cpu())
    indices = torch.cat(idx_parts) if idx_parts else torch.zeros(0, k, dtype=torch.long)
    scores = torch.cat(score_parts) if score_parts else torch.zeros(0, k)
    top_words = [[words[i] for i in row] for row in indices.tolist()]
    return top_words, scores.float()
