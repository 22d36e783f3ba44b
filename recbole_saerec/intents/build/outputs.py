"""The build's readable extras: catalogue tables, the .itemintent atomic file, the catalogue plot."""
import csv
import os
from collections import Counter

import numpy as np

from recbole_saerec.fileio import atomic_path

VERDICT_ORDER = ("Yes", "Probably", "Maybe", "No", "Cannot tell")


# ----------------------------------------------------------------------------- extra files

def _md_cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def _auc(entry):
    return "" if entry.get("detection_auc") is None else f"{entry['detection_auc']:.4f}"


def write_catalogue_tables(intent_dir, catalogue, all_latents, header):
    with atomic_path(os.path.join(intent_dir, "catalogue.md")) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(f"# Intent catalogue\n\n{header}\n\n")
        f.write("| row | latent | verdict | AUROC | frequency | summary | words | example texts |\n"
                "|---|---|---|---|---|---|---|---|\n")
        for c in catalogue:
            f.write(f"| {c['row']} | {c['latent_id']} | {c['verdict']} | {_auc(c)} | {c['frequency']:.4f} | "
                    f"{_md_cell(c['summary'])} | {_md_cell(', '.join(c['words']))} | "
                    f"{_md_cell(' / '.join(c.get('examples', [])))} |\n")
    fields = ["row", "latent_id", "verdict", "detection_auc", "grounded", "fragments", "frequency", "item_frequency",
              "summary", "words", "examples"]
    with atomic_path(os.path.join(intent_dir, "catalogue.csv")) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for c in catalogue:
            w.writerow([c["row"], c["latent_id"], c["verdict"], _auc(c), int(c["grounded"]), " ".join(c["fragments"]),
                        f"{c['frequency']:.6f}",
                        f"{c.get('item_frequency', 0):.6f}", c["summary"], " ".join(c["words"]),
                        " / ".join(c.get("examples", []))])
    with atomic_path(os.path.join(intent_dir, "all_latents.csv")) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["latent_id", "kept", "verdict", "detection_auc", "grounded", "fragments", "frequency", "summary",
                    "words"])
        for a in all_latents:
            w.writerow([a["latent_id"], int(a["kept"]), a["verdict"], _auc(a), int(a["grounded"]),
                        " ".join(a["fragments"]), f"{a['frequency']:.6f}", a["summary"], " ".join(a["words"])])


def write_itemintent(path, item_field, item_tokens, indices, values, seq_sep=" "):
    """``<dataset>.itemintent``: item_id:token, intent_row:token_seq, intent_act:float_seq (items with intents)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{item_field}:token\tintent_row:token_seq\tintent_act:float_seq\n")
        for tok, idx, val in zip(item_tokens, indices.tolist(), values.tolist()):
            pairs = [(i, v) for i, v in zip(idx, val) if i >= 0]
            if pairs:
                f.write(f"{tok}\t{seq_sep.join(str(i) for i, _ in pairs)}\t"
                        f"{seq_sep.join(f'{v:.5g}' for _, v in pairs)}\n")


def write_plot(path, all_latents, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    freq = np.array([x["frequency"] for x in all_latents])
    kept = np.array([x["kept"] for x in all_latents], dtype=bool)
    bins = np.logspace(np.log10(max(freq.min(), 1e-5)), np.log10(max(freq.max(), 2e-5)), 30) if len(freq) else 10
    a.hist([freq[~kept], freq[kept]], bins=bins, stacked=True, label=["not kept", "kept (intents)"],
           color=["#bbbbbb", "#1f77b4"])
    a.set_xscale("log")
    a.set_xlabel("activation frequency (share of corpus texts)")
    a.set_ylabel("latents")
    a.legend()
    a.set_title("live latents")
    counts = Counter(x["verdict"] for x in all_latents)
    b.bar(VERDICT_ORDER, [counts.get(v, 0) for v in VERDICT_ORDER], color="#1f77b4")
    b.set_title("judge verdicts")
    b.set_ylabel("latents")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
