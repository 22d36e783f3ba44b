"""Concepts: latent units, their TF-IDF term concepts, similarity, and the verification of each concept.

Verification is ``recbole_saerec.intents.grounding.detection_score`` (the one implementation,
shared with the intent judge's grounding).
"""
import numpy as np
import torch


# ----------------------------------------------------------------------------- units, concepts, verification
def sparse_codes(sae, x):
    """Active (case, latent, activation) triples of the SAE code, sorted by latent then activation desc."""
    acts, idx = sae.codes(x)
    k = idx.shape[1]
    case = np.repeat(np.arange(len(x)), k)
    lat, act = idx.reshape(-1).numpy(), acts.reshape(-1).numpy()
    keep = act > 0
    case, lat, act = case[keep], lat[keep], act[keep]
    order = np.lexsort((-act, lat))
    return case[order], lat[order], act[order]


def latent_segments(lat, n_latents):
    """Start/end of each latent's rows in the sorted triples."""
    bounds = np.searchsorted(lat, np.arange(n_latents + 1))
    return bounds[:-1], bounds[1:]


def top_unique_users(cases_sorted, users, n):
    """The first n cases (already sorted by activation, desc) with at most one case per user."""
    seen, out = set(), []
    for c in cases_sorted:
        u = users[c]
        if u in seen:
            continue
        seen.add(u)
        out.append(c)
        if len(out) == n:
            break
    return np.asarray(out, dtype=np.int64)


def top_items(top_lists, n_items=10):
    """The n most frequent items in a set of top-k lists (ties: first seen)."""
    items, counts = np.unique(top_lists.reshape(-1), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return items[order[:n_items]]


def similarity(item_emb, units_items):
    """(mean intra-unit, mean inter-unit) cosine of item embeddings, over units with >= 2 items."""
    e = torch.nn.functional.normalize(item_emb.float(), dim=1)
    groups = [np.asarray(g) for g in units_items if len(g) >= 2]
    if len(groups) < 2:
        return float("nan"), float("nan"), []
    means = torch.stack([e[torch.as_tensor(g)].mean(0) for g in groups])
    sizes = torch.tensor([len(g) for g in groups], dtype=torch.float)
    intra = (sizes ** 2 * means.pow(2).sum(1) - sizes) / (sizes * (sizes - 1))
    total = means.sum(0)
    u = len(groups)
    inter = (total.pow(2).sum() - means.pow(2).sum(1).sum()) / (u * (u - 1))
    return float(intra.mean()), float(inter), intra.tolist()


def presence(item_mask, lists):
    """Share of each list's items that match a concept ([n] floats)."""
    return item_mask[lists].mean(1) if len(lists) else np.zeros(0)


def verify_concept(item_mask, pos_lists, neg_lists, base_rate):
    """Predict 'activating' iff a case's presence > base_rate; confidence = accuracy on pos + neg cases.

    The project's one "does this concept predict activation" test
    (``recbole_saerec.intents.grounding.detection_score``, also the intent judge's
    grounding score); ``auroc`` is reported beside the accuracy.
    """
    from recbole_saerec.intents.grounding import detection_score

    out = detection_score(presence(item_mask, pos_lists), presence(item_mask, neg_lists), threshold=base_rate)
    return {"confidence": out["accuracy"], "auroc": out["auroc"], "tp": out["tp"], "tn": out["tn"],
            "n_pos": out["n_pos"], "n_neg": out["n_neg"]}


def term_concepts(docs, n_terms=3, item_texts=None, case_lists=None, min_support=0.0):
    """TF-IDF over one document per latent -> (up to n_terms terms per doc, fitted vectorizer).

    With ``case_lists`` (per doc: the [cases, 10] top lists it was written from)
    a term is eligible only if the lists of at least ``min_support`` of the
    cases contain it: a title word seen in one case's list is not the latent's
    concept. Eligible terms are ranked by their TF-IDF weight.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_][^\W\d_]+\b", sublinear_tf=True)
    weights = vec.fit_transform(docs).tocsr()
    vocab = vec.get_feature_names_out()
    items = item_term_matrix(item_texts, vec) if case_lists is not None and min_support > 0 else None
    out = []
    for r in range(weights.shape[0]):
        row = weights.getrow(r)
        cand, score = row.indices, row.data
        if items is not None and len(cand):
            lists = np.asarray(case_lists[r])
            present = items[lists.reshape(-1)][:, cand].toarray().reshape(lists.shape[0], lists.shape[1], -1)
            support = present.any(1).mean(0)
            cand, score = cand[support >= min_support], score[support >= min_support]
        order = np.argsort(-score, kind="stable")[:n_terms]
        out.append([str(vocab[cand[o]]) for o in order])
    return out, vec


def item_term_matrix(texts, vec):
    """[n_items, V] binary csr: which of the vectorizer's terms each item's text holds."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(vocabulary=vec.vocabulary_, binary=True, lowercase=True,
                           token_pattern=vec.token_pattern).fit_transform(list(texts)).tocsr()


def concept_masks(texts, vec, term_lists):
    """[n_concepts, n_items] bool: the item's text holds at least one of the concept's terms."""
    counts = item_term_matrix(texts, vec).tocsc()
    masks = np.zeros((len(term_lists), len(texts)), dtype=bool)
    for c, terms in enumerate(term_lists):
        cols = [vec.vocabulary_[t] for t in terms if t in vec.vocabulary_]
        if cols:
            masks[c] = np.asarray(counts[:, cols].sum(1)).ravel() > 0
    return masks


def lm_concepts(config, latent_words, judge=None, cache_path=None):
    """Sentence concepts through the intent module's judge backends (``make_judge(config)``).

    Each latent is described to the judge by its TF-IDF words (up to 10); the
    judge's ``summary`` is the sentence concept and its ``verdict`` is kept.
    Backend and model come from the ``judge_*`` keys (``--judge_backend``,
    ``--judge_model``, ``--judge_base_url``): an OpenAI-compatible server for a
    real LM; ``offline`` (the default) is a word-embedding rule, not an LM.
    """
    if judge is None:
        from recbole_saerec.intents.judge import make_judge

        judge = make_judge(config)
    results = judge.judge_many(latent_words, cache_path=cache_path, progress=False)
    return [{"lm_concept": r.get("summary", ""), "lm_verdict": r.get("verdict"), "judge": judge.name}
            for r in results]


