"""SAERec's intents for the speed benchmark: built and timed (--intents), given (--intent_dir) or synthetic."""
import json
import os
import time

import torch

SYNTHETIC_ENCODER = "synthetic-speed-bench"


def write_synthetic_intents(intent_dir, dataset_name, item_tokens, m=1200, dim=384, per_item=16, seed=0):
    """Random intent artefacts for the dataset's real item tokens (speed only: content is irrelevant)."""
    from recbole_saerec.artefacts import items_sha1, save_artefacts

    g = torch.Generator().manual_seed(seed)
    n = len(item_tokens)
    vectors = torch.randn(m, dim, generator=g)
    indices = torch.rand(n, m, generator=g).topk(per_item, dim=1).indices
    values = torch.rand(n, per_item, generator=g)
    fingerprint = {"dataset": dataset_name, "items_sha1": items_sha1(item_tokens), "n_items": n,
                   "encoder": SYNTHETIC_ENCODER, "layer": None, "pooling": "mean", "corpus_sha1": "synthetic",
                   "method": "synthetic", "n_latents": m, "k": per_item, "keep": "all", "judge": "none"}
    catalogue = [{"row": j, "latent_id": j, "words": [], "summary": "synthetic (speed benchmark)",
                  "verdict": "Yes", "frequency": 0.0} for j in range(m)]
    save_artefacts(intent_dir, fingerprint, vectors, torch.arange(m), item_tokens, indices, values, catalogue,
                   stats={"synthetic": True})
    return intent_dir


def dataset_item_tokens(data_path, dataset_name):
    """Item tokens of the atomic .inter file (what RecBole's item set will be), without RecBole."""
    path = os.path.join(data_path, dataset_name, f"{dataset_name}.inter")
    tokens = set()
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        col = [h.split(":")[0] for h in header].index("item_id")
        for line in f:
            tokens.add(line.rstrip("\n").split("\t")[col])
    return sorted(tokens)


def time_intent_build(config, intent_dir):
    """Run build_intents once: total wall time and the per-stage times the build records in its manifest."""
    from recbole_saerec.intents.build import build_intents

    t0 = time.perf_counter()
    manifest = build_intents(config, intent_dir=intent_dir)
    total = time.perf_counter() - t0
    reported = dict((manifest.get("stats") or {}).get("timings") or {})
    stages = {k: v for k, v in reported.items() if k != "total_s"}
    return {"total_s": total, "stages_s": stages, "build_reported_timings": reported}


def given_intent_info(intent_dir):
    """What the manifest of a given build says about it ({} when it cannot be read)."""
    try:
        with open(os.path.join(intent_dir, "manifest.json")) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return {}
    return {"manifest_timings": manifest.get("stats", {}).get("timings"), "n_intents": manifest.get("n_intents"),
            "dim": manifest.get("dim"), "fingerprint": manifest.get("fingerprint")}


def prepare_intents(args, base):
    """SAERec's intents: built and timed (--intents), given (--intent_dir) or synthetic. (dir, source, info)."""
    from recbole_saerec.config import Config

    probe = Config(model="SAERec", dataset=args.dataset, config_dict=dict(base, intent_autobuild=False))
    if args.intents:
        intent_dir = args.intent_dir or os.path.join(args.out, "intents", args.dataset)
        print(f"[bench] building intents for {args.dataset} into {intent_dir} (timed per stage) ...", flush=True)
        info = time_intent_build(probe, intent_dir)
        print(f"[bench] intent build: {json.dumps(info, default=str)}", flush=True)
        return intent_dir, "built", info
    if args.intent_dir:
        return args.intent_dir, "given", given_intent_info(args.intent_dir)
    intent_dir = os.path.join(args.out, "synthetic_intents", args.dataset)
    tokens = dataset_item_tokens(os.path.dirname(os.path.normpath(probe["data_path"])), args.dataset)
    write_synthetic_intents(intent_dir, args.dataset, tokens, args.synthetic_m, args.synthetic_dim,
                            args.synthetic_per_item, seed=args.seed)
    print(f"[bench] SYNTHETIC intents (m={args.synthetic_m}, d_t={args.synthetic_dim}, "
          f"{args.synthetic_per_item}/item) for {len(tokens)} items in {intent_dir}", flush=True)
    return intent_dir, "synthetic", {}
