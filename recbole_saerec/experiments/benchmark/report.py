"""The table a benchmark folder shows: results.md / results.csv / summary.csv / results.png, and the
progress of runs still in flight (read from their resume states)."""
import csv
import json
import os
import platform
import time

import numpy as np

from recbole_saerec.experiments.benchmark.records import (RUNS, epoch_seconds, fmt_duration, load_records, log,
                                                          run_seconds, write_json_atomic)
from recbole_saerec.experiments.benchmark.stats import against_references, metric_keys, significance, summarize
from recbole_saerec.fileio import atomic_path
from recbole_saerec.settings import PER_USER_FUSIONS  # a section of weights every user shares would say nothing

# A run in flight says so in its folder from its first second (its resume state exists only after its
# first epoch): the runner writes this file there before training and removes it once the run is recorded.
IN_FLIGHT = "in_flight.json"

METRIC_LABELS = {"hit": "HR", "ndcg": "NDCG", "recall": "Recall", "mrr": "MRR", "precision": "P"}


def label(metric):
    kind, k = metric.split("@")
    return f"{METRIC_LABELS.get(kind, kind)}@{k}"


def fmt_p(p, spec=None):
    """A p-value in `spec` (default: 1.2e-05 below 1e-3, else 0.123), or n/a where it is undefined
    (no per-user metrics, or every paired difference equal: no spread to test against)."""
    if p is None or not np.isfinite(p):
        return "n/a"
    return format(p, spec) if spec else (f"{p:.1e}" if p < 1e-3 else f"{p:.3f}")


PAIRED_COLUMNS = ["rel. gain", "seed-paired p (n)", "user mean diff [95% CI]", "user t-test p", "Wilcoxon p"]


def paired_section(title, intro, lead_columns, rows, lead):
    """A results.md section of paired comparisons (stats.compare's keys): `lead(row)` gives the
    leading cells (names, the two means), then the cells every paired comparison shows."""
    columns = lead_columns + PAIRED_COLUMNS
    lines = ["", f"## {title}", "", intro, "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for row in rows:
        lo, hi = row["user_ci95"]
        cells = lead(row) + [f"{100 * row['rel_gain']:+.1f}%", f"{fmt_p(row['seed_p'])} ({row['seed_n']})",
                             f"{row['user_mean_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]", fmt_p(row["user_p_t"]),
                             fmt_p(row["user_p_wilcoxon"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def masking_note(records):
    """Which ranking the table's runs used: with or without the user's input-sequence items."""
    masked = {bool(r.get("mask_history")) for r in records}
    if masked == {True}:
        return "the items of each user's input sequence masked before ranking (`mask_history: True`)"
    if masked == {False}:
        return "seen items NOT masked (`mask_history: False`, RecBole's default)"
    return "MIXED ranking protocols: some runs masked seen items, some did not (see results.csv)"


def protocol_note(records):
    """The warning a table opens with when some of its rows ran the authors' leaky protocol: there,
    the 'valid' split is the test item, so 'valid-selected' means selected on the reported item."""
    leaky = sorted({str(r.get("variant")) for r in records
                    if (r.get("config") or {}).get("protocol") == "authors_leaky"})
    if not leaky:
        return ""
    return (f"**Protocol authors_leaky for {', '.join(leaky)}: trained on the validation item, the epoch "
            "selected on the TEST item (their 'valid' below is the test item). A comparison with a paper "
            "that measured this way, never a result of the method (docs/data.md).**")


def at_cap(record):
    """True when a run stopped at its epochs cap (not converged): ``stopped_by``, or for a record
    written before that key, its epochs against the cap."""
    if record.get("stopped_by") is not None:
        return record["stopped_by"] == "cap"
    run, cap = record.get("epochs_run"), record.get("epochs_cap")
    return run is not None and cap is not None and run >= cap


def epochs_cap(records):
    """'at most N epochs' (several caps: 'at most 1/200 epochs')."""
    caps = sorted({r.get("epochs_cap") for r in records if r.get("epochs_cap") is not None})
    return f"at most {'/'.join(str(c) for c in caps) or '?'} epoch{'' if caps == [1] else 's'}"


def budget(records):
    """'at most N epochs per run, early stopping after P epochs without improvement of valid M'."""
    steps = sorted({r.get("stopping_step") for r in records if r.get("stopping_step") is not None})
    return (f"{epochs_cap(records)} per run, early stopping after {'/'.join(str(p) for p in steps) or '?'} "
            f"epochs without improvement of valid {valid_metrics(records)}")


def valid_metrics(records):
    """The selection metric: the most common one, and the variants that select on another."""
    by_metric = {}
    for r in records:
        if r.get("valid_metric"):
            by_metric.setdefault(r["valid_metric"], set()).add(r.get("variant"))
    if not by_metric:
        return "VALID metric"
    main = max(by_metric, key=lambda m: len(by_metric[m]))
    others = [f"{m} for {', '.join(sorted(map(str, v)))}" for m, v in sorted(by_metric.items()) if m != main]
    return main + (f" ({'; '.join(others)})" if others else "")


def headline(records):
    """The first thing a report says: the budget, and whether the runs converged under it."""
    n, capped = len(records), sum(at_cap(r) for r in records)
    text = f"Budget: {budget(records)}. "
    if capped == n:
        text += (f"NOT CONVERGED: all {n} runs stopped at the epochs cap, so the numbers compare the models at "
                 "this budget, not at convergence; no target is checked.")
    elif capped:
        text += (f"{capped} of {n} runs stopped at the epochs cap (rows marked 'not converged'); the others "
                 "stopped early on VALID.")
    else:
        text += f"All {n} runs stopped early on VALID (converged under this budget)."
    return text


def at_budget_note(records):
    """The sentence a comparison section opens with when runs stopped at the epochs cap."""
    if not any(at_cap(r) for r in records):
        return ""
    return "At the budget above, not at convergence (runs stopped at the epochs cap): p-values compare these models. "


def reference_of(summary, preferred=("SASRec-CE", "SASRec-CE-lr5e-4", "SASRec")):
    """The row SAERec is set against for the paper's target: SASRec-CE (the same loss and protocol;
    searched, else at Beauty's searched point) when the table has it, else RecBole's SASRec, else None."""
    return next((name for name in preferred if name in summary), None)


def target_lines(records, summary, metrics, ours="SAERec"):
    """SAERec against its reference, checked against the paper's +10% target only when both converged."""
    ref = reference_of(summary)
    if ours not in summary or ref is None:
        return []
    what = "RecBole's SASRec" if ref == "SASRec" else ref
    lines = ["", f"## SAERec relative to {what} (target: >= +10% on HR@10 and NDCG@10)", ""]
    capped = sorted({r["variant"] for r in records if r["variant"] in (ours, ref) and at_cap(r)})
    if capped:
        return lines + [f"Not compared with the target: {' and '.join(capped)} stopped at the epochs cap "
                        f"(not converged); a gain within {epochs_cap(records)} per run says nothing about "
                        "the converged models. Raise --budget_epochs until the runs stop early."]
    for m in metrics:
        a, b = summary[ours][m][0], summary[ref][m][0]
        lines.append(f"- {label(m)}: {a:.4f} vs {b:.4f} ({100 * (a - b) / b:+.1f}%)" if b else f"- {label(m)}: n/a")
    return lines


def epochs_cell(recs):
    """'3/5/4 of 200' (1-based epochs run per seed, and the cap), marked when any run stopped at the cap."""
    runs = "/".join(str(r.get("epochs_run") if r.get("epochs_run") is not None else "?") for r in recs)
    caps = sorted({str(r.get("epochs_cap")) for r in recs})
    capped = sum(at_cap(r) for r in recs)
    return f"{runs} of {'/'.join(caps)}" + (
        "" if not capped else " **not converged**" if capped == len(recs) else f" **{capped} not converged**")


def markdown(records, sig_rows, dataset, variants_meta=None, against_rows=()):
    summary = summarize(records)
    metrics = metric_keys(records)
    best = {m: max(summary, key=lambda v: summary[v][m][0]) for m in metrics}
    lines = [f"# Benchmark: {dataset}", "", f"**{headline(records)}**", ""]
    leaky = protocol_note(records)
    if leaky:
        lines += [leaky, ""]
    lines += ["Test metrics of the valid-selected checkpoint, mean ± sample std (ddof=1) over seeds; "
              f"best mean per metric in bold. Full ranking over all items, leave-one-out by time; "
              f"{masking_note(records)}. Epochs count from 1.", "",
              "| model | role | " + " | ".join(label(m) for m in metrics)
              + " | seeds | epochs run (cap) | best epoch | min/run |",
              "|---|---|" + "---|" * len(metrics) + "---|---|---|---|"]
    for variant, cells in summary.items():
        recs = [r for r in records if r["variant"] == variant]
        row = []
        for m in metrics:
            mean, std, n = cells[m]
            text = f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"
            row.append(f"**{text}**" if best[m] == variant else text)
        # records keep the 0-based epoch index RecBole's trainer uses; people read the first epoch as 1
        epochs = "/".join("?" if r.get("best_epoch") is None else str(r["best_epoch"] + 1) for r in recs)
        minutes = np.mean([run_seconds(r) for r in recs]) / 60
        lines.append(f"| {variant} | {recs[0].get('role', '')} | " + " | ".join(row)
                     + f" | {len(recs)} | {epochs_cell(recs)} | {epochs} | {minutes:.1f} |")
    if sig_rows:
        lines += paired_section(
            "Significance: SAERec against the best baseline per metric",
            at_budget_note(records) + "Seed-paired: paired t-test over seeds (weak with 3 seeds). User-paired: each test user's metric "
            "averaged over seeds, paired t-test and Wilcoxon signed-rank over users.",
            ["metric", "best baseline", "SAERec", "baseline"], sig_rows,
            lambda s: [label(s["metric"]), s["best_baseline"], f"{s['ours_mean']:.4f}", f"{s['baseline_mean']:.4f}"])
    if against_rows:
        lines += paired_section(
            "Each change against its reference (what one component adds or costs)",
            at_budget_note(records)
            + "A variant that names a reference (`against` in properties/benchmark/) differs from it in one change. "
            "User-paired: each test user's metric averaged over seeds; paired t-test and Wilcoxon signed-rank "
            "over users.",
            ["variant", "against", "metric", "variant", "reference"], against_rows,
            lambda a: [a["ours"], a["theirs"], label(a["metric"]), f"{a['ours_mean']:.4f}", f"{a['theirs_mean']:.4f}"])
    lines += fusion_lines(records)
    lines += target_lines(records, summary, metrics)
    first = records[0] if records else {}
    lines += ["", "## Setup", "",
              f"- epochs cap {first.get('epochs_cap')}, early stopping after {first.get('stopping_step')} "
              f"epochs without improvement of valid {valid_metrics(records)}; protocol "
              f"{(first.get('config') or {}).get('protocol', 'clean')}; MAX_ITEM_LIST_LENGTH "
              f"{(first.get('config') or {}).get('MAX_ITEM_LIST_LENGTH')}; seeds "
              f"{sorted({r['seed'] for r in records})}",
              f"- machine: {json.dumps(first.get('machine'))}", f"- versions: {json.dumps(first.get('versions'))}",
              "- commits the runs ran at: " + ", ".join(sorted({str((r.get('versions') or {}).get('git_commit'))
                                                               for r in records}))]
    if variants_meta:
        lines += ["", "## Variants", ""]
        for name, meta in variants_meta.items():
            if name in summary:
                chosen = meta.get("selected")
                lines.append(f"- **{name}** ({meta['model']}): {meta.get('description', '')}; "
                             f"overrides `{json.dumps(meta.get('config') or {})}`"
                             + (f"; search selected on valid: `{json.dumps(chosen)}`" if chosen else ""))
    return "\n".join(lines) + "\n"


def write_csvs(out_dir, records, summary):
    metrics = metric_keys(records)
    with atomic_path(os.path.join(out_dir, "results.csv")) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["variant", "model", "role", "seed"] + [f"test_{m}" for m in metrics]
                   + [f"valid_{m}" for m in metrics]
                   + ["best_epoch", "epochs_run", "stopped_by", "mask_history", "seconds", "min_per_epoch"])
        for r in records:
            w.writerow([r["variant"], r["model"], r.get("role"), r["seed"]]
                       + [r["test_result"][m] for m in metrics]
                       + [r["best_valid_result"].get(m) for m in metrics]
                       + [None if r.get("best_epoch") is None else r["best_epoch"] + 1, r.get("epochs_run"), r.get("stopped_by"), r.get("mask_history"),
                          round(run_seconds(r), 1), round(epoch_seconds(r) / 60 / r["epochs_run"], 2)
                          if r.get("epochs_run") else None])
    write_curves(os.path.join(out_dir, "curves.csv"), records)
    with atomic_path(os.path.join(out_dir, "summary.csv")) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["variant", "n_seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")])
        for variant, cells in summary.items():
            w.writerow([variant, cells[metrics[0]][2]] + [x for m in metrics for x in cells[m][:2]])


def write_curves(path, records):
    """Every run's per-epoch history in one long table (variant, seed, epoch from 1, valid score, loss,
    seconds, and SAERec's fusion statistics where recorded): the curves behind best_epoch."""
    keys = []
    for r in records:
        for h in r.get("history") or []:
            keys += [k for k in h if k not in keys and k != "epoch"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["variant", "seed", "epoch"] + keys)
        for r in records:
            for h in r.get("history") or []:
                w.writerow([r["variant"], r["seed"], h["epoch"] + 1] + [h.get(k, "") for k in keys])



def fusion_lines(records):
    """results.md: the gate's weights per branch at each fusing run's best epoch and, as the collapse
    check, over its last 10 epochs (mean weights, entropy 1 = uniform / 0 = one branch, users > 0.9)."""
    rows = []
    for r in records:
        if (r.get("config") or {}).get("fusion") not in PER_USER_FUSIONS:
            continue
        hist = [h for h in r.get("history") or [] if "fusion_entropy" in h]
        branches = [k for k in (hist[0] if hist else {}) if k.startswith("fusion_")
                    and k not in ("fusion_entropy", "fusion_collapsed_share")]
        if len(branches) < 2:
            continue
        best = next((h for h in hist if h["epoch"] == r.get("best_epoch")), hist[-1])
        last = hist[-10:]
        mean = {k: float(np.mean([h[k] for h in last])) for k in branches + ["fusion_entropy", "fusion_collapsed_share"]}
        fmt = lambda h: (" / ".join(f"{k[7:]} {h[k]:.2f}" for k in branches)  # noqa: E731
                         + f" | {h['fusion_entropy']:.2f} | {h['fusion_collapsed_share']:.0%}")
        rows.append(f"| {r['run_id']} | {best['epoch'] + 1} | {fmt(best)} | {fmt(mean)} |")
    if not rows:
        return []
    return ["", "## Fusion: what the gate does (VALID users)", "",
            "| run | best epoch | weights at best epoch | entropy | users > 0.9 on one branch "
            "| mean of the last 10 epochs | entropy | users > 0.9 |", "|---|---|---|---|---|---|---|---|"] + rows


PUBLISHED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))),
                         "properties", "published", "figures.yaml")
ROLE_COLOURS = {"ours": "#1b7837", "ablation": "#a6dba0", "baseline": "#7b3294"}


def published_figures(dataset):
    """{row name: {metric: value, 'source': text}} of the published figures for `dataset` (figures.yaml)."""
    import yaml

    with open(PUBLISHED, encoding="utf-8") as f:
        table = yaml.safe_load(f)
    sources = table.get("sources", {})
    return {name: dict(entry, source=sources.get(entry.get("source"), entry.get("source")))
            for name, entry in (table.get(dataset) or {}).items()}


def plot(path, summary, dataset, title_note="", roles=None, metrics=("hit@10", "ndcg@10")):
    """One panel per metric, one horizontal bar per row sorted by the first metric; the spread over
    seeds where there are several; SASRec-CE (else SASRec) as a reference line; the published
    figure of a row, where there is one (properties/published/figures.yaml), as a black diamond."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if m in next(iter(summary.values()))]
    order = sorted(summary, key=lambda v: summary[v][metrics[0]][0])
    published = published_figures(dataset)
    reference = reference_of(summary)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 1.2 + 0.24 * len(order)), sharey=True)
    axes = np.atleast_1d(axes)
    y = np.arange(len(order))
    for ax, metric in zip(axes, metrics):
        means = [summary[v][metric][0] for v in order]
        # one seed has no spread: no error bar (a zero-width one would claim a certainty the table lacks)
        errs = [summary[v][metric][1] if summary[v][metric][2] > 1 else float("nan") for v in order]
        colours = [ROLE_COLOURS.get((roles or {}).get(v), "#999999") for v in order]
        ax.barh(y, means, xerr=errs, color=colours, height=0.7, capsize=2, error_kw={"lw": 0.8})
        if reference:
            ax.axvline(summary[reference][metric][0], color="black", lw=0.8, ls="--")
        marks = [(i, published[v][metric]) for i, v in enumerate(order) if metric in published.get(v, {})]
        if marks:
            ax.scatter([m[1] for m in marks], [m[0] for m in marks], marker="D", s=18, color="black", zorder=3)
        ax.set_xlabel(f"test {label(metric)}")
        lo = min(means + [m[1] for m in marks])
        ax.set_xlim(left=max(0.0, lo * 0.85))
        ax.grid(axis="x", lw=0.3)
    axes[0].set_yticks(y, [v if summary[v][metrics[0]][2] > 1 else f"{v} (1 seed)" for v in order], fontsize=7)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=r) for r, c in ROLE_COLOURS.items() if r in set((roles or {}).values())]
    if reference:
        handles.append(Line2D([], [], color="black", ls="--", lw=0.8, label=reference))
    if any(v in published for v in order):
        handles.append(Line2D([], [], marker="D", color="black", ls="", label="published figure"))
    axes[-1].legend(handles=handles, fontsize=7, loc="lower right")
    fig.suptitle(f"{dataset}: full ranking, seen items masked, leave-one-out; bars = mean over seeds (± std)\n"
                 f"{title_note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def shown_variants(out_dir):
    """The variants the folder's table shows now (results.csv), in its order."""
    path = os.path.join(out_dir, "results.csv")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(dict.fromkeys(row["variant"] for row in csv.DictReader(f)))


def report_names(out_dir, names):
    """What a benchmark call that ran `names` reports: every variant the table already showed, in its
    order, then the new ones. Two calls sharing one folder (two CPU slots) then keep each other's rows
    instead of each rewriting the table with its own models only."""
    shown = shown_variants(out_dir)
    return shown + [n for n in names if n not in shown]


def report(out_dir, dataset, variant_names=None, registry=None, ours="SAERec"):
    """(Re)write results.csv, summary.csv, results.md and results.png from the per-run JSONs."""
    runs_dir = os.path.join(out_dir, RUNS)
    records = load_records(runs_dir, variant_names)
    if not records:
        log("no finished runs yet: nothing to report")
        return None
    summary = summarize(records)
    sig = significance(runs_dir, records, ours=ours)
    write_csvs(out_dir, records, summary)
    write_json_atomic(os.path.join(out_dir, "significance.json"), sig)
    meta = {v: dict((registry or {}).get(v) or {"model": v, "description": "RecBole/plugin defaults", "config": {}})
            for v in summary}
    against = against_references(runs_dir, records, {v: m["against"] for v, m in meta.items() if m.get("against")})
    write_json_atomic(os.path.join(out_dir, "against.json"), against)
    for v in meta:
        search_file = os.path.join(runs_dir, f"{v}.search.json")
        if os.path.isfile(search_file):
            with open(search_file, encoding="utf-8") as f:
                meta[v]["selected"] = json.load(f)["selected_config"]
    with atomic_path(os.path.join(out_dir, "results.md")) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(markdown(records, sig, dataset, meta, against_rows=against))
    capped = sum(at_cap(r) for r in records)
    plot(os.path.join(out_dir, "results.png"), summary, dataset,
         f"{epochs_cap(records)} per run"
         + (f"; NOT CONVERGED ({capped} of {len(records)} runs at the cap)" if capped else ""),
         roles={r["variant"]: r.get("role") for r in records})
    return {"records": records, "summary": summary, "significance": sig, "against": against}


def progress(work_dir):
    """Runs still in flight under ``work_dir``: their valid curve so far, read from the resume states
    (``<work_dir>/<run_id>/<Model>-resume.pth``). VALID only: a run's test number exists once it ends."""
    import glob

    from recbole_saerec.trainer import RESUME_SUFFIX, load_checkpoint

    rows = []
    states = sorted(glob.glob(os.path.join(work_dir, "*", f"*{RESUME_SUFFIX}")))
    with_state = {os.path.dirname(p) for p in states}
    for marker in sorted(glob.glob(os.path.join(work_dir, "*", IN_FLIGHT))):
        if os.path.dirname(marker) not in with_state:  # in its first epoch: no resume state yet
            rows.append(first_epoch_row(marker))
    for path in states:
        state = load_checkpoint(path)
        history = state.get("history") or []
        # "is not None": a tiny epoch can take 0.0 s once rounded, and is still a timed epoch
        recent = sorted(h["seconds"] for h in history[-5:] if h.get("seconds") is not None)
        patience = (state.get("config") or {}).get("stopping_step")
        rows.append({"run_id": os.path.basename(os.path.dirname(path)), "epochs_done": state["epoch"] + 1,
                     "best_valid_score": state["best_valid_score"], "epochs_without_improvement": state["cur_step"],
                     "finished": state["finished"], "valid_curve": [h["valid_score"] for h in history],
                     "last_epoch": history[-1] if history else None,
                     # median of the last 5 epochs: one slow epoch (a paused run) does not skew it
                     "seconds_per_epoch": recent[len(recent) // 2] if recent else None,
                     # epochs left if VALID does not improve again: the earliest the run can end
                     "epochs_to_patience": None if patience is None else max(int(patience) - state["cur_step"], 0),
                     # a killed run leaves its resume state behind: how long since its last epoch was saved
                     "saved_seconds_ago": max(time.time() - os.path.getmtime(path), 0.0),
                     "process": process_state(os.path.join(os.path.dirname(path), IN_FLIGHT))})
    return rows


def process_state(marker):
    """'running' / 'gone' for the process a run's in-flight marker names (on this host), else None."""
    if not os.path.isfile(marker):
        return None
    try:
        with open(marker, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    if info.get("host") != platform.node():
        return None  # another machine's run (a shared folder): its process cannot be asked
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return "gone"
    except (PermissionError, KeyError, ValueError, TypeError):
        return "running" if isinstance(info.get("pid"), int) else None
    try:  # a pid reused after a restart: that process started after the marker was written
        if process_start(int(info["pid"])) > float(info["started_unix"]) + 60:
            return "gone"
    except (OSError, KeyError, ValueError, TypeError, IndexError):
        pass  # no /proc (not Linux) or an old marker: trust the pid
    return "running"


def process_start(pid):
    """When a process started (unix seconds), from Linux's /proc: its start in clock ticks after boot."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
    with open("/proc/stat", encoding="utf-8") as f:
        boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def first_epoch_row(marker):
    """A run that has not finished its first epoch yet, from its in-flight marker."""
    with open(marker, encoding="utf-8") as f:
        info = json.load(f)
    return {"run_id": info.get("run_id") or os.path.basename(os.path.dirname(marker)), "epochs_done": 0,
            "epochs_cap": info.get("epochs_cap"), "best_valid_score": None, "epochs_without_improvement": 0,
            "finished": False, "valid_curve": [], "last_epoch": None, "seconds_per_epoch": None,
            "epochs_to_patience": None, "started_seconds_ago": max(time.time() - float(info.get("started_unix") or
                                                                                     time.time()), 0.0),
            "saved_seconds_ago": None, "process": process_state(marker)}


def is_paused(row):
    """The process that trained it is gone: its marker's process is dead, or (another host, an older
    run) no epoch was saved for three epochs' time and a minute."""
    if row.get("process") is not None:
        return not row["finished"] and row["process"] == "gone"
    spe = row["seconds_per_epoch"]
    return not row["finished"] and spe is not None and row["saved_seconds_ago"] > 3 * spe + 60


def format_progress(row):
    """Two lines per run in flight: where it is, how fast, the earliest end, and its VALID curve."""
    if row["best_valid_score"] is None:  # no epoch finished yet
        line = (f"{row['run_id']}: epoch 1 of {row.get('epochs_cap') or '?'} in progress, started "
                f"{fmt_duration(row['started_seconds_ago'])} ago (no valid score until it ends)")
        if row.get("process") == "gone":
            line += "; PAUSED: its process is gone (rerun the benchmark command to start it again)"
        return line
    line = (f"{row['run_id']}: {row['epochs_done']} epochs, best valid {row['best_valid_score']:.4f}, "
            f"{row['epochs_without_improvement']} without improvement")
    if row["finished"]:
        line += " (finished)"
    elif is_paused(row):
        line += (f"; PAUSED: last epoch saved {row['saved_seconds_ago'] / 60:.0f} min ago "
                 f"(rerun the benchmark command to resume it)")
    elif row["seconds_per_epoch"]:
        line += f"; {row['seconds_per_epoch']:.0f} s/epoch"
        if row["epochs_to_patience"] is not None:
            left = row["epochs_to_patience"]
            line += f"; ends in >= {left} epochs (~{left * row['seconds_per_epoch'] / 60:.0f} min) if VALID stalls"
    last = row["last_epoch"] or {}
    fusion = [k for k in last if k.startswith("fusion_") and k not in ("fusion_entropy", "fusion_collapsed_share")]
    if len(fusion) > 1:  # one branch (SASRec+IntentFeat): nothing is fused
        line += ("\n    fusion (last epoch): " + " ".join(f"{k[7:]} {last[k]:.2f}" for k in fusion)
                 + f", entropy {last.get('fusion_entropy', float('nan')):.2f}, "
                   f"users > 0.9 on one branch {last.get('fusion_collapsed_share', float('nan')):.0%}")
    return line + "\n    valid curve: " + " ".join(f"{v:.4f}" for v in row["valid_curve"])
