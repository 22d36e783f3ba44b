"""Side-by-side benchmark: many models, one dataset, one protocol, several seeds.

    python -m recbole_saerec.experiments.benchmark --dataset=amazon-beauty \\
        --models=SAERec,SASRec,SASRec-CE,BERT4Rec,GRU4Rec,Caser,BPR --seeds=3 \\
        --out=docs/results/beauty --budget_epochs=20 [--config_files="a.yaml b.yaml"] [--key=value ...]

Every (model, seed) goes through :func:`recbole_saerec.quick_start.run` with the same
config chain (RecBole yaml -> plugin overall.yaml -> model yaml -> dataset yaml ->
``--config_files`` -> variant overrides -> ``--key=value``), so every model sees the
same split (leave-one-out by time), the same full-ranking evaluation and the same
early stopping on the VALID metric. Names are RecBole/plugin models or named variants
from ``properties/benchmark/variants.yaml`` (SAERec ablations, KMeans-Intent, SASRec-CE).

Outputs under ``--out`` (see docs/benchmark.md):

- ``runs/<variant>__seed<seed>.json``: one per finished run (metrics, resolved config,
  seed, versions, wall time, machine), written as soon as the run ends: a second
  invocation skips finished runs (resume) and re-runs those whose spec changed.
- ``runs/<variant>__seed<seed>.peruser.npz``: per-test-user Hit@K / NDCG@K of the best
  (valid-selected) checkpoint, for the per-user paired significance test.
- ``results.csv`` (one row per run), ``summary.csv`` (mean/std per variant),
  ``results.md`` (mean ± std table, best bold, significance), ``results.png``.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import numpy as np
import yaml

from recbole_saerec import cli, quick_start

BENCHMARK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "properties", "benchmark")
RUNS = "runs"
METRIC_LABELS = {"hit": "HR", "ndcg": "NDCG", "recall": "Recall", "mrr": "MRR", "precision": "P"}
# Defaults every benchmark run gets (the command line and --config_files still win).
# resume_state: each run saves its full training state after every epoch in its own checkpoint_dir,
# so a killed benchmark resumes mid-run (trainer.CheckpointMixin.fit).
RUN_DEFAULTS = {"show_progress": False, "save_dataset": False, "save_dataloaders": False, "log_wandb": False,
                "resume_state": True}


# ----------------------------------------------------------------------------- registry
def load_registry(paths=None):
    """name -> variant dict, from every yaml in properties/benchmark/ (or `paths`)."""
    if paths is None:
        paths = sorted(os.path.join(BENCHMARK_DIR, f) for f in os.listdir(BENCHMARK_DIR) if f.endswith(".yaml"))
    registry = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for name, spec in (yaml.safe_load(f) or {}).items():
                if "model" not in spec:
                    raise ValueError(f"Variant '{name}' in {path} has no `model`.")
                registry[name] = {"config": {}, "role": None, "description": "", "search": None, "pretrain": None,
                                  **spec}
    return registry


def resolve_variant(name, registry):
    """A registered variant, or a plain model name (SAERec or any RecBole model) with its defaults."""
    if name in registry:
        variant = dict(registry[name], name=name)
    else:
        from recbole_saerec.utils import get_model

        get_model(name)  # a clear error for typos, before any run starts
        variant = {"name": name, "model": name, "config": {}, "search": None, "pretrain": None, "role": None,
                   "description": f"{name}, its RecBole/plugin defaults"}
    if variant["role"] is None:
        variant["role"] = "ours" if name == "SAERec" else "baseline"
    return variant


# ----------------------------------------------------------------------------- small helpers
def parse_value(text):
    """A command-line value as RecBole would read it (yaml scalars, lists, dicts)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


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
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(jsonable(obj), f, indent=1, sort_keys=False)
    os.replace(tmp, path)


def file_sha1(path):
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:12]


def spec_hash(model, dataset, config_files, config_dict):
    """What defines a run's result: model, dataset, config files (by content) and overrides."""
    payload = {"model": model, "dataset": dataset,
               "config_files": [file_sha1(p) for p in (config_files or [])],
               "config": {k: v for k, v in sorted(config_dict.items()) if k != "checkpoint_dir"}}
    return hashlib.sha1(json.dumps(jsonable(payload), sort_keys=True).encode()).hexdigest()[:16]


def versions():
    import recbole
    import scipy
    import torch

    import recbole_saerec

    out = {"python": platform.python_version(), "torch": torch.__version__, "recbole": recbole.__version__,
           "numpy": np.__version__, "scipy": scipy.__version__, "recbole_saerec": recbole_saerec.__version__}
    try:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def machine(label=None):
    import torch

    info = {"host": platform.node(), "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    if label:
        info["label"] = label
    return info


def fmt_duration(seconds):
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def log(msg):
    print(f"[benchmark {datetime.datetime.now():%H:%M:%S}] {msg}", flush=True)


# ----------------------------------------------------------------------------- per-user metrics
def per_user_from_topk(topk_matrix, ks):
    """Per-user Hit@K and NDCG@K from RecBole's `rec.topk` rows (top-K hit flags + number of positives),
    computed by RecBole's own metric classes (``metric_info`` is their per-user row, before the mean)."""
    from recbole.evaluator.metrics import NDCG, Hit

    from recbole_saerec.config import Config

    Config.compatibility_settings(None)  # RecBole's NDCG uses np.float: the numpy-2-safe aliases
    topk_matrix = np.asarray(topk_matrix)
    pos_index, pos_len = topk_matrix[:, :-1].astype(bool), topk_matrix[:, -1].astype(np.int64)
    hit = Hit.metric_info(None, pos_index)
    ndcg = NDCG.metric_info(None, pos_index, pos_len)
    out = {}
    for k in ks:
        out[f"hit@{k}"] = hit[:, k - 1].astype(np.float64)
        out[f"ndcg@{k}"] = ndcg[:, k - 1].astype(np.float64)
    return out


def stopped_by(history, config):
    """'patience' when early stopping ended the run, 'cap' when it hit the epochs cap (not converged)."""
    if not history:
        return None
    return "cap" if history[-1]["epoch"] + 1 >= config["epochs"] else "patience"


def per_user_metrics(model, dataset, config_file_list, config_dict, checkpoint_file):
    """Reload the valid-selected checkpoint and evaluate it on TEST, keeping each user's row.

    RecBole's evaluator only returns means; its eval collector holds the per-user top-K
    hit flags (`rec.topk`). We run the trainer's own `evaluate` (same scores, same top-K,
    same history masking) and keep those rows plus the user ids of each batch.
    Returns (user_tokens, {metric: array}, test_result) -- test_result must equal run()'s.
    """
    import torch

    from recbole_saerec.utils import get_trainer

    config, data, _train, _valid, test_data = quick_start.prepare(model, dataset, config_file_list, config_dict)
    net = quick_start.build_model(config, _train)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    collector, uid_field, users, rows = trainer.eval_collector, config["USER_ID_FIELD"], [], []
    collect, get_struct = collector.eval_batch_collect, collector.get_data_struct

    def eval_batch_collect(scores, interaction, positive_u, positive_i):
        users.append(interaction[uid_field].detach().cpu())
        return collect(scores, interaction, positive_u, positive_i)

    def get_data_struct():
        struct = get_struct()
        rows.append(struct.get("rec.topk").clone())
        return struct

    collector.eval_batch_collect, collector.get_data_struct = eval_batch_collect, get_data_struct
    with torch.no_grad():
        result = trainer.evaluate(test_data, load_best_model=True, model_file=checkpoint_file, show_progress=False)
    topk = rows[-1].numpy()
    user_ids = torch.cat(users).numpy()
    if len(user_ids) != topk.shape[0]:
        raise RuntimeError(f"per-user rows ({topk.shape[0]}) and users ({len(user_ids)}) do not align")
    tokens = np.asarray(data.id2token(uid_field, user_ids)).astype(str)
    return tokens, per_user_from_topk(topk, config["topk"]), dict(result)


# ----------------------------------------------------------------------------- one run
class Benchmark:
    def __init__(self, dataset, variants, seeds, out_dir, config_files=None, cli_config=None,
                 budget_epochs=None, work_dir=None, search=True, keep_checkpoints=True, machine_label=None,
                 fail_fast=False, registry=None):
        self.dataset, self.variants, self.seeds = dataset, variants, list(seeds)
        self.registry = registry
        self.out_dir = os.path.abspath(out_dir)
        self.runs_dir = os.path.join(self.out_dir, RUNS)
        self.config_files = [os.path.abspath(p) for p in (config_files or [])]
        self.cli_config = dict(cli_config or {})
        self.budget_epochs = budget_epochs
        self.work_dir = os.path.abspath(work_dir or os.path.join("saved", "benchmark", dataset))
        self.search, self.keep_checkpoints, self.fail_fast = search, keep_checkpoints, fail_fast
        self.machine_label = machine_label
        self.calls = 0  # quick_start.run calls made by this invocation (the resume test counts them)
        self.durations = []
        os.makedirs(self.runs_dir, exist_ok=True)

    # -- config of one run
    def config_dict(self, variant, seed, extra=None):
        cfg = dict(RUN_DEFAULTS)
        cfg.update(variant["config"] or {})
        cfg.update(extra or {})
        cfg.update(self.cli_config)  # the command line wins over variants
        if self.budget_epochs is not None:
            cfg["epochs"] = int(self.budget_epochs)
        cfg["seed"] = int(seed)
        return cfg

    def digest(self, variant, cfg):
        if variant.get("pretrain") is not None:  # a changed pre-training stage changes the result too
            cfg = dict(cfg, benchmark_pretrain=variant["pretrain"])
        return spec_hash(variant["model"], self.dataset, self.config_files, cfg)

    def run_path(self, run_id):
        return os.path.join(self.runs_dir, f"{run_id}.json")

    def finished(self, run_id, digest):
        path = self.run_path(run_id)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        if record.get("spec_hash") == digest and record.get("status") == "ok":
            return record
        stale = os.path.join(self.runs_dir, "stale")
        os.makedirs(stale, exist_ok=True)
        for suffix in (".json", ".peruser.npz"):
            src = os.path.join(self.runs_dir, run_id + suffix)
            if os.path.exists(src):
                shutil.move(src, os.path.join(stale, run_id + suffix))
        log(f"{run_id}: its spec changed since it ran (moved to runs/stale/); running it again")
        return None

    def execute(self, run_id, variant, seed, cfg):
        """Train + evaluate one run through quick_start.run, then the per-user pass; save both."""
        model = variant["model"]
        cfg = dict(cfg, checkpoint_dir=os.path.join(self.work_dir, run_id))
        digest = self.digest(variant, cfg)
        record = self.finished(run_id, digest)
        if record is not None:
            return record, False
        started = datetime.datetime.now().isoformat(timespec="seconds")
        t0 = time.time()
        if variant.get("pretrain") is not None:
            cfg["pre_model_path"] = self.pretrain(variant, cfg)
        self.calls += 1
        result = quick_start.run(model=model, dataset=self.dataset, config_file_list=self.config_files or None,
                                 config_dict=cfg, saved=True)
        train_s = time.time() - t0
        ckpt = result.get("saved_model_file")
        best_epoch = None
        if ckpt and os.path.isfile(ckpt):
            from recbole_saerec.trainer import load_checkpoint

            best_epoch = int(load_checkpoint(ckpt).get("epoch", -1))
        history = result.get("history") or []
        tokens, per_user, test_again = per_user_metrics(model, self.dataset, self.config_files or None, cfg, ckpt)
        for key, value in result["test_result"].items():
            if key in per_user and abs(float(np.mean(per_user[key])) - float(value)) > 1e-3:
                raise RuntimeError(f"{run_id}: per-user mean {key}={np.mean(per_user[key]):.5f} differs from "
                                   f"the run's test result {value:.5f}")
        save_per_user(self.runs_dir, run_id, tokens, per_user)
        from recbole_saerec.config import Config

        resolved = Config(model=model, dataset=self.dataset, config_file_list=self.config_files or None,
                          config_dict=cfg)
        record = {
            "run_id": run_id, "variant": variant["name"], "model": model, "role": variant["role"],
            "dataset": self.dataset, "seed": int(seed), "status": "ok", "spec_hash": digest,
            "overrides": cfg, "config_files": self.config_files,
            "best_valid_score": result["best_valid_score"], "best_valid_result": result["best_valid_result"],
            "test_result": result["test_result"], "test_result_per_user_mean": {k: float(np.mean(v))
                                                                              for k, v in per_user.items()},
            "n_test_users": int(len(tokens)), "best_epoch": best_epoch, "epochs_cap": resolved["epochs"],
            "epochs_run": len(history) or None, "stopped_by": stopped_by(history, resolved),
            "mask_history": bool(resolved["mask_history"]), "history": history,
            "stopping_step": resolved["stopping_step"], "valid_metric": resolved["valid_metric"],
            "train_eval_seconds": round(train_s, 1), "seconds": round(time.time() - t0, 1),
            "started": started, "finished": datetime.datetime.now().isoformat(timespec="seconds"),
            "versions": versions(), "machine": machine(self.machine_label),
            "config": {k: resolved[k] for k in resolved.final_config_dict},
        }
        write_json_atomic(self.run_path(run_id), record)
        from recbole_saerec.trainer import resume_path

        resume_file = resume_path(cfg["checkpoint_dir"], model)
        if os.path.isfile(resume_file):  # the run is recorded: its training state is no longer needed
            os.remove(resume_file)
        if not self.keep_checkpoints:
            shutil.rmtree(cfg["checkpoint_dir"], ignore_errors=True)
        self.durations.append(record["seconds"])
        return record, True

    def pretrain(self, variant, cfg):
        """Stage 1 of a two-stage model (S3Rec): self-supervised pre-training on the TRAIN split only.

        Same config chain, with the variant's `pretrain` overrides; the pre-training epochs
        are capped by --budget_epochs too. The weights are saved as a plain state dict, which
        RecBole's S3Rec finetune stage loads with torch.load under torch >= 2.6 (weights only).
        """
        import torch

        from recbole_saerec.utils import get_trainer

        pcfg = dict(cfg, train_stage="pretrain", **variant["pretrain"])
        if self.budget_epochs is not None:
            pcfg["pretrain_epochs"] = min(int(pcfg.get("pretrain_epochs", self.budget_epochs)), int(self.budget_epochs))
        if "pretrain_epochs" in pcfg:
            pcfg["save_step"] = pcfg["pretrain_epochs"]
        config, _data, train_data, _valid, _test = quick_start.prepare(
            variant["model"], self.dataset, self.config_files or None, pcfg)
        net = quick_start.build_model(config, train_data)
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
        trainer.fit(train_data, None, saved=True, show_progress=False)  # pretrain(): no valid, no test
        os.makedirs(cfg["checkpoint_dir"], exist_ok=True)
        path = os.path.join(cfg["checkpoint_dir"], "pretrained.pth")
        torch.save({"state_dict": net.state_dict()}, path)
        log(f"{variant['name']}: pre-trained {config['pretrain_epochs']} epochs -> {path}")
        return path

    # -- intents needed by the variants, built once per artefact directory
    def ensure_intents(self, plan):
        """Build the artefacts each intent-reading variant needs, once per artefact directory."""
        from recbole_saerec.artefacts import resolve_intent_dir
        from recbole_saerec.config import Config
        from recbole_saerec.utils import get_model

        built = set()
        for _run_id, variant, _seed, cfg in plan:
            if not getattr(get_model(variant["model"]), "needs_intents", False):
                continue
            config = Config(model=variant["model"], dataset=self.dataset,
                            config_file_list=self.config_files or None, config_dict=cfg)
            if resolve_intent_dir(config) not in built:
                built.add(quick_start.ensure_intents(config, shared_cache=True))

    # -- search on the first seed, VALID metric only
    def select(self, variant):
        if not (self.search and variant.get("search")):
            return {}, None
        seed = self.seeds[0]
        scores = []
        for k, candidate in enumerate(variant["search"]):
            run_id = f"{variant['name']}@cand{k}__seed{seed}"
            record, fresh = self.execute(run_id, variant, seed, self.config_dict(variant, seed, candidate))
            scores.append(record["best_valid_score"])
            log(f"search {variant['name']} candidate {k} {candidate}: valid {record['valid_metric']} = "
                f"{record['best_valid_score']:.4f}" + ("" if fresh else " (finished before)"))
        best = int(np.argmax(scores))
        choice = {"variant": variant["name"], "selected_on": "valid", "seed": seed, "candidates": variant["search"],
                  "valid_scores": scores, "selected": best, "selected_config": variant["search"][best]}
        write_json_atomic(os.path.join(self.runs_dir, f"{variant['name']}.search.json"), choice)
        return variant["search"][best], best

    def run_all(self):
        skip = set()
        for variant in self.variants:  # intents first: a failing build shows before hours of training
            try:
                self.ensure_intents([(None, variant, s, self.config_dict(variant, s)) for s in self.seeds])
            except Exception as err:  # noqa: BLE001 - the other models still run
                if self.fail_fast:
                    raise
                log(f"FAILED intent build for {variant['name']} (skipped): {type(err).__name__}: {err}")
                skip.add(variant["name"])
        total = len(self.variants) * len(self.seeds)
        done, records, t_start = 0, [], time.time()
        for variant in self.variants:
            if variant["name"] in skip:
                done += len(self.seeds)
                continue
            try:
                chosen, cand = self.select(variant)
            except Exception as err:  # noqa: BLE001 - one model failing must not stop the others
                if self.fail_fast:
                    raise
                log(f"FAILED search of {variant['name']}: {type(err).__name__}: {err}")
                done += len(self.seeds)
                continue
            for seed in self.seeds:
                done += 1
                run_id = f"{variant['name']}__seed{seed}"
                remaining = total - done + 1
                eta = (np.mean(self.durations) * remaining) if self.durations else None
                log(f"[{done}/{total}] {run_id}" + (f"  elapsed {fmt_duration(time.time() - t_start)}"
                                                    f"  ETA {fmt_duration(eta)}" if eta is not None else ""))
                cfg = self.config_dict(variant, seed, chosen)
                try:
                    if cand is not None and seed == self.seeds[0]:
                        self.copy_selected(variant, seed, cand, run_id, cfg)
                    record, fresh = self.execute(run_id, variant, seed, cfg)
                except Exception as err:  # noqa: BLE001
                    if self.fail_fast:
                        raise
                    log(f"FAILED {run_id}: {type(err).__name__}: {err}")
                    write_json_atomic(os.path.join(self.runs_dir, f"{run_id}.failed.json"),
                                      {"run_id": run_id, "error": f"{type(err).__name__}: {err}"})
                    continue
                stale_fail = os.path.join(self.runs_dir, f"{run_id}.failed.json")
                if os.path.exists(stale_fail):
                    os.remove(stale_fail)
                records.append(record)
                if fresh:  # the table follows the runs: a long benchmark shows its partial results
                    try:
                        report(self.out_dir, self.dataset, [v["name"] for v in self.variants], self.registry)
                    except Exception as err:  # noqa: BLE001 - a report problem must not stop training
                        log(f"report failed: {type(err).__name__}: {err}")
                test = record["test_result"]
                how = "done" if fresh else ("= the selected search candidate" if record.get("selected_from")
                                            else "finished before, skipped")
                log(f"{run_id} {how}: "
                    + " ".join(f"{k}={v:.4f}" for k, v in test.items()) + f"  ({fmt_duration(record['seconds'])})")
        return records

    def copy_selected(self, variant, seed, cand, run_id, cfg):
        """The selected candidate's first-seed run IS the first-seed run: reuse it, do not train twice."""
        src = f"{variant['name']}@cand{cand}__seed{seed}"
        digest = self.digest(variant, dict(cfg, checkpoint_dir=os.path.join(self.work_dir, run_id)))
        if os.path.isfile(self.run_path(run_id)) or not os.path.isfile(self.run_path(src)):
            return
        with open(self.run_path(src), encoding="utf-8") as f:
            record = json.load(f)
        record.update(run_id=run_id, spec_hash=digest, selected_from=src)
        shutil.copyfile(os.path.join(self.runs_dir, f"{src}.peruser.npz"),
                        os.path.join(self.runs_dir, f"{run_id}.peruser.npz"))
        write_json_atomic(self.run_path(run_id), record)


# ----------------------------------------------------------------------------- aggregation
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


def metric_keys(records):
    keys = list(records[0]["test_result"]) if records else []
    kinds = [k.split("@")[0] for k in keys]
    return sorted(keys, key=lambda k: (int(k.split("@")[1]), kinds.index(k.split("@")[0])))


def label(metric):
    kind, k = metric.split("@")
    return f"{METRIC_LABELS.get(kind, kind)}@{k}"


def summarize(records):
    """variant -> {metric: (mean, std, n)}, std = sample std (ddof=1; 0 with one seed)."""
    summary = {}
    for metric in metric_keys(records):
        for r in records:
            summary.setdefault(r["variant"], {})
        for variant in summary:
            values = [r["test_result"][metric] for r in records if r["variant"] == variant]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            summary[variant][metric] = (float(np.mean(values)), std, len(values))
    return summary


def paired_seed_test(ours, theirs):
    """Paired t-test over seeds: lists of (seed, value). Returns dict with n, mean diff, t, p."""
    from scipy import stats

    a, b = dict(ours), dict(theirs)
    common = sorted(set(a) & set(b))
    x, y = np.array([a[s] for s in common]), np.array([b[s] for s in common])
    out = {"n": len(common), "mean_diff": float(np.mean(x - y)) if common else float("nan"),
           "t": float("nan"), "p": float("nan")}
    if len(common) >= 2 and np.std(x - y) > 0:
        res = stats.ttest_rel(x, y)
        out.update(t=float(res.statistic), p=float(res.pvalue))
    return out


def paired_user_test(ours, theirs):
    """Per-user paired tests: `ours`/`theirs` map user token -> value (already averaged over seeds).

    Paired t-test (scipy ttest_rel) and Wilcoxon signed-rank (zero differences dropped,
    scipy's default) over the users both models were evaluated on.
    """
    from scipy import stats

    users = sorted(set(ours) & set(theirs))
    x, y = np.array([ours[u] for u in users]), np.array([theirs[u] for u in users])
    d = x - y
    out = {"n_users": len(users), "mean_diff": float(d.mean()) if len(d) else float("nan"),
           "t": float("nan"), "p_t": float("nan"), "ci95": [float("nan"), float("nan")], "p_wilcoxon": float("nan")}
    if len(d) >= 2 and d.std() > 0:
        res = stats.ttest_rel(x, y)
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        out.update(t=float(res.statistic), p_t=float(res.pvalue), ci95=[float(d.mean() - half), float(d.mean() + half)])
        if np.count_nonzero(d) > 0:
            out["p_wilcoxon"] = float(stats.wilcoxon(x, y).pvalue)
    return out


USERS_FILE = "test_users.txt"


def save_per_user(runs_dir, run_id, tokens, per_user):
    """Per-user metrics as float32 arrays; the user tokens once per folder (test_users.txt,
    one per line, in row order) unless this run's users differ, then inside the .npz."""
    order = np.argsort(tokens, kind="stable")
    tokens = np.asarray(tokens)[order]
    digest = hashlib.sha1("\n".join(tokens.tolist()).encode()).hexdigest()[:16]
    users_path = os.path.join(runs_dir, USERS_FILE)
    if not os.path.isfile(users_path):
        with open(users_path + ".tmp", "w", encoding="utf-8") as f:
            f.write("\n".join(tokens.tolist()) + "\n")
        os.replace(users_path + ".tmp", users_path)
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


def seed_averaged_per_user(runs_dir, records, metric):
    """user token -> mean over this variant's seeds of its per-user metric."""
    total, count = {}, {}
    for r in records:
        data = load_per_user(runs_dir, r["run_id"])
        if data is None:
            continue
        for user, value in zip(data["users"].tolist(), data[metric].tolist()):
            total[user] = total.get(user, 0.0) + value
            count[user] = count.get(user, 0) + 1
    return {u: total[u] / count[u] for u in total}


def significance(runs_dir, records, ours="SAERec"):
    """SAERec against the best BASELINE (by mean test value) per metric: seed-paired and user-paired."""
    summary = summarize(records)
    roles = {r["variant"]: r.get("role", "baseline") for r in records}
    baselines = [v for v in summary if roles.get(v) == "baseline" and v != ours]
    if ours not in summary or not baselines:
        return []
    rows = []
    for metric in metric_keys(records):
        best = max(baselines, key=lambda v: summary[v][metric][0])
        mine = [r for r in records if r["variant"] == ours]
        theirs = [r for r in records if r["variant"] == best]
        seed = paired_seed_test([(r["seed"], r["test_result"][metric]) for r in mine],
                                [(r["seed"], r["test_result"][metric]) for r in theirs])
        user = paired_user_test(seed_averaged_per_user(runs_dir, mine, metric),
                                seed_averaged_per_user(runs_dir, theirs, metric))
        m_ours, m_best = summary[ours][metric][0], summary[best][metric][0]
        rows.append({"metric": metric, "ours": ours, "best_baseline": best, "ours_mean": m_ours,
                     "baseline_mean": m_best, "rel_gain": (m_ours - m_best) / m_best if m_best else float("nan"),
                     "seed_n": seed["n"], "seed_t": seed["t"], "seed_p": seed["p"],
                     "user_n": user["n_users"], "user_mean_diff": user["mean_diff"], "user_ci95": user["ci95"],
                     "user_t": user["t"], "user_p_t": user["p_t"], "user_p_wilcoxon": user["p_wilcoxon"]})
    return rows


def fmt_p(p):
    return "n/a" if p is None or not np.isfinite(p) else (f"{p:.1e}" if p < 1e-3 else f"{p:.3f}")


def markdown(records, sig_rows, dataset, variants_meta=None, reference="SASRec"):
    summary = summarize(records)
    metrics = metric_keys(records)
    best = {m: max(summary, key=lambda v: summary[v][m][0]) for m in metrics}
    lines = [f"# Benchmark: {dataset}", "",
             "Test metrics of the valid-selected checkpoint, mean ± sample std (ddof=1) over seeds; "
             "best mean per metric in bold. Full ranking over all items, leave-one-out by time.", "",
             "| model | role | " + " | ".join(label(m) for m in metrics)
             + " | seeds | best epoch (0-based) | min/run |",
             "|---|---|" + "---|" * len(metrics) + "---|---|---|"]
    for variant, cells in summary.items():
        recs = [r for r in records if r["variant"] == variant]
        row = []
        for m in metrics:
            mean, std, n = cells[m]
            text = f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"
            row.append(f"**{text}**" if best[m] == variant else text)
        epochs = "/".join(str(r.get("best_epoch")) for r in recs)
        minutes = np.mean([r["seconds"] for r in recs]) / 60
        lines.append(f"| {variant} | {recs[0].get('role', '')} | " + " | ".join(row)
                     + f" | {len(recs)} | {epochs} | {minutes:.1f} |")
    if sig_rows:
        lines += ["", "## Significance: SAERec against the best baseline per metric", "",
                  "Seed-paired: paired t-test over seeds (weak with 3 seeds). User-paired: each test user's "
                  "metric averaged over seeds, paired t-test and Wilcoxon signed-rank over users.", "",
                  "| metric | best baseline | SAERec | baseline | rel. gain | seed-paired p (n) "
                  "| user mean diff [95% CI] | user t-test p | Wilcoxon p |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s in sig_rows:
            lo, hi = s["user_ci95"]
            lines.append(f"| {label(s['metric'])} | {s['best_baseline']} | {s['ours_mean']:.4f} | "
                         f"{s['baseline_mean']:.4f} | {100 * s['rel_gain']:+.1f}% | "
                         f"{fmt_p(s['seed_p'])} ({s['seed_n']}) | "
                         f"{s['user_mean_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}] | {fmt_p(s['user_p_t'])} | "
                         f"{fmt_p(s['user_p_wilcoxon'])} |")
    if "SAERec" in summary and reference in summary:
        lines += ["", f"## SAERec relative to RecBole {reference} (target: >= +10% on HR@10 and NDCG@10)", ""]
        for m in metrics:
            a, b = summary["SAERec"][m][0], summary[reference][m][0]
            lines.append(f"- {label(m)}: {a:.4f} vs {b:.4f} ({100 * (a - b) / b:+.1f}%)" if b else f"- {label(m)}: n/a")
    first = records[0] if records else {}
    lines += ["", "## Setup", "",
              f"- epochs cap {first.get('epochs_cap')}, early stopping after {first.get('stopping_step')} "
              f"epochs without improvement of valid {first.get('valid_metric')}; protocol "
              f"{(first.get('config') or {}).get('protocol', 'clean')}; MAX_ITEM_LIST_LENGTH "
              f"{(first.get('config') or {}).get('MAX_ITEM_LIST_LENGTH')}; seeds "
              f"{sorted({r['seed'] for r in records})}",
              f"- machine: {json.dumps(first.get('machine'))}", f"- versions: {json.dumps(first.get('versions'))}"]
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
    import csv

    metrics = metric_keys(records)
    with open(os.path.join(out_dir, "results.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["variant", "model", "role", "seed"] + [f"test_{m}" for m in metrics]
                   + [f"valid_{m}" for m in metrics]
                   + ["best_epoch", "epochs_run", "stopped_by", "mask_history", "seconds", "min_per_epoch"])
        for r in records:
            w.writerow([r["variant"], r["model"], r.get("role"), r["seed"]]
                       + [r["test_result"][m] for m in metrics]
                       + [r["best_valid_result"].get(m) for m in metrics]
                       + [r.get("best_epoch"), r.get("epochs_run"), r.get("stopped_by"), r.get("mask_history"),
                          r["seconds"], round(r["train_eval_seconds"] / 60 / r["epochs_run"], 2)
                          if r.get("epochs_run") else None])
    with open(os.path.join(out_dir, "summary.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["variant", "n_seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")])
        for variant, cells in summary.items():
            w.writerow([variant, cells[metrics[0]][2]] + [x for m in metrics for x in cells[m][:2]])


def plot(path, summary, dataset):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(summary)
    metrics = list(next(iter(summary.values())))
    width = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics) + 0.25 * len(variants)), 4))
    x = np.arange(len(metrics))
    for i, v in enumerate(variants):
        means = [summary[v][m][0] for m in metrics]
        stds = [summary[v][m][1] for m in metrics]
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=v,
               color=plt.cm.tab20(i % 20))  # the default cycle repeats after 10 models
    ax.set_xticks(x, [label(m) for m in metrics])
    ax.set_ylabel("test (mean ± std over seeds)")
    ax.set_title(f"{dataset}: full ranking, leave-one-out")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    for v in meta:
        search_file = os.path.join(runs_dir, f"{v}.search.json")
        if os.path.isfile(search_file):
            with open(search_file, encoding="utf-8") as f:
                meta[v]["selected"] = json.load(f)["selected_config"]
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(markdown(records, sig, dataset, meta))
    plot(os.path.join(out_dir, "results.png"), summary, dataset)
    return {"records": records, "summary": summary, "significance": sig}


# ----------------------------------------------------------------------------- command line
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", "-d", required=True)
    p.add_argument("--models", "-m", required=True, help="comma-separated model or variant names")
    p.add_argument("--seeds", default="3", help="a count N (seeds seed_base..seed_base+N-1) or a list '1,2,3'")
    p.add_argument("--seed_base", type=int, default=2020, help="first seed when --seeds is a count")
    p.add_argument("--out", default=None, help="results folder (default docs/results/<dataset>)")
    p.add_argument("--work_dir", default=None, help="checkpoints (default saved/benchmark/<dataset>)")
    p.add_argument("--config_files", default=None, help="yaml files for every run (space or comma separated)")
    p.add_argument("--budget_epochs", type=int, default=None, help="the same epochs cap for every model")
    p.add_argument("--search", default="on", choices=["on", "off"], help="run variants' valid-selected searches")
    # Each run keeps its valid-selected checkpoint (<work_dir>/<run_id>/<Model>-<date>.pth, one file per
    # run) so that explain/steer/probe can read the run folder; --drop_checkpoints saves the disk.
    p.add_argument("--keep_checkpoints", dest="keep_checkpoints", action="store_true", default=True,
                   help="keep each run's best checkpoint under --work_dir (the default)")
    p.add_argument("--drop_checkpoints", dest="keep_checkpoints", action="store_false",
                   help="delete each run's checkpoint once its record is written")
    p.add_argument("--machine", default=None, help="a label for the machine, stored in every run")
    p.add_argument("--report_only", action="store_true", help="rebuild the tables/plot from finished runs")
    p.add_argument("--fail_fast", action="store_true", help="stop at the first failing run")
    p.add_argument("--variants", default=None, help="extra registry yaml (adds/overrides variants)")
    args, unknown = p.parse_known_args(argv)
    return args, {key: parse_value(value) for key, value in cli.config_args(unknown).items()}


def main(argv=None):
    args, overrides = parse_args(argv)
    registry = load_registry()
    if args.variants:
        registry.update(load_registry([args.variants]))
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    variants = [resolve_variant(n, registry) for n in names]
    seeds = ([int(s) for s in args.seeds.split(",")] if "," in args.seeds
             else [args.seed_base + i for i in range(int(args.seeds))])
    out = args.out or os.path.join("docs", "results", args.dataset)
    config_files = cli.config_files(args.config_files)
    bench = Benchmark(args.dataset, variants, seeds, out, config_files=config_files, cli_config=overrides,
                      budget_epochs=args.budget_epochs, work_dir=args.work_dir, search=args.search == "on",
                      keep_checkpoints=args.keep_checkpoints, machine_label=args.machine, fail_fast=args.fail_fast,
                      registry=registry)
    if not args.report_only:
        log(f"{args.dataset}: {len(variants)} models x {len(seeds)} seeds {seeds} -> {bench.out_dir}")
        with cli.recbole_cmd_line({}):  # every config key reaches the runs as cli_config, none via sys.argv
            bench.run_all()
    result = report(bench.out_dir, args.dataset, names, registry)
    if result:
        log(f"table: {os.path.join(bench.out_dir, 'results.md')}")
    return result


if __name__ == "__main__":
    sys.exit(cli.run_main(lambda argv: 0 if main(argv) is not None else 1, prog="python -m recbole_saerec.experiments.benchmark"))
