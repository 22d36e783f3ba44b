"""Steer a trained SAERec through its intents, at inference, without retraining.

    python -m recbole_saerec.analysis.steer --checkpoint=saved/SAERec-....pth --match="skin,moistur" --weight 2.0 \
        --category_field categories --topk 10 [--json report.json] [--png report.png]
    python -m recbole_saerec.analysis.steer --checkpoint=... --match=horror --field words --weight 0,0.5,2,4 \
        --category_field class
    python -m recbole_saerec.analysis.steer --checkpoint=... --categories 10 --weight 2   # by what intents fire on

With ``--categories N`` (:func:`category_sweep`) step 1 instead picks, for each of the N
largest categories, the intents whose activating items are mostly of that category, and the
report counts the categories that moved with the expected sign. Otherwise:

1. Select the intents whose catalogue words (``--field words``), summary (``summary``) or
   either (``both``, default) contain any of the comma-separated ``--match`` substrings
   (case-insensitive).
2. Set their weights to ``--weight`` (several: a sweep) and rank all items for EVERY
   test user (the test position, as the test metrics do), before and after.
3. Report: for each category of ``--category_field`` in the dataset's ``.item`` file
   (amazon-*: ``categories``, names split on '|'; ml-100k: ``class`` genres split on
   spaces), how many recommended items (summed over users' top-K lists) carry it,
   before/after; the change in HR@K / NDCG@K; and the drift of the OTHER categories
   (total absolute change of their counts, and the largest one). The target categories
   are ``--target_category`` or, by default, those whose name contains a match pattern.

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
import sys
from collections import Counter
from contextlib import contextmanager

import numpy as np
import torch

from recbole_saerec.analysis.explain import batches, load_model, scored_forward, test_rows
from recbole_saerec.analysis.checkpoints import add_checkpoint_args
from recbole_saerec.artefacts import write_json_atomic
from recbole_saerec.cli import UsageError, run_main
from recbole_saerec.utils import hit_ndcg_per_user

MODES = ("model", "score")


# -------------------------------------------------------------------------- selection
def select_intents(catalogue, patterns, field="both"):
    """Rows of the catalogue whose words / summary contain any pattern (case-insensitive)."""
    if isinstance(patterns, str):
        patterns = patterns.split(",")
    patterns = [p.strip().lower() for p in patterns if p.strip()]
    if field not in ("words", "summary", "both"):
        raise ValueError(f"field must be words, summary or both, not '{field}'.")
    rows = []
    for pos, entry in enumerate(catalogue):
        texts = []
        if field in ("words", "both"):
            texts += [str(w).lower() for w in entry.get("words", [])]
        if field in ("summary", "both"):
            texts.append(str(entry.get("summary", "")).lower())
        if any(p in t for p in patterns for t in texts):
            rows.append(entry.get("row", pos))
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
def rank_all(bundle, topk=10, rows=(), weight=1.0, mode="model", users=None, batch_size=None):
    """Top-K item ids of every test user and HR@K / NDCG@K, with the selected intents steered.

    Returns dict(top_ids: LongTensor [U, K], hr, ndcg, users: int). HR/NDCG use RecBole's own
    rule (the held-out item among ``scores.topk(K)``), so the unsteered numbers are the test
    metrics of the checkpoint.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not '{mode}'.")
    model = bundle.model
    model.eval()
    iid_field = bundle.test_data._dataset.iid_field
    prior = score_prior(model, rows) if mode == "score" and weight != 1 else None
    tops, flags = [], []
    with steered(model, rows if mode == "model" else (), weight):
        for _, inter in batches(bundle, test_rows(bundle, users), batch_size):
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


def steer_run(bundle, base, before, targets, rows, weight, topk, category_field, mode="model", sep=None,
              batch_size=None):
    """One steered ranking against the unsteered ``base``: target counts, metrics, drift of the other categories."""
    after_run = rank_all(bundle, topk, rows=rows, weight=weight, mode=mode, batch_size=batch_size)
    after = category_counts(bundle, after_run["top_ids"], category_field, sep)
    cats = sorted(set(before) | set(after))
    delta = {c: after.get(c, 0) - before.get(c, 0) for c in cats}
    others = {c: d for c, d in delta.items() if c not in targets}
    largest = max(others.items(), key=lambda kv: abs(kv[1]), default=(None, 0))
    largest = largest if largest[1] else (None, 0)
    other_total = sum(before.get(c, 0) for c in others)
    changed = (after_run["top_ids"] != base["top_ids"]).any(1)
    return {
        "weight": float(weight),
        "targets": {c: {"before": before.get(c, 0), "after": after.get(c, 0), "change": delta.get(c, 0)}
                    for c in targets},
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
                   sep=None, min_share=0.5, min_lift=2.0, max_item_share=0.5, batch_size=None):
    """Steer each of the ``n_categories`` largest categories through the intents that fire on it.

    Categories are ranked by how many items carry them; those carried by more than
    ``max_item_share`` of the items (e.g. the root 'Beauty') are skipped and listed.
    For each category: intents chosen by :func:`select_by_category`, set to ``weight``, and
    the change of that category's count in all test users' top-K lists. The expected sign
    is + for weight > 1 and - for weight < 1; a category with no selected intent counts as
    not moved. Returns the per-category runs and how many moved with the expected sign.
    """
    if category_field not in bundle.items.columns:
        raise ValueError(f"No column '{category_field}' in the .item file of '{bundle.config['dataset']}' "
                         f"(columns: {', '.join(bundle.items.columns) or 'no .item file'}); "
                         "choose --category_field.")
    if weight == 1:
        raise ValueError("category_sweep: weight 1 changes nothing; choose a weight above or below 1.")
    model = bundle.model
    cats, mat = category_matrix(bundle, category_field, sep)
    item_share = mat[1:].mean(0) if len(mat) > 1 else np.zeros(len(cats))
    shares = intent_category_shares(model, mat)
    order = np.argsort(-item_share, kind="stable")
    skipped = [cats[c] for c in order if item_share[c] > max_item_share]
    chosen = [int(c) for c in order if item_share[c] <= max_item_share][:int(n_categories)]
    base = rank_all(bundle, topk, mode=mode, batch_size=batch_size)
    before = category_counts(bundle, base["top_ids"], category_field, sep)
    sign = 1 if weight > 1 else -1
    runs = []
    for c in chosen:
        rows = select_by_category(shares, c, item_share[c], min_share, min_lift)
        run = steer_run(bundle, base, before, [cats[c]], rows, weight, topk, category_field, mode, sep,
                        batch_size) if rows else None
        change = run["targets"][cats[c]]["change"] if run else 0
        runs.append({"category": cats[c], "item_share": round(float(item_share[c]), 4), "intents": rows,
                     "intent_shares": [round(float(shares[r, c]), 3) for r in rows],
                     "before": before.get(cats[c], 0), "change": int(change),
                     "expected_sign": bool(change * sign > 0),
                     "other_drift": run["other_drift"] if run else None,
                     "metrics": run["metrics"] if run else None})
    return {"checkpoint": bundle.checkpoint, "dataset": bundle.config["dataset"], "mode": mode, "topk": topk,
            "weight": float(weight), "category_field": category_field, "users": base["users"],
            "min_share": min_share, "min_lift": min_lift, "skipped_categories": skipped, "categories": runs,
            "n_expected_sign": sum(r["expected_sign"] for r in runs), "n_categories": len(runs)}


def format_sweep(rep):
    k = rep["topk"]
    lines = [f"Steering {rep['dataset']} by category ({rep['mode']} mode, weight {rep['weight']:g}): intents "
             f"chosen by the items they fire on (>= {rep['min_share']:.0%} of their activation on the category, "
             f">= {rep['min_lift']:g}x its item share); top-{k} of {rep['users']} test users."]
    if rep["skipped_categories"]:
        lines.append(f"Skipped (carried by most items): {', '.join(rep['skipped_categories'])}")
    lines.append(f"{'category':<28} {'items':>6} {'intents':>7} {'before':>7} {'change':>7}  sign  other |change|")
    for r in rep["categories"]:
        drift = r["other_drift"]["total_abs_change"] if r["other_drift"] else 0
        lines.append(f"{r['category'][:28]:<28} {r['item_share']:>6.1%} {len(r['intents']):>7} {r['before']:>7} "
                     f"{r['change']:>+7d}  {'ok' if r['expected_sign'] else 'NO':<4}  {drift}")
    lines.append(f"Expected sign for {rep['n_expected_sign']} of {rep['n_categories']} categories.")
    return "\n".join(lines)


def steer_report(bundle, match, weights=(2.0,), field="both", category_field="categories", topk=10,
                 target_categories=None, mode="model", sep=None, batch_size=None):
    """The counterfactual experiment: category counts and metrics before/after steering."""
    model = bundle.model
    if category_field not in bundle.items.columns:
        raise ValueError(f"No column '{category_field}' in the .item file of '{bundle.config['dataset']}' "
                         f"(columns: {', '.join(bundle.items.columns) or 'no .item file'}); "
                         "choose --category_field.")
    patterns = [p.strip() for p in (match.split(",") if isinstance(match, str) else match) if p.strip()]
    rows = select_intents(model.intent_catalogue, patterns, field)
    base = rank_all(bundle, topk, mode=mode, batch_size=batch_size)
    before = category_counts(bundle, base["top_ids"], category_field, sep)
    if target_categories is None:
        targets = sorted(c for c in before if any(p.lower() in c.lower() for p in patterns))
    else:
        targets = [c.strip() for c in (target_categories.split(",") if isinstance(target_categories, str)
                                       else target_categories) if c.strip()]
    runs = [steer_run(bundle, base, before, targets, rows, w, topk, category_field, mode, sep, batch_size)
            for w in weights]
    return {"checkpoint": bundle.checkpoint, "dataset": bundle.config["dataset"], "mode": mode, "topk": topk,
            "match": patterns, "field": field, "category_field": category_field, "users": base["users"],
            "selected_intents": [{"row": int(r), "words": model.intent_catalogue[r].get("words", []),
                                  "summary": model.intent_catalogue[r].get("summary", "")} for r in rows],
            "target_categories": targets, "counts_before": dict(before), "runs": runs}


def format_report(rep, max_intents=12):
    k = rep["topk"]
    lines = [f"Steering {rep['dataset']} ({rep['mode']} mode): {len(rep['selected_intents'])} intents match "
             f"{rep['match']} in {rep['field']}; top-{k} of {rep['users']} test users "
             f"({rep['users'] * k} recommended slots); categories from '{rep['category_field']}'."]
    for s in rep["selected_intents"][:max_intents]:
        lines.append(f"  #{s['row']:<5} {s['summary'] or '(no summary)'}  [{', '.join(s['words'][:8])}]")
    if len(rep["selected_intents"]) > max_intents:
        lines.append(f"  ... and {len(rep['selected_intents']) - max_intents} more")
    if not rep["selected_intents"]:
        lines.append("  (no intent matches: nothing is steered)")
    lines.append(f"Target categories: {', '.join(rep['target_categories']) or '(none: pass --target_category)'}")
    for run in rep["runs"]:
        lines.append(f"weight {run['weight']:g}:  ({run['users_with_changed_topk']} users' top-{k} lists changed)")
        for c, v in run["targets"].items():
            lines.append(f"  {c:<28} {v['before']:>7} -> {v['after']:<7} ({v['change']:+d})")
        for name, m in run["metrics"].items():
            lines.append(f"  {name:<28} {m['before']:.4f} -> {m['after']:.4f} ({m['after'] - m['before']:+.4f})")
        d = run["other_drift"]
        other_total = sum(v for c, v in rep["counts_before"].items() if c not in rep["target_categories"])
        line = (f"  other categories: total |change| {d['total_abs_change']} ({100 * d['relative']:.2f}% of their "
                f"{other_total} counts)")
        if d["top_changes"]:
            line += "; most moved: " + ", ".join(f"{t['category']} {t['before']}->{t['before'] + t['change']}"
                                                 for t in d["top_changes"])
        lines.append(line)
    return "\n".join(lines)


def plot_report(rep, path, n_categories=20):
    """PNG: category counts before / after for each weight (top categories by count, targets first)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = rep["counts_before"]
    targets = [c for c in rep["target_categories"]]
    rest = [c for c, _ in sorted(before.items(), key=lambda kv: -kv[1]) if c not in targets]
    cats = (targets + rest)[:max(n_categories, len(targets))]
    series = [("before (w=1)", [before.get(c, 0) for c in cats])]
    series += [(f"w={r['weight']:g}", [r["counts_after"].get(c, 0) for c in cats]) for r in rep["runs"]]
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(cats) * (1 + 0.3 * len(series))), 5))
    width = 0.8 / len(series)
    x = np.arange(len(cats))
    for i, (name, vals) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels([("* " if c in targets else "") + (c if len(c) < 24 else c[:23] + "…") for c in cats],
                       rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(f"recommended items in top-{rep['topk']} (all test users)")
    ax.set_title(f"{rep['dataset']}: steering intents matching {', '.join(rep['match'])} "
                 f"({rep['mode']} mode; * = target)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------- CLI
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_args(parser, "a trained SAERec", scoring=True)
    parser.add_argument("--match", help="comma-separated substrings, e.g. 'skin,moistur'")
    parser.add_argument("--categories", type=int, default=None,
                        help="sweep: steer each of the N largest categories through the intents that fire on its "
                             "items (instead of --match); reports how many moved with the expected sign")
    parser.add_argument("--min_share", type=float, default=0.5,
                        help="--categories: share of an intent's activation that must fall on the category")
    parser.add_argument("--field", default="both", choices=["words", "summary", "both"])
    parser.add_argument("--weight", default="2.0", help="steer weight, or a comma-separated sweep (1 = no change)")
    parser.add_argument("--mode", default="model", choices=MODES)
    parser.add_argument("--category_field", default="categories", help="multi-valued .item column (ml-100k: class)")
    parser.add_argument("--category_sep", default=None, help="separator of that column (default: '|' if present, "
                                                             "else spaces)")
    parser.add_argument("--target_category", default=None,
                        help="comma-separated target categories (default: those containing a --match pattern)")
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--json", help="write the report to this JSON file")
    parser.add_argument("--png", help="write the category counts before/after to this PNG")
    args = parser.parse_args(argv)

    weights = [float(w) for w in args.weight.split(",") if w.strip()]
    if any(not math.isfinite(w) for w in weights):
        raise UsageError("--weight: weights must be finite numbers, e.g. --weight=2.0 or --weight=0.5,2,4")
    if (args.match is None) == (args.categories is None):
        raise UsageError("give --match (select intents by words) or --categories N (by the items they fire "
                         "on), not both")
    if args.categories is not None and len(weights) != 1:
        raise UsageError("--categories takes one --weight (a sweep of weights is for --match)")
    bundle = load_model(args.checkpoint, data_path=args.data_path, device=args.device, trust=args.trust_checkpoint)
    try:
        if args.categories is not None:
            rep = category_sweep(bundle, args.categories, weights[0], category_field=args.category_field,
                                 topk=args.topk, mode=args.mode, sep=args.category_sep, min_share=args.min_share,
                                 batch_size=args.batch_size)
        else:
            rep = steer_report(bundle, args.match, weights, field=args.field, category_field=args.category_field,
                               topk=args.topk, target_categories=args.target_category, mode=args.mode,
                               sep=args.category_sep, batch_size=args.batch_size)
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
