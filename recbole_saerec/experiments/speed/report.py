"""The results: one row per model (medians, ratios vs SASRec, memory), the printed table, speed.csv, speed.json."""
import csv
import json
import os
import resource

import torch

from recbole_saerec.experiments.speed.measure import median
from recbole_saerec.fileio import atomic_path

CONFIG_KEYS = ["hidden_size", "inner_size", "n_layers", "n_heads", "MAX_ITEM_LIST_LENGTH", "train_batch_size",
               "eval_batch_size", "hidden_dropout_prob", "attn_dropout_prob", "loss_type", "autocast_bf16", "compile",
               "pack_tokens", "pack_attention", "fused_ce",
               "intents_retrieved", "intent_layers"]
TABLE_COLUMNS = ["model", "intents", "step_ms_median", "step_ratio_vs_ref", "step_cpu_ms_median",
                 "step_cpu_ratio_vs_ref", "epoch_setup_s", "epoch_cpu_s_extrapolated", "epoch_s_extrapolated",
                 "full_epoch_s", "eval_s_median", "eval_ratio_vs_ref", "train_peak_mb", "eval_peak_mb"]


def _flag(config, key):
    return bool(config[key]) if key in config else False


def _rounded(xs, fn, digits):
    return round(fn(xs), digits) if xs else ""


def result_row(args, name, rec, config, model_class, params, data, intent_source, loader_s_per_step):
    """One table row: medians over every timed step / evaluation of this model, plus memory."""
    step, steps_per_epoch = median(rec["step_s"]), data["steps_per_epoch"]
    setup = rec.get("setup_s", 0.0)  # once per epoch (the clustering of ICLRec / ICSRec)
    return {
        "dataset": args.dataset, "model": name, "device": str(data["device"]),
        "intents": (intent_source if model_class == "SAERec" else "-"),
        "bf16": _flag(config, "autocast_bf16"), "compile": _flag(config, "compile"), "params": params,
        "step_ms_median": round(step * 1e3, 1),
        "step_cpu_ms_median": round(median(rec["step_cpu_s"]) * 1e3, 1),
        "step_ms_min": round(min(rec["step_s"]) * 1e3, 1),
        "step_ms_max": round(max(rec["step_s"]) * 1e3, 1),
        "steps_timed": len(rec["step_s"]), "steps_per_epoch": steps_per_epoch,
        "epoch_setup_s": round(setup, 1) if "setup_s" in rec else "",
        "epoch_s_extrapolated": round((step + loader_s_per_step) * steps_per_epoch + setup, 1),
        "epoch_cpu_s_extrapolated": round((median(rec["step_cpu_s"]) + loader_s_per_step) * steps_per_epoch + setup, 1),
        "full_epoch_s": round(rec["full_epoch_s"], 1) if "full_epoch_s" in rec else "",
        "eval_s_median": _rounded(rec["eval_s"], median, 2),
        "eval_s_min": _rounded(rec["eval_s"], min, 2),
        "eval_cpu_s_median": _rounded(rec["eval_cpu_s"], median, 2),
        "eval_users": data["eval_users"],
        "train_peak_mb": round(rec["mem_train"].get("peak_mb", 0)),
        "train_delta_mb": round(rec["mem_train"].get("delta_mb", 0)),
        "eval_peak_mb": round(rec["mem_eval"].get("peak_mb", 0)),
        "eval_delta_mb": round(rec["mem_eval"].get("delta_mb", 0)),
        "warmup_s": round(rec["warmup_s"], 1),
    }


def per_round_ratio(mine, theirs, steps, rounds):
    """Median over rounds of (my median step / SASRec's median step) in that round."""
    return [median(mine[i * steps:(i + 1) * steps]) / median(theirs[i * steps:(i + 1) * steps]) for i in range(rounds)]


def add_ratios(rows, records, reference, steps, rounds):
    """Every row but the reference gets step / CPU-step / eval time ratios against the reference
    model (``--reference``), round by round (each round ran every model back to back)."""
    if reference not in records:
        return
    ref = records[reference]
    for row in rows:
        row["reference"] = reference
        if row["model"] == reference:
            continue
        rec = records[row["model"]]
        round_ratios = per_round_ratio(rec["step_s"], ref["step_s"], steps, rounds)
        eval_ratios = [e / s for e, s in zip(rec["eval_s"], ref["eval_s"])]
        row["step_ratio_vs_ref"] = round(median(round_ratios), 3)
        row["step_ratio_rounds"] = " ".join(f"{x:.2f}" for x in round_ratios)
        row["step_cpu_ratio_vs_ref"] = round(median(
            per_round_ratio(rec["step_cpu_s"], ref["step_cpu_s"], steps, rounds)), 3)
        row["eval_ratio_vs_ref"] = round(median(eval_ratios), 3) if eval_ratios else ""


def print_table(args, rows, data, intent_source, intent_info):
    label = f"intents={intent_source}" if intent_source else ""
    print()
    print(f"autograd anomaly detection {'ON' if torch.is_anomaly_enabled() else 'off'} for both models")
    print(f"{args.dataset}: {data['steps_per_epoch']} steps/epoch of {args.batch}, {data['eval_users']} eval users, "
          f"device {data['device']}, {os.cpu_count()} CPUs, torch {torch.__version__} {label}")
    print(f"epoch_s_extrapolated = (median step + loader time per batch) x steps per epoch + the epoch's set-up "
          f"(wall; *_cpu_*: process CPU time, robust on a shared machine); ratios against {rows[0].get('reference', '-')}")
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in TABLE_COLUMNS]
    print("  ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, widths)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(TABLE_COLUMNS, widths)))
    if intent_info:
        print(f"intent construction: {json.dumps(intent_info, default=str)}")


def write_csv(path, args, rows, device, intent_info):
    """speed.csv: one row per model, then one per intent-build stage (seconds in epoch_s_extrapolated)."""
    all_cols = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=all_cols)
        writer.writeheader()
        writer.writerows(rows)
        if intent_info and "stages_s" in intent_info:
            stages = intent_info.get("build_reported_timings") or dict(intent_info["stages_s"],
                                                                      total_s=intent_info["total_s"])
            for stage, secs in stages.items():
                writer.writerow({"dataset": args.dataset, "model": f"intent_build:{stage}",
                                 "device": str(device), "intents": "built", "step_ms_median": "",
                                 "epoch_s_extrapolated": round(secs, 1)})


def json_report(args, models, configs, records, rows, data, batch_stats, intents, anomaly_on_import):
    """speed.json: machine, versions, seed, dataset, config per model, table rows and raw timings."""
    from recbole_saerec.environment import run_environment

    env = run_environment(device=data["device"])
    dataset, train_data = data["dataset"], data["train"]
    loader_s_per_step, mean_len, batch_max = batch_stats
    return {
        "machine": {**env["machine"], **env["versions"]}, "seed": args.seed,
        "dataset": {"name": args.dataset, "users": dataset.user_num - 1, "items": dataset.item_num - 1,
                    "train_samples": len(train_data.dataset), "steps_per_epoch": data["steps_per_epoch"],
                    "eval_users": data["eval_users"], "load_s": data["load_s"],
                    "timed_batches_mean_len": mean_len, "timed_batches_max_len": batch_max},
        "loader_s_per_step": loader_s_per_step, "anomaly_detection": torch.is_anomaly_enabled(),
        "anomaly_detection_after_recbole_import": anomaly_on_import, "intents": intents,
        "config": {name: {k: (configs[name][k] if k in configs[name] else None) for k in CONFIG_KEYS}
                   for name in models},
        "rows": rows,
        "raw": {name: {"step_s": records[name]["step_s"], "eval_s": records[name]["eval_s"],
                       "step_cpu_s": records[name]["step_cpu_s"], "eval_cpu_s": records[name]["eval_cpu_s"],
                       "eval_result": records[name].get("eval_result")} for name in models},
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
