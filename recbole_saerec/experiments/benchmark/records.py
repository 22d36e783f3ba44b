"""The files a benchmark writes per run: the JSON record, per-user rows, the spec hash that decides resume."""
import datetime
import hashlib
import json
import os

import numpy as np

from recbole_saerec.fileio import atomic_path

RUNS = "runs"


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    return str(obj)


def write_json_atomic(path, obj):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(jsonable(obj), f, indent=1, sort_keys=False)


def file_sha1(path):
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:12]


def spec_hash(model, dataset, config_files, config_dict):
    """What defines a run's result: model, dataset, config files (by content) and overrides."""
    payload = {"model": model, "dataset": dataset,
               "config_files": [file_sha1(p) for p in (config_files or [])],
               "config": {k: v for k, v in sorted(config_dict.items()) if k != "checkpoint_dir"}}
    return hashlib.sha1(json.dumps(jsonable(payload), sort_keys=True).encode()).hexdigest()[:16]


def fmt_duration(seconds):
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def log(msg):
    print(f"[benchmark {datetime.datetime.now():%H:%M:%S}] {msg}", flush=True)


def load_records(runs_dir, variants=None):
    """Main (non-search) run records, optionally limited to `variants` (in that order)."""
    records = []
    for name in sorted(os.listdir(runs_dir)):
        if not name.endswith(".json") or "@cand" in name or name.endswith((".search.json", ".failed.json")):
            continue
        with open(os.path.join(runs_dir, name), encoding="utf-8") as f:
            record = json.load(f)
        if record.get("status") == "ok" and (variants is None or record["variant"] in variants):
            records.append(record)
    if variants is not None:
        order = {v: i for i, v in enumerate(variants)}
        records.sort(key=lambda r: (order[r["variant"]], r["seed"]))
    return records


USERS_FILE = "test_users.txt"


def epoch_seconds(record):
    """Seconds of training and validation over all of a run's epochs (``history`` keeps each epoch's,
    across resumes: they travel in the resume state); the call's time when no epoch was timed."""
    timed = sum(h.get("seconds") or 0 for h in record.get("history") or [])
    return timed or float(record["train_eval_seconds"])


def run_seconds(record):
    """Wall seconds a run took. A resumed run's ``seconds`` times only its last benchmark call, so
    the run's time is the larger of that and its epochs' seconds (a lower bound for a resumed run:
    a cut-off call's loading time is not counted)."""
    return max(float(record["seconds"]), epoch_seconds(record))


def save_per_user(runs_dir, run_id, tokens, per_user):
    """Per-user metrics as float32 arrays; the user tokens once per folder (test_users.txt,
    one per line, in row order) unless this run's users differ, then inside the .npz."""
    order = np.argsort(tokens, kind="stable")
    tokens = np.asarray(tokens)[order]
    digest = hashlib.sha1("\n".join(tokens.tolist()).encode()).hexdigest()[:16]
    users_path = os.path.join(runs_dir, USERS_FILE)
    if not os.path.isfile(users_path):
        with atomic_path(users_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(tokens.tolist()) + "\n")
    with open(users_path, encoding="utf-8") as f:
        shared = f.read().split("\n")[:-1]
    extra = {} if shared == tokens.tolist() else {"users": tokens}
    np.savez_compressed(os.path.join(runs_dir, f"{run_id}.peruser.npz"), users_sha1=np.array(digest),
                        **extra, **{k: np.asarray(v)[order].astype(np.float32) for k, v in per_user.items()})


def load_per_user(runs_dir, run_id):
    """{'users': tokens, '<metric>': values} of one run, or None when it has no per-user file."""
    path = os.path.join(runs_dir, f"{run_id}.peruser.npz")
    if not os.path.isfile(path):
        return None
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    if "users" not in data:
        with open(os.path.join(runs_dir, USERS_FILE), encoding="utf-8") as f:
            data["users"] = np.array(f.read().split("\n")[:-1])
    if "users_sha1" not in data:  # written before the shared users file existed: tokens are inside
        return data
    digest = hashlib.sha1("\n".join(data["users"].tolist()).encode()).hexdigest()[:16]
    if digest != str(data.pop("users_sha1")):
        raise ValueError(f"{path}: its users do not match {USERS_FILE}")
    return data


# Keys a renamed record may differ on from its new variant: where the artefacts live, not what they hold.
RENAME_TOLERATED = ("intent_tag",)


def rename_variant(runs_dir, old, new, variant_config, why, role=None, only_matching=False):
    """Give every finished run of variant ``old`` the variant name ``new`` (files, run_id, variant,
    and ``role`` when given: a renamed default is no longer the table's 'ours').

    For a changed default: a record keeps its numbers under the name of what it measured. Refused
    when the record's resolved config differs from ``variant_config`` (the new variant's overrides)
    on any key but those of RENAME_TOLERATED (noted in the record), or when a run of ``new`` with
    the same seed exists. Each record keeps the list of its renames (``renamed``). Returns the new ids.
    With ``only_matching`` the records that ran with other settings stay where they are, unrenamed
    (a search's winner keeps the name, its runs at the old settings take the new one).
    """
    records = [r for r in load_records(runs_dir) if r["variant"] == old]
    if not records and not only_matching:
        raise ValueError(f"no finished run of '{old}' in {runs_dir}")
    plans = []
    for record in records:
        resolved = record.get("config") or {}
        differ = {k: (resolved.get(k), v) for k, v in (variant_config or {}).items()
                  if jsonable(resolved.get(k)) != jsonable(v)}
        wrong = {k: d for k, d in differ.items() if k not in RENAME_TOLERATED}
        if wrong and only_matching:
            continue
        if wrong:
            raise ValueError(f"{record['run_id']} ran with " + ", ".join(f"{k}={a!r}" for k, (a, _) in wrong.items())
                             + f", not what '{new}' sets (" + ", ".join(f"{k}={b!r}" for k, (_, b) in wrong.items())
                             + "): it did not measure that variant")
        new_id = f"{new}__seed{record['seed']}"
        if os.path.exists(os.path.join(runs_dir, f"{new_id}.json")):
            raise ValueError(f"{new_id} exists in {runs_dir}: rename or remove it first")
        plans.append((record, new_id, differ))
    for record, new_id, differ in plans:
        old_id = record["run_id"]
        note = {"from": old_id, "on": datetime.date.today().isoformat(), "why": why}
        if differ:
            note["tolerated"] = {k: {"ran": a, "variant": b} for k, (a, b) in differ.items()}
        history = record.get("renamed")
        history = [] if history is None else [history] if isinstance(history, dict) else list(history)
        record.update(run_id=new_id, variant=new, renamed=history + [note])
        if role is not None:
            record["role"] = role
        src = os.path.join(runs_dir, f"{old_id}.peruser.npz")
        if os.path.exists(src):
            os.replace(src, os.path.join(runs_dir, f"{new_id}.peruser.npz"))
        write_json_atomic(os.path.join(runs_dir, f"{new_id}.json"), record)
        os.remove(os.path.join(runs_dir, f"{old_id}.json"))
    return [new_id for _, new_id, _ in plans]
