"""The probe's outputs: concepts.{json,csv,md}, tuning.csv, metrics.json and the two plots."""
import csv
import json
import os

import numpy as np

from recbole_saerec.analysis.probe.cases import json_value


# ----------------------------------------------------------------------------- outputs
def write_outputs(out, rows, metrics, tuning_rows):
    table = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    with open(os.path.join(out, "concepts.json"), "w") as f:
        json.dump(table, f, indent=1)
    fields = ["latent", "frequency", "n_top_cases", "terms", "item_share", "base_rate", "confidence", "n_pos",
              "n_neg", "verified", "intra_sim", "top_items"] + (["lm_concept", "lm_verdict"]
                                                                 if any("lm_concept" in r for r in table) else [])
    with open(os.path.join(out, "concepts.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in table:
            w.writerow({**r, "terms": " | ".join(r["terms"]), "top_items": " || ".join(r["top_items"])})
    ranked = sorted(table, key=lambda r: (-(r["confidence"] or -1), -r["frequency"]))
    c = metrics["concepts"]
    with open(os.path.join(out, "concepts.md"), "w") as f:
        f.write(f"# Concepts: {metrics['model']} on {metrics['dataset']}\n\n"
                f"{c['n_with_concept']} latents with a concept (of {c['n_latents']}), {c['n_verifiable']} "
                f"verifiable, **{c['n_verified']} verified** (confidence >= 0.8). Top 40 by confidence; all in "
                f"concepts.csv.\n\n| latent | terms | confidence | pos/neg | freq | top items |\n"
                f"| --- | --- | --- | --- | --- | --- |\n")
        for r in ranked[:40]:
            items = "; ".join(t.replace("|", "/") for t in r["top_items"][:3])
            f.write(f"| {r['latent']} | {', '.join(r['terms'])} | {r['confidence']} | {r['n_pos']}/{r['n_neg']} | "
                    f"{r['frequency']} | {items} |\n")
    with open(os.path.join(out, "tuning.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["latent", "scale", "n_cases", "own_presence", "other_presence"])
        w.writeheader()
        w.writerows(tuning_rows)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1, default=json_value)
    _plots(out, table, metrics, tuning_rows)


def _plots(out, table, metrics, tuning_rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = [r["confidence"] for r in table if r["confidence"] is not None]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(conf, bins=np.linspace(0, 1, 21), color="#4C72B0")
    ax.axvline(0.8, color="k", ls="--", lw=1)
    ax.set_xlabel("concept confidence (accuracy)")
    ax.set_ylabel("latents")
    ax.set_title(f"{metrics['model']} / {metrics['dataset']}: {metrics['concepts']['n_verified']} verified")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "confidence_hist.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for j in sorted({r["latent"] for r in tuning_rows}):
        rs = [r for r in tuning_rows if r["latent"] == j]
        ax.plot([r["scale"] for r in rs], [r["own_presence"] for r in rs], color="#C44E52", alpha=0.25, lw=0.8)
    summ = metrics["tuning"]["summary"]
    if summ:
        xs = [float(s) for s in summ]
        ax.plot(xs, [v["own_presence"] for v in summ.values()], "o-", color="#C44E52", label="its own concept")
        ax.plot(xs, [v["other_presence"] for v in summ.values()], "s-", color="#4C72B0", label="other concepts")
    ax.set_xlabel("scale of one latent's activation")
    ax.set_ylabel("presence in top-10")
    ax.set_title(f"Targeted tuning: {metrics['model']} / {metrics['dataset']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "tuning_curves.png"), dpi=120)
    plt.close(fig)


