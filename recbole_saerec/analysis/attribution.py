"""GuidedRec attribution: which attribute blocks drive a recommendation.

    python -m recbole_saerec.analysis.attribution --checkpoint=saved/GuidedRec-....pth --users=196,186 --topk 5
    python -m recbole_saerec.analysis.attribution --checkpoint=... --summary    # share per block over all test users

The score of item i for user u is ``h_u . e_i`` with ``e_i = [g_i1; ...; g_iA; b_i]``
(recbole_saerec/intents/guided.py builds the attribute blocks), so it splits exactly into
one term per block (``GuidedRec.contributions``).
"""
import argparse
import json
import sys

import numpy as np
import torch

from recbole_saerec.analysis.checkpoints import add_checkpoint_args
from recbole_saerec.cli import run_main


def _block_text(model, item_id, block):
    if block >= len(model.attr_names):
        return "(collaborative: base embedding)"
    row = int(model.item_attr[item_id, block])
    return model.attr_texts[block][row - 1] if row > 0 else "(missing)"


def explain_users(bundle, users=None, topk=10):
    """Per user: top-K items with their score split by block (attribute names + 'base')."""
    from recbole_saerec.analysis.checkpoints import batches, test_rows

    model = bundle.model
    ds = bundle.test_data._dataset
    uid_tokens, iid_tokens = ds.field2id_token[ds.uid_field], ds.field2id_token[ds.iid_field]
    out = []
    for index, inter in batches(bundle, test_rows(bundle, users)):
        with torch.no_grad():
            user, table = model.user_and_table(inter[model.ITEM_SEQ], inter[model.ITEM_SEQ_LEN])
            scores = user @ table.T
            scores[:, 0] = -torch.inf
            top = scores.topk(topk, dim=1).indices
            contrib = model.contributions(user, table, top)  # [B, K, blocks]
        for b in range(top.shape[0]):
            items = []
            for k in range(topk):
                i = int(top[b, k])
                items.append({"item": str(iid_tokens[i]), "title": bundle.items.title(iid_tokens[i]),
                              "score": float(scores[b, i]),
                              "blocks": {name: {"contribution": float(contrib[b, k, j]),
                                                "value": _block_text(model, i, j)}
                                         for j, name in enumerate(model.block_names)}})
            out.append({"user": str(uid_tokens[int(inter[ds.uid_field][b])]), "recommendations": items})
    return out


def block_summary(bundle, topk=10):
    """Over every test user's top-K: mean |contribution| share and mean contribution per block."""
    rows = explain_users(bundle, None, topk)
    names = bundle.model.block_names
    mags = np.array([[abs(r["blocks"][n]["contribution"]) for n in names] for u in rows for r in u["recommendations"]])
    vals = np.array([[r["blocks"][n]["contribution"] for n in names] for u in rows for r in u["recommendations"]])
    share = (mags / mags.sum(1, keepdims=True).clip(1e-12)).mean(0)
    return {n: {"abs_share": float(s), "mean_contribution": float(v)} for n, s, v in zip(names, share, vals.mean(0))}


def format_user(e):
    lines = [f"user {e['user']}"]
    for rank, r in enumerate(e["recommendations"], 1):
        lines.append(f"  {rank:2d}. {r['title'][:60]}  score {r['score']:.3f}")
        for name, b in sorted(r["blocks"].items(), key=lambda kv: -abs(kv[1]["contribution"])):
            lines.append(f"        {name:>10s} {b['contribution']:+.3f}  {b['value'][:70]}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description="Which attribute blocks drive GuidedRec's recommendations.")
    add_checkpoint_args(p, "a trained GuidedRec")
    p.add_argument("--users", default=None, help="comma-separated raw user ids (default: the first 3 test users)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--summary", action="store_true", help="block shares over all test users' top-K")
    p.add_argument("--json", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    from recbole_saerec.analysis.checkpoints import load_model

    bundle = load_model(args.checkpoint, data_path=args.data_path, trust=args.trust_checkpoint, needs="guided")
    if args.summary:
        result = block_summary(bundle, args.topk)
        for name, s in result.items():
            print(f"{name:>12s}  |share| {s['abs_share']:.3f}  mean contribution {s['mean_contribution']:+.4f}")
    else:
        users = args.users.split(",") if args.users else None
        if users is None:
            ds = bundle.test_data._dataset
            users = [ds.field2id_token[ds.uid_field][int(u)] for u in ds.inter_feat[ds.uid_field][:3]]
        result = explain_users(bundle, users, args.topk)
        print("\n\n".join(format_user(e) for e in result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m recbole_saerec.analysis.attribution"))
