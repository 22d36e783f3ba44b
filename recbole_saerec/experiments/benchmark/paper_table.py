"""The cross-dataset table: the paper's Table 2 laid out with our converged rows beside its figures.

    python -m recbole_saerec.experiments.benchmark.paper_table \\
        [--tables amazon-beauty=docs/results/beauty-converged,amazon-toys=docs/results/toys-converged,...] \\
        [--rows SAERec,SAERec-paper-lr5e-4,SASRec-CE,...] [--out docs/results/paper-table]

Reads each dataset's benchmark folder (its `runs/` records, the per-user metrics beside them)
and writes to ``--out``:

* ``table.csv``: one row per (dataset, model) with HR/NDCG@10/20 (mean over seeds), the seeds, the
  published figure where there is one (properties/published/figures.yaml) and its source;
* ``table.md``: datasets as columns, models as rows, each cell "HR@10 / NDCG@10 (seeds)" and the
  published figure beside it; under it, per dataset, SAERec against SASRec-CE user-paired (the
  per-user metrics averaged over each model's seeds) and seed-paired;
* ``table.png``: one panel per dataset, HR@10 per row, SASRec-CE as a reference line, the
  published figures as black diamonds.

A model without a finished run on a dataset gets an empty cell; nothing is computed from
anything but the records.
"""
import argparse
import csv
import os

from recbole_saerec.experiments.benchmark.records import RUNS, load_records
from recbole_saerec.experiments.benchmark.report import fmt_p, published_figures, reference_of
from recbole_saerec.experiments.benchmark.stats import compare, summarize
from recbole_saerec.fileio import atomic_path

DEFAULT_TABLES = ("amazon-beauty=docs/results/beauty-converged,amazon-toys=docs/results/toys-converged,"
                  "amazon-sports=docs/results/sports-converged")
DEFAULT_ROWS = ("SAERec,SAERec-paper-lr5e-4,SAERec-paper,SASRec+IntentFeat-lr5e-4,SASRec+IntentFeat,SASRec+TextFeat,"
                "ICSRec,ICSRec-official,ICLRec,ICLRec-official,DuoRec,DuoRec-official,CL4SRec,CL4SRec-wd0,LLMInit,"
                "SASRec-CE,SASRec-CE-lr5e-4,SASRec-CE-wd0,SAERec-wd0,GRU4Rec,SASRec-BPR")
METRICS = ("hit@10", "ndcg@10", "hit@20", "ndcg@20")
SHORT = {"amazon-beauty": "Beauty", "amazon-toys": "Toys", "amazon-sports": "Sports"}
# SAERec's reference per dataset: SASRec-CE searched, else pinned at Beauty's pick (datasets not searched)
REFERENCES = ("SASRec-CE", "SASRec-CE-lr5e-4")


def seed_test_text(t):
    """The seed-paired test, or why there is none: it needs two seeds that both models ran."""
    if t["seed_n"] < 2:
        return f"seed-paired: needs 2 shared seeds, has {t['seed_n']}"
    # every seed giving the same difference leaves the t statistic undefined: n/a, not nan
    return f"seeds {t['seed_n']}: p {fmt_p(t['seed_p'], '.2g')}"


def collect(tables, rows):
    """{dataset: (summary {row: {metric: (mean, std, n)}}, records, runs_dir)} for the rows that have runs."""
    out = {}
    for dataset, folder in tables:
        runs_dir = os.path.join(folder, RUNS)
        records = load_records(runs_dir, rows) if os.path.isdir(runs_dir) else []
        out[dataset] = (summarize(records) if records else {}, records, runs_dir)
    return out


def saerec_vs_sasrec(summary, records, runs_dir, ours="SAERec"):
    """(reference row, {metric: comparison}) of SAERec against SASRec-CE (searched, else at Beauty's
    pick: SASRec-CE-lr5e-4), or None before both have runs."""
    theirs = reference_of(summary, preferred=REFERENCES)
    if ours not in summary or theirs is None:
        return None
    return theirs, {m: compare(runs_dir, records, ours, theirs, m, summary) for m in ("hit@10", "ndcg@10")}


def cell(summary, row, metric_pair=("hit@10", "ndcg@10")):
    if row not in summary:
        return ""
    a, b = (summary[row][m] for m in metric_pair)
    return f"{a[0]:.4f} / {b[0]:.4f} ({a[2]})"


def published_cell(published, row):
    entry = published.get(row)
    return f"{entry['hit@10']:.4f} / {entry['ndcg@10']:.4f}" if entry else ""


def write_markdown(path, data, rows):
    datasets = list(data)
    published = {d: published_figures(d) for d in datasets}
    head = "| model | " + " | ".join(f"{SHORT.get(d, d)} ours | {SHORT.get(d, d)} published" for d in datasets) + " |"
    lines = ["Test HR@10 / NDCG@10, mean over seeds (number of seeds); ours on the clean protocol with the "
             "user's history masked, converged (early stopping on VALID, patience 10); published: the figure "
             "its source reports (the SAERec paper's Table 2 on its authors' protocol, which trains on the "
             "validation item and selects on test; ICSRec's and ICLRec's READMEs on Beauty).", "",
             head, "|---|" + "---|---|" * len(datasets)]
    for row in rows:
        if not any(row in data[d][0] or row in published[d] for d in datasets):
            continue
        lines.append(f"| {row} | " + " | ".join(f"{cell(data[d][0], row)} | {published_cell(published[d], row)}"
                                                for d in datasets) + " |")
    lines += ["", "SAERec against SASRec-CE (relative gain; user-paired t-test p, seed-paired p):", ""]
    for d in datasets:
        summary, records, runs_dir = data[d]
        test = saerec_vs_sasrec(summary, records, runs_dir)
        if test is None:
            lines.append(f"- {SHORT.get(d, d)}: not both run yet.")
            continue
        theirs, test = test
        parts = [f"{m.upper()} {t['rel_gain']:+.1%} (p {fmt_p(t['user_p_t'], '.1g')}, " + seed_test_text(t) + ")"
                 for m, t in test.items()]
        lines.append(f"- {SHORT.get(d, d)}{'' if theirs == 'SASRec-CE' else f' (against {theirs})'}: " + "; ".join(parts))
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def write_csv(path, data):
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "model", "seeds"] + list(METRICS) + [f"published_{m}" for m in METRICS]
                        + ["published_source"])
        for dataset, (summary, _, _) in data.items():
            published = published_figures(dataset)
            for row in list(summary) + [r for r in published if r not in summary]:
                ours = summary.get(row)
                pub = published.get(row, {})
                writer.writerow([dataset, row, ours[METRICS[0]][2] if ours else 0]
                                + [f"{ours[m][0]:.4f}" if ours and m in ours else "" for m in METRICS]
                                + [pub.get(m, "") for m in METRICS] + [pub.get("source", "")])


def write_plot(path, data, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = [d for d in data if data[d][0]]
    if not datasets:
        return
    shown = [r for r in rows if any(r in data[d][0] for d in datasets)][::-1]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 1.0 + 0.32 * len(shown)), sharey=True)
    axes = np.atleast_1d(axes)
    y = np.arange(len(shown))
    for ax, d in zip(axes, datasets):
        summary, published = data[d][0], published_figures(d)
        values = [summary[r]["hit@10"][0] if r in summary else np.nan for r in shown]
        colours = ["#1b7837" if r == "SAERec" else "#7b3294" for r in shown]
        ax.barh(y, values, color=colours, height=0.65)
        reference = reference_of(summary, preferred=REFERENCES)
        if reference:
            ax.axvline(summary[reference]["hit@10"][0], color="black", lw=0.8, ls="--")
        marks = [(i, published[r]["hit@10"]) for i, r in enumerate(shown) if r in published]
        if marks:
            ax.scatter([m[1] for m in marks], [m[0] for m in marks], marker="D", s=18, color="black", zorder=3)
        ax.set_title(SHORT.get(d, d), fontsize=9)
        ax.set_xlabel("test HR@10")
        ax.grid(axis="x", lw=0.3)
    axes[0].set_yticks(y, shown, fontsize=8)
    fig.suptitle("ours (bars; dashed: SASRec-CE) and the published figures (diamonds; the SAERec paper's on its "
                 "authors' protocol)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m recbole_saerec.experiments.benchmark.paper_table",
                                description=__doc__.split("\n")[0])
    p.add_argument("--tables", default=DEFAULT_TABLES, help="dataset=folder pairs, comma-separated")
    p.add_argument("--rows", default=DEFAULT_ROWS, help="benchmark rows (variants), comma-separated, in order")
    p.add_argument("--out", default="docs/results/paper-table")
    args = p.parse_args(argv)
    tables = [tuple(part.split("=", 1)) for part in args.tables.split(",") if part.strip()]
    rows = [r for r in args.rows.split(",") if r.strip()]
    data = collect(tables, rows)
    os.makedirs(args.out, exist_ok=True)
    write_markdown(os.path.join(args.out, "table.md"), data, rows)
    write_csv(os.path.join(args.out, "table.csv"), data)
    write_plot(os.path.join(args.out, "table.png"), data, rows)
    print(open(os.path.join(args.out, "table.md"), encoding="utf-8").read())


if __name__ == "__main__":
    main()
