"""Steer a trained SAERec through its intents, at inference, without retraining.

    python -m recbole_saerec.analysis.steer --checkpoint=saved/SAERec-....pth --match="nail,polish" \
        --category_field categories --topk 10 [--json report.json] [--png report.png]    # weights 1.25,1.5,2
    python -m recbole_saerec.analysis.steer --checkpoint=... --match=horror --weight 0,0.5,2,4 --category_field class
    python -m recbole_saerec.analysis.steer --checkpoint=... --category="Nail Art" --weight 1.5
    python -m recbole_saerec.analysis.steer --checkpoint=... --categories 10 --weight 2   # by what intents fire on

With ``--categories N`` (:func:`category_sweep`) step 1 instead picks, for each of the N
largest categories, the intents whose activating items are mostly of that category, and the
report counts the categories that moved with the expected sign. Otherwise:

1. Select intents by whole words (:func:`matches`: case-insensitive, a plural matches its
   singular, never a substring; ``word*`` for a prefix): the comma-separated ``--match`` words
   against each intent's name from its items (``--field label``, default; see
   :mod:`recbole_saerec.analysis.labels`), its MI words (``words``), its summary (``summary``),
   or several (``both``, ``all``); or, with ``--category``, the intents that fire on the items
   of the named categories. Only readable intents are steered (``--label_min_readability``);
   the matched unreadable ones are counted.
2. Set their weights to ``--weight`` (several: a sweep; default 1.25,1.5,2) and rank all
   items for EVERY test user (the test position, as the test metrics do), before and after.
3. Report, for every weight: for each target category of ``--category_field`` in the
   dataset's ``.item`` file (amazon-*: ``categories``, names split on '|'; ml-100k: ``class``
   genres split on spaces) how many recommended items (summed over users' top-K lists) carry
   it, before/after, and the targets together; the cost in HR@K / NDCG@K; the drift of the
   OTHER categories (total absolute change of their counts, and the largest ones); and the
   targets that moved against the weight. The targets are ``--target_category`` or, by
   default, the categories a match word names (whole words) and the ``--category`` ones.

Mechanisms (``--mode``; weight 1.0 is the identity for both):

* ``model`` (default): the model's ``steer_weights`` buffer, which scales the selected
  intents' projected vectors W_map p_j everywhere the model uses them (the item-side
  intent feature of every item embedding, and the intent-branch memories). Personal
  retrieval is a cosine, so a positive weight never changes WHICH intents are retrieved,
  only how strongly they act.
* ``score``: a post-hoc item prior on the final scores,
  ``score_ui + (w - 1) * std_u * sum_{j selected} a_ij`` with ``a_ij`` the item's
  L1-normalised intent activation (the model's own ``item_intent_activations``) and
  ``std_u`` the spread of user u's scores. Non-decreasing in ``w`` for the items that
  activate the intents, unchanged for the others; use it when ``model`` moves too little.
"""
import argparse
import math
import re
import sys
from collections import Counter
from contextlib import contextmanager

import numpy as np
import torch

from recbole_saerec.analysis.checkpoints import add_checkpoint_args
from recbole_saerec.analysis.checkpoints import batches, load_model, test_rows
from recbole_saerec.analysis.explain import scored_forward
from recbole_saerec.analysis.labels import model_labels, stem
from recbole_saerec.cli import UsageError, run_main
from recbole_saerec.fileio import write_json_atomic
from recbole_saerec.metrics import hit_ndcg_per_user

MODES = ("model", "score")


# -------------------------------------------------------------------------- selection
FIELDS = ("label", "words", "summary", "both", "all")
_WORD = re.compile(r"[^\W_]+")


def matches(pattern, text):
    """Whole-word match of ``pattern`` in ``text``, case-insensitive, a plural matching its singular
    ('nail' matches 'Nails' and 'Nail Art', never 'snail'). Several words match as a phrase; a word
    ending in '*' matches as a prefix ('moistur*' matches 'moisturizer')."""
    want = str(pattern).lower().split()
    if not want:
        return False
    have = _WORD.findall(str(text).lower())
    stems = [stem(w) for w in have]

    def word_ok(p, i):
        if p.endswith("*"):
            return have[i].startswith(p[:-1]) if p[:-1] else False
        return stems[i] == stem(p) or have[i] == p

    return any(all(word_ok(p, i + k) for k, p in enumerate(want)) for i in range(len(have) - len(want) + 1))


def intent_texts(entry, field, label=None):
    """What ``--field`` compares with: the evidence label (its category and title words), the MI
    words, the judge's summary, or several."""
    texts = []
    if field in ("label", "all") and label is not None:
        texts += [label.get("category") or ""] + list(label.get("words") or [])
    if field in ("words", "both", "all"):
        texts += [str(w) for w in entry.get("words", [])]
    if field in ("summary", "both", "all"):
        texts.append(str(entry.get("summary", "")))
    return [t for t in texts if t]


def select_intents(catalogue, patterns, field="both", labels=None):
    """Rows of the catalogue whose texts (:func:`intent_texts`) match any pattern as whole words (:func:`matches`)."""
    if isinstance(patterns, str):
        patterns = patterns.split(",")
    patterns = [p.strip() for p in patterns if p.strip()]
    if field not in FIELDS:
        raise ValueError(f"field must be one of {', '.join(FIELDS)}, not '{field}'.")
    if field in ("label", "all") and labels is None:
        raise ValueError(f"field '{field}' needs the intents' labels (analysis.labels.model_labels).")
    rows = []
    for pos, entry in enumerate(catalogue):
        row = entry.get("row", pos)
        texts = intent_texts(entry, field, labels[row] if labels is not None else None)
        if any(matches(p, t) for p in patterns for t in texts):
            rows.append(row)
    return rows


def category_matrix(bundle, category_field, sep=None):
    """(categories, [n_items, n_categories] 0/1 float matrix) over the model's item ids (0 = padding, no label)."""
    ds = bundle.test_data._dataset
    n_items = ds.item_num
    tokens = ds.id2token(ds.iid_field, np.arange(1, n_items))
    labels = [set(bundle.items.labels(t, category_field, sep)) for t in tokens]
    cats = sorted(set().union(*labels)) if labels else []
    index = {c: k for k, c in enumerate(cats)}
    mat = np.zeros((n_items, len(cats)), dtype=np.float32)
    for i, labs in enumerate(labels, start=1):
        mat[i, [index[c] for c in labs]] = 1.0
    return cats, mat


def intent_category_shares(model, cat_matrix):
    """[n_intents, n_categories]: share of each intent's item activation that falls on items of each category.

    What an intent fires on, not what its words say: a 'horror' intent whose items are
    comedies has its mass on Comedy.
    """
    act = model.item_intent_activations
    act = (act.to_dense() if act.is_sparse else act).detach().cpu().numpy().astype(np.float64)
    act = np.clip(act, 0.0, None)  # only what the intent fires on
    mass = act.T @ cat_matrix
    return mass / np.maximum(act.sum(0)[:, None], 1e-12)


def select_by_category(shares, cat_index, base_share, min_share=0.5, min_lift=2.0):
    """Intent rows whose activating items are mostly of one category.

    A row is selected for category c when at least ``min_share`` of its activation mass is
    on items of c AND that is ``min_lift`` times c's share of all items (so a category
    almost every item carries selects nothing). Strongest share first.
    """
    col = shares[:, cat_index]
    ok = (col >= min_share) & (col >= min_lift * base_share)
    rows = np.flatnonzero(ok)
    return rows[np.argsort(-col[rows], kind="stable")].tolist()


@contextmanager
def steered(model, rows, weight):
    """Temporarily set ``model.steer_weights[rows] = weight`` (restored afterwards)."""
    saved = model.steer_weights.clone()
    try:
        if len(rows):
            model.steer_weights[torch.as_tensor(list(rows), dtype=torch.long)] = float(weight)
        yield model
    finally:
        model.steer_weights.copy_(saved)


# -------------------------------------------------------------------------- ranking
def score_prior(model, rows):
    """[n_items] sum of the items' (L1-normalised) activations on the selected intents."""
    act = model.item_intent_activations
    act = act.to_dense() if act.is_sparse else act
    if not len(rows):
        return torch.zeros(act.shape[0], device=act.device)
    return act[:, torch.as_tensor(list(rows), dtype=torch.long, device=act.device)].sum(1)


@torch.no_grad()
def rank_all(bundle, topk=10, rows=(), weight=1.0, mode="model", users=None, batch_size=None, progress=None):
    """Top-K item ids of every test user and HR@K / NDCG@K, with the selected intents steered.

    Returns dict(top_ids: LongTensor [U, K], hr, ndcg, users: int). HR/NDCG use RecBole's own
    rule (the held-out item among ``scores.topk(K)``), so the unsteered numbers are the test
    metrics of the checkpoint. ``progress``: a description for a progress bar over the batches
    (shown on a terminal only).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not '{mode}'.")
    model = bundle.model
    model.eval()
    iid_field = bundle.test_data._dataset.iid_field
    prior = score_prior(model, rows) if mode == "score" and weight != 1 else None
    tops, flags = [], []
    with steered(model, rows if mode == "model" else (), weight):
        rows_ = test_rows(bundle, users)
        size = batch_size or bundle.config["eval_batch_size"]
        chunks = batches(bundle, rows_, batch_size)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc=progress, total=-(-len(rows_) // size), disable=None, leave=False)
        for _, inter in chunks:
            _, scores, _ = scored_forward(model, inter, bundle.config)
            if prior is not None:
                spread = scores[:, 1:].std(dim=1, keepdim=True)
                scores = scores + (weight - 1.0) * spread * prior.unsqueeze(0)
            top = scores.topk(topk, dim=-1).indices
            tops.append(top.cpu())
            flags.append((top == inter[iid_field].unsqueeze(1)).cpu())
    flags = torch.cat(flags).numpy()
    per_user = hit_ndcg_per_user(flags, np.ones(len(flags)), [topk])
    return {"top_ids": torch.cat(tops), "hr": float(per_user[f"hit@{topk}"].mean()),
            "ndcg": float(per_user[f"ndcg@{topk}"].mean()), "users": int(len(flags))}


def category_counts(bundle, top_ids, category_field, sep=None):
    """Counter: category -> number of recommended items (over all users' lists) carrying it."""
    ds = bundle.test_data._dataset
    ids, freq = np.unique(top_ids.numpy().ravel(), return_counts=True)
    tokens = ds.id2token(ds.iid_field, ids)
    counts = Counter()
    for tok, n in zip(tokens, freq):
        for label in set(bundle.items.labels(tok, category_field, sep)):
            counts[label] += int(n)
    return counts


def slots_with_any(bundle, top_ids, categories, category_field, sep=None):
    """Recommended slots (over all users' lists) whose item carries at least one of ``categories``:
    the targets together, each slot counted once (an item in 'Nails' and 'Nail Art' is one slot)."""
    if not categories:
        return 0
    ds = bundle.test_data._dataset
    wanted = set(categories)
    ids, freq = np.unique(top_ids.numpy().ravel(), return_counts=True)
    tokens = ds.id2token(ds.iid_field, ids)
    return int(sum(n for tok, n in zip(tokens, freq) if wanted & set(bundle.items.labels(tok, category_field, sep))))


def steer_run(bundle, base, before, targets, rows, weight, topk, category_field, mode="model", sep=None,
              batch_size=None, progress=None):
    """One steered ranking against the unsteered ``base``: target counts, metrics, drift of the other categories."""
    after_run = rank_all(bundle, topk, rows=rows, weight=weight, mode=mode, batch_size=batch_size,
                         progress=progress)
    after = category_counts(bundle, after_run["top_ids"], category_field, sep)
    cats = sorted(set(before) | set(after))
    delta = {c: after.get(c, 0) - before.get(c, 0) for c in cats}
    others = {c: d for c, d in delta.items() if c not in targets}
    largest = max(others.items(), key=lambda kv: abs(kv[1]), default=(None, 0))
    largest = largest if largest[1] else (None, 0)
    other_total = sum(before.get(c, 0) for c in others)
    changed = (after_run["top_ids"] != base["top_ids"]).any(1)
    any_before = slots_with_any(bundle, base["top_ids"], targets, category_field, sep)
    any_after = slots_with_any(bundle, after_run["top_ids"], targets, category_field, sep)
    return {
        "weight": float(weight),
        "targets": {c: {"before": before.get(c, 0), "after": after.get(c, 0), "change": delta.get(c, 0)}
                    for c in targets},
        "any_target": {"before": any_before, "after": any_after, "change": any_after - any_before},
        "metrics": {f"hit@{topk}": {"before": base["hr"], "after": after_run["hr"]},
                    f"ndcg@{topk}": {"before": base["ndcg"], "after": after_run["ndcg"]}},
        "other_drift": {"total_abs_change": int(sum(abs(d) for d in others.values())),
                        "relative": (sum(abs(d) for d in others.values()) / other_total) if other_total else 0.0,
                        "largest": {"category": largest[0], "change": int(largest[1]),
                                    "before": before.get(largest[0], 0)},
                        "top_changes": [{"category": c, "before": before.get(c, 0), "change": int(d)} for c, d in
                                        sorted(others.items(), key=lambda kv: -abs(kv[1]))[:5] if d]},
        "users_with_changed_topk": int(changed.sum()),
        "counts_after": dict(after),
    }


def category_sweep(bundle, n_categories=10, weight=2.0, category_field="categories", topk=10, mode="model",
                   sep=None, min_share=0.5, min_lift=2.0, max_item_share=0.5, batch_size=None, labels=None,
                   progress=False):
    """Steer each of the ``n_categories`` largest categories through the intents that fire on it.

    Categories are ranked by how many items carry them; those carried by more than
    ``max_item_share`` of the items (e.g. the root 'Beauty') are skipped and listed.
    For each category: intents chosen by :func:`select_by_category`, set to ``weight``, and
    the change of that category's count in all test users' top-K lists. The expected sign
    is + for weight > 1 and - for weight < 1; a category with no selected intent counts as
    not moved. Only readable intents are steered (``labels``, default settings when None); each
    category's run reports its HR/NDCG cost. Returns the per-category runs and how many moved with
    the expected sign.
    """
    if category_field not in bundle.items.columns:
        raise ValueError(f"No column '{category_field}' in the .item file of '{bundle.config['dataset']}' "
                         f"(columns: {', '.join(bundle.items.columns) or 'no .item file'}); "
                         "choose --category_field.")
    if weight == 1:
        raise ValueError("category_sweep: weight 1 changes nothing; choose a weight above or below 1.")
    model = bundle.model
    labels = model_labels(bundle) if labels is None else labels
    cats, mat = category_matrix(bundle, category_field, sep)
    item_share = mat[1:].mean(0) if len(mat) > 1 else np.zeros(len(cats))
    shares = intent_category_shares(model, mat)
    order = np.argsort(-item_share, kind="stable")
    skipped = [cats[c] for c in order if item_share[c] > max_item_share]
    chosen = [int(c) for c in order if item_share[c] <= max_item_share][:int(n_categories)]
    base = rank_all(bundle, topk, mode=mode, batch_size=batch_size, progress="unsteered" if progress else None)
    before = category_counts(bundle, base["top_ids"], category_field, sep)
    sign = 1 if weight > 1 else -1
    runs = []
    for n, c in enumerate(chosen, 1):
        rows, hidden = readable_only(select_by_category(shares, c, item_share[c], min_share, min_lift), labels)
        run = steer_run(bundle, base, before, [cats[c]], rows, weight, topk, category_field, mode, sep,
                        batch_size, progress=f"{n}/{len(chosen)} {cats[c]}" if progress else None) if rows else None
        change = run["targets"][cats[c]]["change"] if run else 0
        runs.append({"category": cats[c], "item_share": round(float(item_share[c]), 4), "intents": rows,
                     "hidden_unreadable": hidden,
                     "intent_shares": [round(float(shares[r, c]), 3) for r in rows],
                     "before": before.get(cats[c], 0), "change": int(change),
                     "expected_sign": bool(change * sign > 0),
                     "other_drift": run["other_drift"] if run else None,
                     "metrics": run["metrics"] if run else None,
                     "labels": [labels[r]["name"] for r in rows[:3]]})
    return {"checkpoint": bundle.checkpoint, "dataset": bundle.config["dataset"], "mode": mode, "topk": topk,
            "weight": float(weight), "category_field": category_field, "users": base["users"],
            "min_share": min_share, "min_lift": min_lift, "skipped_categories": skipped, "categories": runs,
            "n_expected_sign": sum(r["expected_sign"] for r in runs), "n_categories": len(runs)}


def cost_text(metrics):
    """'HR@10 0.0368 -> 0.0350 (-0.0018), NDCG@10 ...' from a run's metrics."""
    return ", ".join(f"{name.replace('hit', 'HR').replace('ndcg', 'NDCG')} {m['before']:.4f} -> {m['after']:.4f} "
                     f"({m['after'] - m['before']:+.4f})" for name, m in metrics.items())


def format_sweep(rep):
    k = rep["topk"]
    lines = [f"Steering {rep['dataset']} by category ({rep['mode']} mode, weight {rep['weight']:g}): readable "
             f"intents chosen by the items they fire on (>= {rep['min_share']:.0%} of their activation on the "
             f"category, >= {rep['min_lift']:g}x its item share); top-{k} of {rep['users']} test users."]
    if rep["skipped_categories"]:
        lines.append(f"Skipped (carried by most items): {', '.join(rep['skipped_categories'])}")
    lines.append(f"{'category':<28} {'items':>6} {'intents':>7} {'before':>7} {'change':>7}  sign  "
                 f"{'other |change|':>14}  {'HR@' + str(k) + ' change':>13}  {'NDCG@' + str(k) + ' change':>15}")
    for r in rep["categories"]:
        drift = r["other_drift"]["total_abs_change"] if r["other_drift"] else 0
        m = r["metrics"] or {}
        delta = [f"{v['after'] - v['before']:+.4f}" for v in m.values()] or ["", ""]
        lines.append(f"{r['category'][:28]:<28} {r['item_share']:>6.1%} {len(r['intents']):>7} {r['before']:>7} "
                     f"{r['change']:>+7d}  {'ok' if r['expected_sign'] else 'NO':<4}  {drift:>14}  {delta[0]:>13}  "
                     f"{delta[1]:>15}")
    lines.append(f"Expected sign for {rep['n_expected_sign']} of {rep['n_categories']} categories.")
    hidden = sum(r.get("hidden_unreadable", 0) for r in rep["categories"])
    if hidden:
        lines.append(f"{hidden} unreadable intents fire on these categories too; they were not steered "
                     "(--label_min_readability=0 includes them).")
    return "\n".join(lines)


def readable_only(rows, labels):
    """(the readable rows, how many matched rows were hidden as unreadable)."""
    if labels is None:
        return list(rows), 0
    kept = [r for r in rows if labels[r]["readable"]]
    return kept, len(rows) - len(kept)


def steer_report(bundle, match=None, weights=(2.0,), field="label", category_field="categories", topk=10,
                 target_categories=None, mode="model", sep=None, batch_size=None, labels=None, categories=None,
                 min_share=0.5, min_lift=2.0, progress=False):
    """The counterfactual experiment: category counts and metrics before/after steering.

    Intents are selected by whole words (``match``, compared with ``field``, :func:`matches`) or by
    what they fire on (``categories``: names of ``category_field``, :func:`select_by_category`),
    among the readable ones (``labels``: :func:`recbole_saerec.analysis.labels.model_labels`;
    default settings when None); the matched but unreadable are counted, not steered.
    """
    model = bundle.model
    if category_field not in bundle.items.columns:
        raise ValueError(f"No column '{category_field}' in the .item file of '{bundle.config['dataset']}' "
                         f"(columns: {', '.join(bundle.items.columns) or 'no .item file'}); "
                         "choose --category_field.")
    labels = model_labels(bundle) if labels is None else labels
    patterns = [p.strip() for p in (match.split(",") if isinstance(match, str) else match or ()) if p.strip()]
    rows = select_intents(model.intent_catalogue, patterns, field, labels) if patterns else []
    named = [c.strip() for c in (categories.split(",") if isinstance(categories, str) else categories or ())
             if c.strip()]
    if named:
        cats, mat = category_matrix(bundle, category_field, sep)
        lower = {c.lower(): k for k, c in enumerate(cats)}
        missing = [c for c in named if c.lower() not in lower]
        if missing:
            raise ValueError(f"no category {', '.join(repr(c) for c in missing)} in '{category_field}' "
                             f"(e.g. {', '.join(cats[:8])})")
        shares = intent_category_shares(model, mat)
        item_share = mat[1:].mean(0)
        for c in named:
            k = lower[c.lower()]
            rows += [r for r in select_by_category(shares, k, item_share[k], min_share, min_lift) if r not in rows]
    rows, hidden = readable_only(rows, labels)
    base = rank_all(bundle, topk, mode=mode, batch_size=batch_size, progress="unsteered" if progress else None)
    before = category_counts(bundle, base["top_ids"], category_field, sep)
    if target_categories is None:  # the categories a match word names, and each named category itself
        lower = {c.lower() for c in named}
        targets = sorted(c for c in before if any(matches(p, c) for p in patterns) or c.lower() in lower)
    else:
        targets = [c.strip() for c in (target_categories.split(",") if isinstance(target_categories, str)
                                       else target_categories) if c.strip()]
    runs = [steer_run(bundle, base, before, targets, rows, w, topk, category_field, mode, sep, batch_size,
                      progress=f"weight {w:g}" if progress else None) for w in weights]
    return {"checkpoint": bundle.checkpoint, "dataset": bundle.config["dataset"], "mode": mode, "topk": topk,
            "match": patterns, "match_categories": named, "field": field, "category_field": category_field,
            "users": base["users"],
            "selected_intents": [{"row": int(r), "label": labels[r]["name"], "readability": labels[r]["readability"],
                                  "words": model.intent_catalogue[r].get("words", []),
                                  "summary": model.intent_catalogue[r].get("summary", "")} for r in rows],
            "hidden_unreadable": hidden, "target_categories": targets, "counts_before": dict(before), "runs": runs}


def format_report(rep, max_intents=12):
    k = rep["topk"]
    how = []
    if rep["match"]:
        how.append(f"match {rep['match']} as whole words in their {rep['field']}")
    if rep.get("match_categories"):
        how.append(f"fire on {rep['match_categories']}")
    lines = [f"Steering {rep['dataset']} ({rep['mode']} mode): {len(rep['selected_intents'])} readable intents "
             f"{' or '.join(how)}; top-{k} of {rep['users']} test users ({rep['users'] * k} recommended slots); "
             f"categories from '{rep['category_field']}'."]
    for s in rep["selected_intents"][:max_intents]:
        lines.append(f"  #{s['row']:<5} {s['label'] or s['summary'] or '(no label)'}  "
                     f"[MI words: {', '.join(s['words'][:5])}]")
    if len(rep["selected_intents"]) > max_intents:
        lines.append(f"  ... and {len(rep['selected_intents']) - max_intents} more")
    if rep.get("hidden_unreadable"):
        lines.append(f"  ({rep['hidden_unreadable']} more matched but are not readable from the items they fire on: "
                     "not steered; --label_min_readability=0 includes them)")
    if not rep["selected_intents"]:
        lines.append("  (no readable intent matches: nothing is steered)")
    lines.append(f"Target categories: {', '.join(rep['target_categories']) or '(none: pass --target_category)'}")
    for run in rep["runs"]:
        lines.append(f"weight {run['weight']:g}:  ({run['users_with_changed_topk']} users' top-{k} lists changed)")
        for c, v in run["targets"].items():
            pct = f" ({100 * v['change'] / v['before']:+.1f}%)" if v["before"] else ""
            lines.append(f"  {c:<28} {v['before']:>7} -> {v['after']:<7} ({v['change']:+d}){pct}")
        if len(run["targets"]) > 1:
            a = run["any_target"]
            pct = f" ({100 * a['change'] / a['before']:+.1f}%)" if a["before"] else ""
            lines.append(f"  {'any target (slots)':<28} {a['before']:>7} -> {a['after']:<7} ({a['change']:+d}){pct}")
        lines.append(f"  cost: {cost_text(run['metrics'])}")
        d = run["other_drift"]
        other_total = sum(v for c, v in rep["counts_before"].items() if c not in rep["target_categories"])
        line = (f"  other categories: total |change| {d['total_abs_change']} ({100 * d['relative']:.2f}% of their "
                f"{other_total} counts)")
        if d["top_changes"]:
            line += "; most moved: " + ", ".join(f"{t['category']} {t['before']}->{t['before'] + t['change']}"
                                                 for t in d["top_changes"])
        lines.append(line)
    if rep["runs"] and rep["target_categories"]:
        sign = lambda w: 1 if w > 1 else -1 if w < 1 else 0  # noqa: E731 - the direction a weight asks for
        wrong = {c: [r["weight"] for r in rep["runs"] if r["targets"][c]["change"] * sign(r["weight"]) < 0]
                 for c in rep["target_categories"]}
        wrong = {c: ws for c, ws in wrong.items() if ws}
        if wrong:
            lines.append("Moved against the weight: " + "; ".join(
                f"{c} at w={', '.join(f'{w:g}' for w in ws)}" for c, ws in wrong.items())
                + " (top-K slots are shared: a target can lose them to the other targets)")
        else:
            lines.append("Every target category moved the way each weight asks.")
    return "\n".join(lines)


def plot_report(rep, path, n_categories=12):
    """PNG: left, each target category's change in percent of its own count (so a category with 12
    recommended slots shows beside one with 20,000) and the targets together; right, the other
    categories that moved most, in slots. One bar per weight; its HR/NDCG cost in the legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before, k = rep["counts_before"], rep["topk"]
    targets = list(rep["target_categories"])
    moved = {}
    for r in rep["runs"]:
        for c in set(before) | set(r["counts_after"]):
            if c not in targets:
                moved[c] = max(moved.get(c, 0), abs(r["counts_after"].get(c, 0) - before.get(c, 0)))
    others = [c for c, d in sorted(moved.items(), key=lambda kv: -kv[1]) if d][:n_categories]
    names = [f"w={r['weight']:g}: HR@{k} {r['metrics'][f'hit@{k}']['after']:.4f}, "
             f"NDCG@{k} {r['metrics'][f'ndcg@{k}']['after']:.4f}" for r in rep["runs"]]

    def pct(before_n, after_n):
        return 100.0 * (after_n - before_n) / before_n if before_n else 0.0

    left = [(f"{c} ({before.get(c, 0)})", [pct(r["targets"][c]["before"], r["targets"][c]["after"])
                                           for r in rep["runs"]]) for c in targets]
    if len(targets) > 1 and rep["runs"]:
        a0 = rep["runs"][0]["any_target"]["before"]
        left.append((f"any target ({a0} slots)", [pct(a0, r["any_target"]["after"]) for r in rep["runs"]]))
    right = [(f"{c} ({before.get(c, 0)})", [r["counts_after"].get(c, 0) - before.get(c, 0) for r in rep["runs"]])
             for c in others]
    rows = max(len(left), len(right), 3)
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.22 * rows * max(len(rep["runs"]), 1) + 2.6))
    for ax, entries, xlabel, title in ((axes[0], left, "change, % of its own count", "target categories"),
                                       (axes[1], right, "change in recommended slots", "other categories that "
                                                                                        "moved most")):
        if not entries or not rep["runs"]:
            ax.text(0.5, 0.5, "(none)", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        y = np.arange(len(entries))
        height = 0.8 / len(rep["runs"])
        for i, name in enumerate(names):
            ax.barh(y - 0.4 + (i + 0.5) * height, [e[1][i] for e in entries], height, label=name, color=f"C{i + 1}")
        ax.set_yticks(y)
        ax.set_yticklabels([e[0] for e in entries], fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="black", lw=0.6)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title(title, fontsize=10)
    handles, texts = next((ax.get_legend_handles_labels() for ax in axes if ax.get_legend_handles_labels()[0]),
                          ([], []))
    unsteered = rep["runs"][0]["metrics"] if rep["runs"] else None
    base = (f"; unsteered HR@{k} {unsteered[f'hit@{k}']['before']:.4f}, NDCG@{k} "
            f"{unsteered[f'ndcg@{k}']['before']:.4f}") if unsteered else ""
    if handles:
        fig.legend(handles, texts, loc="lower center", ncol=min(len(texts), 3), fontsize=8, frameon=False)
    what = ", ".join(rep["match"] + rep.get("match_categories", []))
    fig.suptitle(f"{rep['dataset']}: steering {len(rep['selected_intents'])} intents ({what}; {rep['mode']} mode)"
                 f"{base}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------- CLI
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_args(parser, "a trained SAERec", scoring=True)
    parser.add_argument("--match", help="comma-separated whole words or phrases, e.g. 'nail,polish' ('moistur*' "
                                        "for a prefix); never a substring ('nail' does not match 'snail')")
    parser.add_argument("--category", help="comma-separated category names of --category_field: the intents that "
                                           "fire on their items (--min_share of the activation, 2x the lift)")
    parser.add_argument("--categories", type=int, default=None,
                        help="sweep: steer each of the N largest categories through the intents that fire on its "
                             "items (instead of --match); reports how many moved with the expected sign")
    parser.add_argument("--min_share", type=float, default=0.5,
                        help="--category / --categories: share of an intent's activation that must fall on the "
                             "category")
    parser.add_argument("--field", default="label", choices=list(FIELDS),
                        help="what --match is compared with: label (default: the category and title words the "
                             "intent's items share), words (its MI words), summary, both (words and summary), all")
    # A sweep by default: a target's response need not be monotone in the weight (a category can gain
    # slots at 1.25 and lose them at 2 to the other targets), which one weight would hide.
    parser.add_argument("--weight", default=None, help="steer weight, or a comma-separated sweep (1 = no change); "
                                                       "default: the sweep 1.25,1.5,2 (--categories: 2)")
    parser.add_argument("--mode", default="model", choices=MODES)
    parser.add_argument("--category_field", default="categories", help="multi-valued .item column (ml-100k: class)")
    parser.add_argument("--category_sep", default=None, help="separator of that column (default: '|' if present, "
                                                             "else spaces)")
    parser.add_argument("--target_category", default=None,
                        help="comma-separated target categories (default: those a --match word names, as whole "
                             "words, and the --category ones)")
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--json", help="write the report to this JSON file")
    parser.add_argument("--png", help="write the category counts before/after to this PNG")
    args, label_args = parser.parse_known_args(argv)

    from recbole_saerec.analysis.labels import label_settings
    from recbole_saerec.cli import config_args

    settings = label_settings(config_args(label_args))  # --label_min_readability=0 ... (labels.yaml)
    weight = args.weight or ("2" if args.categories is not None else "1.25,1.5,2")
    try:
        weights = [float(w) for w in weight.split(",") if w.strip()]
    except ValueError:
        weights = [math.nan]
    if any(not math.isfinite(w) for w in weights):
        raise UsageError("--weight: weights must be finite numbers, e.g. --weight=2.0 or --weight=0.5,2,4")
    if sum(x is not None for x in (args.match, args.category, args.categories)) != 1:
        raise UsageError("give one of --match (intents by words), --category NAME or --categories N (by the items "
                         "they fire on)")
    if args.categories is not None and len(weights) != 1:
        raise UsageError("--categories takes one --weight (a sweep of weights is for --match)")
    bundle = load_model(args.checkpoint, data_path=args.data_path, device=args.device, trust=args.trust_checkpoint)
    try:
        labels = model_labels(bundle, settings)
        if args.categories is not None:
            rep = category_sweep(bundle, args.categories, weights[0], category_field=args.category_field,
                                 topk=args.topk, mode=args.mode, sep=args.category_sep, min_share=args.min_share,
                                 batch_size=args.batch_size, labels=labels, progress=True)
        else:
            rep = steer_report(bundle, args.match, weights, field=args.field, category_field=args.category_field,
                               topk=args.topk, target_categories=args.target_category, mode=args.mode,
                               sep=args.category_sep, batch_size=args.batch_size, labels=labels,
                               categories=args.category, min_share=args.min_share, progress=True)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(format_sweep(rep) if args.categories is not None else format_report(rep))
    if args.json:
        write_json_atomic(args.json, rep)
    if args.png and args.categories is None:
        plot_report(rep, args.png)
    return rep


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m recbole_saerec.analysis.steer"))
