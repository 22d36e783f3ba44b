"""What a sweep leaves behind: the results table (CSV + Markdown), best.yaml, the best trial's TEST metrics, a plot."""
import json
import math
import os
import platform
import shutil
import tempfile

import yaml

from recbole_saerec.experiments.tune.configs import resolved_config, trial_params
from recbole_saerec.experiments.tune.trial import evaluate_best

NODE_ID_CHARS = 8  # Ray node ids are 56 hex digits; the tables show the first 8


def _statuses(exp_path):
    from ray.tune import ExperimentAnalysis

    try:
        return {t.trial_id: t.status for t in ExperimentAnalysis(exp_path).trials}
    except Exception:  # noqa: BLE001 -- statuses are a nicety; a missing state file must not lose the table
        return {}


def results_rows(setup, grid, exp_path):
    """One row per trial: params, best valid metric, epochs run, stopped early?"""
    statuses = _statuses(exp_path)
    metric = setup["metric"]
    rows = []
    for result in grid:
        df = result.metrics_dataframe
        values = trial_params(setup, result.config)
        params = {k: values.get(k) for k in setup["swept"]}
        last = result.metrics or {}
        trial_id = last.get("trial_id") or os.path.basename(result.path)  # no report: name the directory
        epochs = int(df["epoch"].max()) if df is not None and "epoch" in df else 0
        best = float(df[metric].max()) if df is not None and metric in df else float("nan")
        status = statuses.get(trial_id, "ERROR" if result.error else "TERMINATED")
        if result.error:
            stopped = "error"
        elif status != "TERMINATED":
            stopped = "unfinished"
        elif last.get("patience_stop"):
            stopped = "patience"
        elif epochs < setup["max_epochs"]:
            stopped = "asha"
        else:
            stopped = "no"
        # The metric at the first ASHA rung, which every trial that ran reached: the like-for-like
        # comparison (a trial stopped there never had the chance to reach a later "best").
        at_rung = df.loc[df["epoch"] == setup["grace_period"], metric] if epochs else []
        # every node the trial reported from, in order (a retried trial may move to another node)
        nodes = _in_order(df["node_id"]) if epochs and "node_id" in df else []
        gpus = _in_order(df["cuda_visible_devices"].fillna("")) if epochs and "cuda_visible_devices" in df else []
        rows.append({"trial_id": trial_id, **params, f"best_{metric}": best,
                     rung_column(setup): float(at_rung.iloc[0]) if len(at_rung) else float("nan"),
                     "best_epoch": int(df.loc[df[metric].idxmax(), "epoch"]) if epochs else 0,
                     "epochs_run": epochs, "stopped_early": stopped, "status": status,
                     "time_s": round(float(last.get("time_total_s", 0.0)), 1),
                     "resumed_from_epoch": int(last.get("resumed_from", 0) or 0),
                     "nodes": ">".join(n[:NODE_ID_CHARS] for n in nodes),
                     "gpus": ">".join(g or "-" for g in gpus), "_result": result})
    # RecBole rounds metrics to 4 decimals, so exact ties happen: the lower trial id wins, every time
    rows.sort(key=lambda r: (-r[f"best_{metric}"] if not math.isnan(r[f"best_{metric}"]) else math.inf,
                             r["trial_id"]))
    return rows


def _in_order(values):
    return [str(v) for v in dict.fromkeys(values)]


def cluster_nodes(rows):
    """The Ray nodes (alive or not) and how many trials reported from each: the node table."""
    import ray

    nodes = []
    for n in ray.nodes():
        short = n["NodeID"][:NODE_ID_CHARS]
        nodes.append({"node": short, "node_id": n["NodeID"], "name": n.get("NodeName", ""),
                      "address": f"{n.get('NodeManagerAddress', '')}:{n.get('NodeManagerPort', '')}",
                      "head": bool(n.get("Resources", {}).get("node:__internal_head__")),
                      "cpus": n.get("Resources", {}).get("CPU", 0), "gpus": n.get("Resources", {}).get("GPU", 0),
                      "alive": bool(n.get("Alive")),
                      "trials": sum(short in r["nodes"].split(">") for r in rows)})
    return nodes


def rung_column(setup):
    return f"{setup['metric']}_epoch{setup['grace_period']}"


def _fmt(v, metric=False):
    if isinstance(v, float):
        return f"{v:.4f}" if metric else f"{v:g}"
    return str(v)


def write_table(rows, columns, csv_path, md_path, header_lines=(), metric_columns=()):
    """CSV + Markdown of `rows`; `metric_columns` are printed with 4 decimals."""
    import csv

    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([r[c] for c in columns])
    with open(md_path, "w", encoding="utf-8") as f:
        for line in header_lines:
            f.write(line + "\n")
        f.write("| " + " | ".join(columns) + " |\n")
        f.write("|" + "|".join("---" for _ in columns) + "|\n")
        for r in rows:
            f.write("| " + " | ".join(_fmt(r[c], c in metric_columns) for c in columns) + " |\n")


def write_best_yaml(setup, params, path, note):
    cfg = {"model": setup["model"], "dataset": setup["dataset"]}
    cfg.update(resolved_config(setup, params))  # without the trial's own bookkeeping keys
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# Best config of a Ray Tune sweep ({note}).\n"
                f"# Retrain: python run_recbole_saerec.py --model={setup['model']} "
                f"--dataset={setup['dataset']} --config_files={os.path.basename(path)}\n")
        yaml.safe_dump(cfg, f, sort_keys=True, default_flow_style=None)


def plot_params(rows, setup, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = setup["metric"]
    keys = list(setup["swept"])
    every = [r for r in rows if r["epochs_run"] > 0]
    spread = setup.get("seed_spread")
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys or [None]):
        if key is None:
            ax.text(0.5, 0.5, "nothing swept", ha="center")
            continue
        done = _on_axis(every, setup, key)
        kind, _ = setup["swept"][key]
        values = [r[key] for r in done]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if kind in ("uniform", "loguniform") and numeric:
            xs = values
            if kind == "loguniform":
                ax.set_xscale("log")
        else:
            cats = sorted(set(values), key=lambda v: (str(type(v)), v))
            pos = {c: i for i, c in enumerate(cats)}
            xs = [pos[v] + 0.08 * ((i % 5) - 2) for i, v in enumerate(values)]
            ax.set_xticks(range(len(cats)))
            ax.set_xticklabels([_fmt(c) for c in cats])
            # mean at the first rung over ALL trials: "best" mixes trials ASHA stopped there with
            # trials that ran longer, so its mean would reflect ASHA's order, not the parameter
            rung = rung_column(setup)
            means = []
            for c in cats:
                vals = [r[rung] for r in done if r[key] == c and not math.isnan(r[rung])]
                means.append(sum(vals) / len(vals) if vals else float("nan"))
            ax.plot(range(len(cats)), means, "-", color="0.6", zorder=1,
                    label=f"mean at epoch {setup['grace_period']} (all trials)")
        early = [r["stopped_early"] not in ("no", "patience") for r in done]
        if spread:  # the seed spread, measured beforehand, around every trial's figure
            ax.errorbar(xs, [r[f"best_{metric}"] for r in done], yerr=spread, fmt="none", ecolor="0.5",
                        capsize=3, zorder=1, label=f"± seed std {spread:.4f}")
        ax.scatter([x for x, e in zip(xs, early) if not e], [r[f"best_{metric}"] for r, e in zip(done, early) if not e],
                   color="C0", label="ran to the end", zorder=2)
        ax.scatter([x for x, e in zip(xs, early) if e], [r[f"best_{metric}"] for r, e in zip(done, early) if e],
                   color="C3", marker="x", label="stopped early", zorder=2)
        ax.set_xlabel(key)
        ax.set_ylabel(f"best valid {metric}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    design = " (one at a time: each panel varies its key, the others at the centre)" \
        if setup.get("design") == "one_at_a_time" else ""
    fig.suptitle(f"{setup['model']} on {setup['dataset']}: {len(every)} trials{design}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _on_axis(rows, setup, key):
    """The trials a panel for `key` shows: all of them, or in a one-at-a-time design those whose
    other keys sit at the centre (the others vary another axis and would blur this one)."""
    if setup.get("design") != "one_at_a_time":
        return rows
    centre = setup["points"][0]
    return [r for r in rows if all(r[k] == centre[k] for k in centre if k != key)]


def _machine():
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, {gpu}"


OUTPUT_FILES = {"csv": "results.csv", "md": "results.md", "yaml": "best.yaml", "test": "best_test.json",
                "png": "metric_vs_params.png"}


def _header(setup, rows, wall_s):
    """The lines above the results table: command, machine, budget, metric."""
    import ray

    metric = setup["metric"]
    return [f"# Ray Tune sweep: {setup['model']} on {setup['dataset']}", "",
            f"- command: `{setup.get('command', '')}`",
            f"- machine: {_machine()}; Ray {ray.__version__}",
            f"- budget: max {setup['max_epochs']} epochs/trial, ASHA grace {setup['grace_period']}, "
            f"reduction factor {setup['reduction_factor']}, {setup['cpus_per_trial']} CPU + "
            f"{setup['gpus_per_trial']} GPU per trial",
            f"- metric: valid {metric} (best epoch per trial; `{rung_column(setup)}`: at epoch "
            f"{setup['grace_period']}, the first ASHA rung, reached by every trial); {len(rows)} trials"
            + (f"; wall time {wall_s / 60:.1f} min (all invocations)" if wall_s else ""), ""]


def _node_lines(nodes):
    return (["Ray nodes (`nodes`/`gpus` columns below: the nodes a trial reported from, and the "
             "CUDA_VISIBLE_DEVICES it ran with, in order):", "",
             "| node | name | address | head | CPUs | GPUs | alive | trials |", "|---|---|---|---|---|---|---|---|"]
            + [f"| {n['node']} | {n['name']} | {n['address']} | {'yes' if n['head'] else 'no'} | {n['cpus']:g} | "
               f"{n['gpus']:g} | {'yes' if n['alive'] else 'no'} | {n['trials']} |" for n in nodes] + [""])


def _test_best(setup, best, params, target):
    """TEST metrics of the best trial's best-epoch weights (a Ray task: the trial's resources). Header lines."""
    import ray

    metric = setup["metric"]
    remote = ray.remote(num_cpus=setup["cpus_per_trial"], num_gpus=setup["gpus_per_trial"])(evaluate_best)
    test = ray.get(remote.remote(setup, best["_result"].config, best["_result"].checkpoint))
    test["trial_id"] = best["trial_id"]
    with open(os.path.join(target, OUTPUT_FILES["test"]), "w", encoding="utf-8") as f:
        json.dump(test, f, indent=1)
    lines = [f"Best: trial {best['trial_id']} {params} -> valid {metric} "
             f"{best[f'best_{metric}']:.4f} (epoch {best['best_epoch']}); TEST of its best-epoch weights: "
             + ", ".join(f"{k} {v:.4f}" for k, v in test["test"].items()), ""]
    return test, lines


def _copy_out(target, out):
    os.makedirs(out, exist_ok=True)
    for name in [*OUTPUT_FILES.values(), "summary.json"]:
        if os.path.isfile(os.path.join(target, name)):
            shutil.copy2(os.path.join(target, name), os.path.join(out, name))


def write_outputs(setup, grid, exp_path, out=None, run_test=True, wall_s=None):
    metric = setup["metric"]
    rows = results_rows(setup, grid, exp_path)
    finished = all(r["status"] in ("TERMINATED", "ERROR") for r in rows)
    local_exp = "://" not in exp_path
    target = exp_path if local_exp else tempfile.mkdtemp(prefix="saerec-tune-")
    columns = ["trial_id", *setup["swept"], f"best_{metric}", rung_column(setup), "best_epoch", "epochs_run",
               "stopped_early", "status", "time_s", "resumed_from_epoch", "nodes", "gpus"]
    nodes = cluster_nodes(rows)
    summary = {"experiment": exp_path, "metric": metric, "finished": finished, "n_trials": len(rows), "wall_s": wall_s,
               "rows": [{c: r[c] for c in columns} for r in rows], "nodes": nodes}
    best = next((r for r in rows if r["epochs_run"] > 0 and r["_result"].checkpoint), None)
    header = _header(setup, rows, wall_s)
    if best is not None:
        params = {k: best[k] for k in setup["swept"]}
        summary["best"] = {"trial_id": best["trial_id"], "params": params, f"valid_{metric}": best[f"best_{metric}"],
                           "best_epoch": best["best_epoch"]}
        write_best_yaml(setup, best["_result"].config, os.path.join(target, OUTPUT_FILES["yaml"]),
                        f"trial {best['trial_id']}, valid {metric} {best[f'best_{metric}']:.4f}")
        plot_params(rows, setup, os.path.join(target, OUTPUT_FILES["png"]))
        if run_test and finished:
            test, lines = _test_best(setup, best, params, target)
            summary["best"]["test"] = test["test"]
            summary["best"]["valid_reloaded"] = test["valid"]
            header += lines
    if not finished:
        header += [f"**Interrupted**: some trials did not finish. Resume with "
                   f"`python -m recbole_saerec.experiments.tune --resume --storage_path={setup.get('storage_path')} "
                   f"--name={setup.get('name')}`", ""]
    header += _node_lines(nodes)
    write_table(rows, columns, os.path.join(target, OUTPUT_FILES["csv"]), os.path.join(target, OUTPUT_FILES["md"]),
                header, metric_columns=(f"best_{metric}", rung_column(setup)))
    with open(os.path.join(target, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, default=str)
    summary["files"] = {k: os.path.join(target, v) for k, v in OUTPUT_FILES.items()
                        if os.path.isfile(os.path.join(target, v))}
    if out:
        _copy_out(target, out)
        summary["out"] = os.path.abspath(out)
    if not local_exp:
        print(f"[tune] outputs written to {target} (the experiment lives at {exp_path})")
    print(f"[tune] {len(rows)} trials; table: {os.path.join(target, OUTPUT_FILES['md'])}")
    if "best" in summary:
        print(f"[tune] best: {summary['best']}")
    return summary
