"""Intent labels from evidence: what each intent fires on, named, and how readable that name is.

An intent's mutual-information words (the catalogue's ``words``) come from the text encoder's
geometry, and can name something its items are not ("boat, sea, ocean" over nail polish). Here
the name comes from the items instead:

1. **Evidence**: the intent's ``label_top_items`` most activating items (the model's own
   ``item_intent_activations``), weighted by their activation.
2. **Category**: the most specific category of ``label_category_field`` that at least
   ``label_min_category_share`` of the evidence carries, at ``label_min_category_lift`` times its
   share of all items (categories on most items, e.g. the root ``Beauty``, never name one).
3. **Title words**: up to ``label_max_words`` words that at least ``label_min_word_share`` of the
   evidence has in its title, at ``label_min_word_lift`` times their share of all titles (ranked by
   share x log lift; words of the category name, plural forms of a chosen word and
   ``label_ignore_words`` are skipped).
4. **Check against the MI words**: a word among the top ``label_mi_words`` MI words is confirmed
   when the chosen name contains it (a plural counts) or at least 10% of the evidence has it in
   its title, at twice its share of all titles.
5. **Readability** = coverage x agreement: coverage is the share of the evidence the name
   describes (items in the category or with a name word in their title); agreement is
   0.5 + 0.25 per confirmed MI word, at most 1 (no name: 0). An intent is *readable* when its
   readability is at least ``label_min_readability`` (0 shows every intent).

Defaults: ``properties/analysis/labels.yaml`` (every key ``# (type) meaning``); commands take
``--key=value`` for any of them. Explanations and steering show only readable intents and say
how many were hidden; the model itself still uses every intent.
"""
import os
import re
from collections import Counter

import numpy as np
import yaml

from recbole_saerec.intents.interpret import tokenize
from recbole_saerec.settings import PROPERTIES_DIR

LABELS_YAML = os.path.join(PROPERTIES_DIR, "analysis", "labels.yaml")
CATEGORY_FIELDS = ("categories", "class", "genre", "genres")


# ------------------------------------------------------------------------------ settings
def label_settings(overrides=None):
    """The yaml's settings with ``overrides`` (strings from a command line are read as yaml), checked."""
    from recbole_saerec.cli import UsageError
    from recbole_saerec.config_check import validate_settings

    with open(LABELS_YAML, encoding="utf-8") as f:
        settings = yaml.safe_load(f)
    for key, value in (overrides or {}).items():
        if key not in settings:
            raise UsageError(f"--{key}: not a label setting (those are {', '.join(sorted(settings))}, "
                             f"in {LABELS_YAML})")
        settings[key] = yaml.safe_load(value) if isinstance(value, str) else value
    problems = validate_settings(settings, LABELS_YAML)
    if problems:
        raise UsageError("; ".join(problems))
    return settings


def category_field_of(columns, wanted=None):
    """The .item column holding categories: ``wanted`` when given, else the first of CATEGORY_FIELDS present."""
    if wanted:
        return wanted
    return next((f for f in CATEGORY_FIELDS if f in columns), None)


# ------------------------------------------------------------------------------ words
def stem(word):
    """A plural's singular, enough to tell 'nails' and 'nail' apart from 'snail' (never a substring)."""
    word = word.lower()
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def name_words(text):
    """The stems of the words of a name or category ('Hands & Nails' -> {'hand', 'nail'})."""
    return {stem(w) for w in re.findall(r"[^\W\d_]+", str(text).lower())}


# ------------------------------------------------------------------------------ evidence
def _binary(rows_of_labels, n_rows):
    """(names, sparse [n_rows, n_names] 0/1 CSR matrix) from one label list per row."""
    import scipy.sparse as sp

    names = sorted({x for labels in rows_of_labels for x in labels})
    index = {x: k for k, x in enumerate(names)}
    rows, cols = [], []
    for i, labels in enumerate(rows_of_labels):
        for x in set(labels):
            rows.append(i)
            cols.append(index[x])
    mat = sp.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(n_rows, len(names)))
    return names, mat


def evidence_tables(items, item_tokens, category_field, sep=None, ignore=()):
    """Per item id (row 0 = padding): categories and title words as 0/1 matrices.

    Returns (categories, cat_matrix [n, C], words, word_matrix [n, V], category depths [C]), the
    matrices sparse; title words are the intent corpus's own tokens
    (:func:`recbole_saerec.intents.interpret.tokenize`) present in at least two titles, minus ``ignore``.
    """
    n = len(item_tokens)
    cats = [[] if t is None or not category_field else items.labels(t, category_field, sep) for t in item_tokens]
    titles = [[] if t is None or not items.title_field else
              [w for w in dict.fromkeys(tokenize(items.field(t, items.title_field))) if w not in ignore]
              for t in item_tokens]
    df = Counter(w for ws in titles for w in ws)
    titles = [[w for w in ws if df[w] >= 2] for ws in titles]
    categories, cat_matrix = _binary(cats, n)
    words, word_matrix = _binary(titles, n)
    # how deep each category sits in the items' paths ('Beauty | Makeup | Nails | Nail Polish'): of two
    # categories on the same items, the deeper one is the more specific name
    depth = {}
    for labels in cats:
        for pos, x in enumerate(labels):
            depth.setdefault(x, []).append(pos)
    depths = np.asarray([np.mean(depth[c]) for c in categories])
    return categories, cat_matrix, words, word_matrix, depths


def _label_one(q, cats, cat_base, categories, depths, word_rows, word_base, words, mi_words, s):
    """One intent's label from its evidence: weights ``q`` [t] (sum 1) of its top items, whose
    category and title-word rows are ``cats`` [t, C] and ``word_rows`` [t, V] (sparse)."""
    entry = {"name": "", "category": None, "category_share": 0.0, "words": [], "word_shares": [],
             "mi_confirmed": [], "coverage": 0.0, "readability": 0.0}
    chosen_cat = None
    if len(categories):
        share = np.asarray(cats.T @ q).ravel()
        lift = share / np.maximum(cat_base, 1e-12)
        ok = (cat_base <= s["label_max_category_item_share"]) & (share >= s["label_min_category_share"]) \
            & (lift >= s["label_min_category_lift"])
        if ok.any():
            # the most specific category: the highest lift, then the deepest in the items' paths
            cand = np.flatnonzero(ok)
            chosen_cat = int(max(cand, key=lambda k: (round(float(lift[k]), 9), depths[k])))
            entry.update(category=categories[chosen_cat], category_share=round(float(share[chosen_cat]), 4))
    taken = name_words(entry["category"]) if entry["category"] else set()
    chosen_words = []
    share = np.asarray(word_rows.T @ q).ravel() if len(words) else np.zeros(0)
    if len(words):
        lift = share / np.maximum(word_base, 1e-12)
        ok = (share >= s["label_min_word_share"]) & (lift >= s["label_min_word_lift"])
        score = np.where(ok, share * np.log(np.maximum(lift, 1.0)), 0.0)
        for k in np.argsort(-score, kind="stable"):
            if score[k] <= 0 or len(chosen_words) >= s["label_max_words"]:
                break
            if stem(words[k]) in taken:
                continue
            chosen_words.append(int(k))
            taken.add(stem(words[k]))
        entry["words"] = [words[k] for k in chosen_words]
        entry["word_shares"] = [round(float(share[k]), 4) for k in chosen_words]
    if entry["category"] and entry["words"]:
        entry["name"] = f"{entry['category']}: {', '.join(entry['words'])}"
    else:
        entry["name"] = entry["category"] or ", ".join(entry["words"])
    if not entry["name"]:
        return entry
    described = np.zeros(len(q), dtype=bool)
    if chosen_cat is not None:
        described |= cats[:, chosen_cat].toarray().ravel() > 0
    for k in chosen_words:
        described |= word_rows[:, k].toarray().ravel() > 0
    entry["coverage"] = round(float(q[described].sum()), 4)
    # an MI word is confirmed by the evidence's titles, or by the name itself
    word_index = {w: k for k, w in enumerate(words)}
    for w in mi_words[:s["label_mi_words"]]:
        k = word_index.get(str(w).lower())
        in_titles = k is not None and share[k] >= 0.1 and share[k] >= 2 * word_base[k]
        if in_titles or stem(str(w)) in taken:
            entry["mi_confirmed"].append(str(w))
    agreement = min(1.0, 0.5 + 0.25 * len(entry["mi_confirmed"]))
    entry["readability"] = round(entry["coverage"] * agreement, 4)
    return entry


def label_intents(activations, item_tokens, items, catalogue, settings=None, category_field=None, sep=None):
    """A label per intent row (list of dicts, JSON-ready).

    Args:
        activations: [n_items, m] item-intent activations (dense array or tensor, row 0 = padding),
            e.g. the model's ``item_intent_activations``.
        item_tokens: item token per row (None for padding).
        items: an :class:`recbole_saerec.analysis.checkpoints.ItemText` (titles, categories).
        catalogue: the intent catalogue (its ``words`` are the MI words).
        settings: :func:`label_settings` (default: the yaml's).
        category_field: .item column of categories (default: ``label_category_field``, else the
            first of CATEGORY_FIELDS the file has).

    Each dict: row, name ('' = nothing to name it by), category, category_share, words,
    word_shares, mi_confirmed, coverage, readability, readable.
    """
    s = settings or label_settings()
    act = activations.to_dense() if hasattr(activations, "to_dense") and getattr(activations, "is_sparse", False) \
        else activations
    act = np.clip(np.asarray(act.detach().cpu().numpy() if hasattr(act, "detach") else act, dtype=np.float64),
                  0.0, None)
    field = category_field_of(items.columns, category_field or s["label_category_field"])
    if field and field not in items.columns:
        raise ValueError(f"No column '{field}' in the .item file (columns: {', '.join(items.columns) or 'none'}); "
                         "choose --label_category_field.")
    categories, cat_matrix, words, word_matrix, depths = evidence_tables(items, item_tokens, field, sep,
                                                                 ignore=set(s["label_ignore_words"] or ()))
    real = np.asarray([t is not None for t in item_tokens])
    n_real = max(int(real.sum()), 1)
    cat_base = np.asarray(cat_matrix[real].sum(0)).ravel() / n_real
    word_base = np.asarray(word_matrix[real].sum(0)).ravel() / n_real
    top = min(int(s["label_top_items"]), act.shape[0])
    # every intent's top items at once (unordered within the top: only their weights matter)
    tops = np.argpartition(-act, top - 1, axis=0)[:top] if top < act.shape[0] else \
        np.tile(np.arange(act.shape[0])[:, None], (1, act.shape[1]))
    out = []
    for j in range(act.shape[1]):
        rows = tops[:, j]
        q = act[rows, j]
        rows, q = rows[q > 0], q[q > 0]
        entry = {"row": j}
        if len(q):
            entry.update(_label_one(q / q.sum(), cat_matrix[rows], cat_base, categories, depths, word_matrix[rows],
                                    word_base, words, list(catalogue[j].get("words", [])), s))
        else:
            entry.update(name="", category=None, category_share=0.0, words=[], word_shares=[], mi_confirmed=[],
                         coverage=0.0, readability=0.0)
        # an intent without a name has readability 0: hidden unless the threshold is 0 (show everything)
        entry["readable"] = entry["readability"] >= s["label_min_readability"]
        out.append(entry)
    return out


def model_labels(bundle, settings=None, category_field=None, sep=None):
    """The labels of a loaded checkpoint's intents (:func:`recbole_saerec.analysis.checkpoints.load_model`),
    computed once per bundle and settings."""
    s = settings or label_settings()
    key = (repr(sorted(s.items())), category_field, sep)
    cache = bundle.__dict__.setdefault("_labels", {})
    if key not in cache:
        ds = bundle.test_data._dataset
        tokens = [None] + [str(t) for t in ds.id2token(ds.iid_field, np.arange(1, ds.item_num))]
        cache[key] = label_intents(bundle.model.item_intent_activations, tokens, bundle.items,
                                   bundle.model.intent_catalogue, s, category_field, sep)
    return cache[key]


def readable_share(labels):
    """(readable, total)."""
    return sum(x["readable"] for x in labels), len(labels)
