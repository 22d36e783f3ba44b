"""One benchmark run (train, select on VALID, test, per-user rows, record) and the whole plan of runs.

Every (model, seed) goes through quick_start.run with the same config chain, so every model sees
the same split, ranking and early stopping. Resumable at two levels: a finished run's JSON is
skipped when its spec hash matches, and a run cut off mid-way continues from its last epoch
(``resume_state``, trainer.CheckpointMixin.fit).
"""
import datetime
import json
import os
import platform
import shutil
import time

import numpy as np

from recbole_saerec import quick_start
from recbole_saerec.environment import run_environment
from recbole_saerec.experiments.benchmark.records import (RUNS, fmt_duration, jsonable, log, rename_variant,
                                                          save_per_user, spec_hash, write_json_atomic)
from recbole_saerec.experiments.benchmark.registry import load_registry, resolve_variant
from recbole_saerec.experiments.benchmark.report import IN_FLIGHT, process_state, report, report_names
from recbole_saerec.experiments.benchmark.stats import per_user_from_topk

# resume_state: each run saves its full training state after every epoch in its own checkpoint_dir,
# so a killed benchmark resumes mid-run (trainer.CheckpointMixin.fit).
RUN_DEFAULTS = {"show_progress": False, "save_dataset": False, "save_dataloaders": False, "log_wandb": False,
                "resume_state": True}


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
def changed_defaults(recorded, resolved):
    """Keys set by the plugin's yaml (overall, model, dataset) whose value in `resolved` (a Config)
    differs from a record's resolved config: a default changed after the run."""
    from recbole_saerec.config import plugin_yaml_keys

    keys = plugin_yaml_keys(resolved["model"], resolved["dataset"])
    return sorted(k for k in keys if k not in resolved.external_config_dict and k in recorded
                  and jsonable(resolved[k]) != jsonable(recorded[k]))


def same_settings(recorded, resolved):
    """True when a record's resolved config (``record['config']``) is the one a run resolves to now
    (a Config), on every key but where and how it runs (trainer.RESUME_FREE; the epochs cap and
    the patience do count here): the same run however its settings were stated, e.g. a value an
    override set that a default later took, or a variant stating a value its default already had."""
    from recbole_saerec.trainer import RESUME_FREE, changed_settings

    now = jsonable({k: resolved[k] for k in resolved.final_config_dict})
    return bool(recorded) and not changed_settings(jsonable(recorded), now,
                                                   free=RESUME_FREE - {"epochs", "stopping_step"})


def intents_used(model, resolved):
    """Which intent set a run read (its manifest's fingerprint and build statistics), or None: a
    rebuild on another machine can differ (e.g. in the latents the judge keeps), so records say."""
    from recbole_saerec.artefacts import resolve_intent_dir
    from recbole_saerec.utils import get_model

    if not getattr(get_model(model), "needs_intents", False):
        return None
    path = os.path.join(resolve_intent_dir(resolved), "manifest.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    stats = manifest.get("stats") or {}
    return {"dir": os.path.dirname(path), "fingerprint": manifest.get("fingerprint"),
            "n_intents": manifest.get("n_intents"), "fvu": stats.get("fvu"), "n_kept": stats.get("n_kept")}


def resolve_work_dir(work_dir, dataset):
    """Where the runs' checkpoints and resume states live (default saved/benchmark/<dataset>)."""
    return os.path.abspath(work_dir or os.path.join("saved", "benchmark", dataset))


class Benchmark:
    def __init__(self, dataset, variants, seeds, out_dir, config_files=None, cli_config=None,
                 budget_epochs=None, work_dir=None, search=True, keep_checkpoints=True, machine_label=None,
                 fail_fast=False, registry=None, search_seed=None, bars=False, search_candidates=None):
        self.dataset, self.variants, self.seeds = dataset, variants, list(seeds)
        # The searches select on this seed's VALID, whatever seeds this call trains: a call that adds
        # seeds 2021-2022 to a table searched on 2020 reuses that search instead of searching again.
        self.search_seed = self.seeds[0] if search_seed is None else search_seed
        self.registry = registry
        self.out_dir = os.path.abspath(out_dir)
        self.runs_dir = os.path.join(self.out_dir, RUNS)
        self.config_files = [os.path.abspath(p) for p in (config_files or [])]
        self.cli_config = dict(cli_config or {})
        self.budget_epochs = budget_epochs
        self.work_dir = resolve_work_dir(work_dir, dataset)
        self.search, self.keep_checkpoints, self.fail_fast = search, keep_checkpoints, fail_fast
        # Only these search candidates train in this call (two CPU slots can share one search: each
        # trains some candidates; a later call without the restriction selects and trains the seeds).
        self.search_candidates = None if search_candidates is None else set(search_candidates)
        # Where and with which code the runs were made, taken once at start: the commit named in every
        # record is the code this process runs, even when the checkout moves on while it trains.
        self.env = run_environment(label=machine_label)
        # Progress bars are how a run is shown, not what it is: set per call, outside the spec hash
        # and the recorded config, so finished records stay reusable whatever the bars.
        self.bars = bool(bars)
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

    def resolve(self, variant, cfg):
        """The Config a run of `variant` with overrides `cfg` gets (yaml defaults included)."""
        from recbole_saerec.config import Config

        return Config(model=variant["model"], dataset=self.dataset, config_file_list=self.config_files or None,
                      config_dict=cfg)

    def run_path(self, run_id):
        return os.path.join(self.runs_dir, f"{run_id}.json")

    def trained_elsewhere(self, run_id):
        """The in-flight marker of a run that another live process on this host is training (two
        queues sharing a work folder): training it here too would write the same checkpoints."""
        marker = os.path.join(self.work_dir, run_id, IN_FLIGHT)
        if os.path.isfile(self.run_path(run_id)) or process_state(marker) != "running":
            return None
        with open(marker, encoding="utf-8") as f:
            return None if json.load(f).get("pid") == os.getpid() else marker

    @staticmethod
    def is_run(record, digest, resolved=None, exact=False):
        """Whether a finished record is the run that this spec (hash `digest`, Config `resolved`) makes.

        The spec hash covers the model, dataset, config files and overrides, not the plugin's own
        yaml defaults; `resolved` (the Config this run would get now) catches those: a record whose
        resolved config differs on any key the plugin's yaml sets (a changed default) is not it.
        A record with another spec hash but the same resolved config (same_settings) is the same
        run stated otherwise, unless `exact` (a pre-trained variant: its stage-1 settings are in
        the hash, not in the config).
        """
        if record.get("status") != "ok":
            return False
        if record.get("spec_hash") == digest and (
                resolved is None or not changed_defaults(record.get("config") or {}, resolved)):
            return True
        return resolved is not None and not exact and same_settings(record.get("config"), resolved)

    def finished(self, run_id, digest, resolved=None, exact=False):
        """The run's record when it already ran with this spec (is_run), else None (a stale record is moved aside)."""
        path = self.run_path(run_id)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        if self.is_run(record, digest, resolved, exact):
            if record.get("spec_hash") != digest:
                log(f"{run_id}: its settings are stated otherwise now but resolve to the same config: reused")
            return record
        changed = [] if resolved is None else changed_defaults(record.get("config") or {}, resolved)
        if changed:
            log(f"{run_id}: the plugin's yaml defaults changed since it ran: {', '.join(changed)}")
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
        resolved = self.resolve(variant, cfg)
        record = self.finished(run_id, digest, resolved, exact=variant.get("pretrain") is not None)
        if record is not None:
            return record, False
        started = datetime.datetime.now().isoformat(timespec="seconds")
        t0 = time.time()
        if variant.get("pretrain") is not None:
            cfg["pre_model_path"] = self.pretrain(variant, cfg)
        self.calls += 1
        marker = os.path.join(cfg["checkpoint_dir"], IN_FLIGHT)
        os.makedirs(cfg["checkpoint_dir"], exist_ok=True)
        write_json_atomic(marker, {"run_id": run_id, "pid": os.getpid(), "host": platform.node(),
                                   "started": started, "started_unix": t0, "epochs_cap": resolved["epochs"],
                                   "stopping_step": resolved["stopping_step"], "out": self.out_dir})
        try:
            record = self._train_and_record(run_id, variant, seed, cfg, model, digest, resolved, started, t0)
        finally:
            if os.path.exists(marker):
                os.remove(marker)
        if not self.keep_checkpoints:
            shutil.rmtree(cfg["checkpoint_dir"], ignore_errors=True)
        self.durations.append(record["seconds"])
        return record, True

    def _train_and_record(self, run_id, variant, seed, cfg, model, digest, resolved, started, t0):
        result = quick_start.run(model=model, dataset=self.dataset, config_file_list=self.config_files or None,
                                 config_dict=dict(cfg, show_progress=self.bars), saved=True)
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
            "versions": self.env["versions"], "machine": self.env["machine"],
            "config": {k: resolved[k] for k in resolved.final_config_dict},
            "intents": intents_used(model, resolved),
        }
        write_json_atomic(self.run_path(run_id), record)
        from recbole_saerec.trainer import resume_path

        resume_file = resume_path(cfg["checkpoint_dir"], model)
        if os.path.isfile(resume_file):  # the run is recorded: its training state is no longer needed
            os.remove(resume_file)
        return record

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
        from recbole_saerec.utils import get_model

        built = set()
        for _run_id, variant, _seed, cfg in plan:
            if not getattr(get_model(variant["model"]), "needs_intents", False):
                continue
            config = self.resolve(variant, cfg)
            if resolve_intent_dir(config) not in built:
                built.add(quick_start.ensure_intents(config, shared_cache=True))

    # -- search on the first seed, VALID metric only
    def changes_nothing(self, variant, seed, candidate):
        """True when the variant already runs with every value of `candidate` (its yaml defaults
        included): that candidate IS the variant's own run, and is not trained a second time."""
        resolved = self.resolve(variant, self.config_dict(variant, seed))
        return all(k in resolved and jsonable(resolved[k]) == jsonable(v) for k, v in candidate.items())

    def select(self, variant):
        """(overrides, index) of the candidate with the best VALID score on the search seed; ({}, None)
        without a search. The candidate equal to the variant's own settings trains with the variant's
        own overrides (its spec is the variant's), so the variant's runs stay when it wins."""
        if not (self.search and variant.get("search")):
            return {}, None
        seed = self.search_seed
        scores, own, waiting = [], None, []
        for k, candidate in enumerate(variant["search"]):
            run_id, cfg = f"{variant['name']}@cand{k}__seed{seed}", self.config_dict(variant, seed, candidate)
            if own is None and self.changes_nothing(variant, seed, candidate):
                own, cfg = k, self.config_dict(variant, seed)
                self.adopt_first_seed_run(variant, seed, run_id)
            if self.search_candidates is not None and k not in self.search_candidates \
                    and not os.path.isfile(self.run_path(run_id)):
                waiting.append(k)  # another call trains it (--search_candidates)
                continue
            if self.trained_elsewhere(run_id):
                waiting.append(k)  # another process is training it now
                continue
            if not os.path.isfile(self.run_path(run_id)):
                log(f"search {variant['name']} candidate {k + 1}/{len(variant['search'])} {candidate} on seed "
                    f"{seed}: {self.eta_text(variant)}")
            record, fresh = self.execute(run_id, variant, seed, cfg)
            scores.append(record["best_valid_score"])
            log(f"search {variant['name']} candidate {k} {candidate}: valid {record['valid_metric']} = "
                f"{record['best_valid_score']:.4f}" + ("" if fresh else " (finished before)"))
        if waiting:
            log(f"search {variant['name']}: candidates {waiting} have no record yet (another call or process "
                f"trains them): no selection; rerun this command once they have finished")
            return None, None
        best = int(np.argmax(scores))
        choice = {"variant": variant["name"], "selected_on": "valid", "seed": seed, "candidates": variant["search"],
                  "valid_scores": scores, "selected": best, "selected_config": variant["search"][best]}
        write_json_atomic(os.path.join(self.runs_dir, f"{variant['name']}.search.json"), choice)
        return ({} if best == own else variant["search"][best]), best

    def adopt_first_seed_run(self, variant, seed, cand_id):
        """A first-seed run made before the search (--search=off) already is the own-settings
        candidate: copy it under the candidate's name rather than train it again. The copy stays
        when another candidate wins and takes the first-seed name (reruns of the search reuse it)."""
        main_id = f"{variant['name']}__seed{seed}"
        if os.path.isfile(self.run_path(cand_id)) or not os.path.isfile(self.run_path(main_id)):
            return
        cfg = dict(self.config_dict(variant, seed), checkpoint_dir=os.path.join(self.work_dir, main_id))
        with open(self.run_path(main_id), encoding="utf-8") as f:
            record = json.load(f)
        if not self.is_run(record, self.digest(variant, cfg), self.resolve(variant, cfg),
                           exact=variant.get("pretrain") is not None):
            return  # not the own-settings run (e.g. a winner's copy): the candidate trains
        self.copy_run(record, main_id, cand_id, same_run_as=main_id)

    def keep_own_runs(self, variant, cand):
        """Another candidate won the search: the variant's runs made at its own settings keep their
        numbers under `keep_own_as` (a registered variant stating those settings) rather than going
        to runs/stale/, so the rows trained at the old settings stay paired with the runs they ran beside."""
        pin = resolve_variant(variant["keep_own_as"], self.registry or load_registry())
        why = (f"--search on VALID picked {variant['name']} candidate {cand} {variant['search'][cand]}; "
               f"this run, at {variant['name']}'s own settings, is kept as {pin['name']}")
        ids = rename_variant(self.runs_dir, variant["name"], pin["name"], pin["config"], why, role=pin["role"],
                             only_matching=True)
        if ids:
            log(f"{variant['name']}: the search picked candidate {cand}; its runs at the own settings are now "
                f"{', '.join(ids)}")

    def copy_run(self, record, src_id, dst_id, **updates):
        """Record `src_id` (already read as `record`) and its per-user rows, again under `dst_id`."""
        shutil.copyfile(os.path.join(self.runs_dir, f"{src_id}.peruser.npz"),
                        os.path.join(self.runs_dir, f"{dst_id}.peruser.npz"))
        write_json_atomic(self.run_path(dst_id), dict(record, run_id=dst_id, **updates))

    # -- what the call will cost, said before it trains
    def estimate(self, variant):
        """(seconds one run of `variant` takes, where the estimate comes from): its finished runs in this
        folder (search candidates included), else the runs this call finished; (None, None) before any."""
        from recbole_saerec.experiments.benchmark.records import run_seconds

        name = variant["name"]
        seconds = []
        for file in os.listdir(self.runs_dir):
            if file.startswith((f"{name}__seed", f"{name}@cand")) and file.endswith(".json") \
                    and not file.endswith(".failed.json"):
                with open(os.path.join(self.runs_dir, file), encoding="utf-8") as f:
                    record = json.load(f)
                # a run under another epochs cap says little about this one's time
                if record.get("status") == "ok" and (self.budget_epochs is None
                                                     or record.get("epochs_cap") == self.budget_epochs):
                    try:
                        seconds.append(run_seconds(record))
                    except (KeyError, TypeError, ValueError):  # an untimed record: no estimate from it
                        pass
        if seconds:
            return float(np.mean(seconds)), "from its finished runs"
        if self.durations:
            return float(np.mean(self.durations)), "from this call's runs of other models"
        return None, None

    def eta_text(self, variant):
        est, source = self.estimate(variant)
        return (f"~{fmt_duration(est)} per run ({source})" if est is not None
                else "no time estimate yet (no finished run of it)")

    def announce(self):
        """Log the runs this call may train, search candidates included, before any of them starts."""
        searched = [v for v in self.variants if self.search and v.get("search")]
        extra = 0
        for v in searched:
            pending = [k for k in range(len(v["search"]))
                       if not os.path.isfile(self.run_path(f"{v['name']}@cand{k}__seed{self.search_seed}"))]
            # the candidate at the variant's own settings is its first-seed run, not one more
            extra += max(len(pending) - 1, 0)
            log(f"search on: {v['name']} tries {len(v['search'])} candidates on seed {self.search_seed}'s VALID "
                f"({len(pending)} not run yet; {self.eta_text(v)}); the winner then trains every seed")
        if searched:
            log(f"search adds up to {extra} runs to the {len(self.variants) * len(self.seeds)} of the table "
                f"(--search=off would train each variant at its own settings only)")
        elif any(v.get("search") for v in self.variants):
            log("search off: each variant runs with its own settings (--search=on runs its candidates)")

    def run_all(self):
        self.announce()
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
            if chosen is None:  # the search is not complete yet: nothing to train at its pick
                done += len(self.seeds)
                continue
            if chosen and variant.get("keep_own_as"):
                self.keep_own_runs(variant, cand)
            for seed in self.seeds:
                done += 1
                run_id = f"{variant['name']}__seed{seed}"
                marker = self.trained_elsewhere(run_id)
                if marker:
                    log(f"[{done}/{total}] {run_id}: another process is training it ({marker}); skipped here, "
                        "rerun this command once it has finished")
                    continue
                if not os.path.isfile(self.run_path(run_id)):
                    log(f"[{done}/{total}] {run_id}  elapsed {fmt_duration(time.time() - t_start)}; this run: "
                        f"{self.eta_text(variant)}" + self.eta_left(done, total))
                else:
                    log(f"[{done}/{total}] {run_id}")
                cfg = self.config_dict(variant, seed, chosen)
                try:
                    if cand is not None and seed == self.search_seed:
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
                        report(self.out_dir, self.dataset,
                               report_names(self.out_dir, [v["name"] for v in self.variants]), self.registry)
                    except Exception as err:  # noqa: BLE001 - a report problem must not stop training
                        log(f"report failed: {type(err).__name__}: {err}")
                test = record["test_result"]
                how = "done" if fresh else ("= the selected search candidate" if record.get("selected_from")
                                            else "finished before, skipped")
                log(f"{run_id} {how}: "
                    + " ".join(f"{k}={v:.4f}" for k, v in test.items()) + f"  ({fmt_duration(record['seconds'])})")
        return records

    def eta_left(self, done, total):
        """'; all left ~T' once every variant still to run has an estimate, else ''."""
        left, n = 0.0, 0
        for variant in self.variants:
            for seed in self.seeds:
                n += 1
                if n < done or os.path.isfile(self.run_path(f"{variant['name']}__seed{seed}")):
                    continue
                est = self.estimate(variant)[0]
                if est is None:
                    return ""
                left += est
        return f"; all runs left ~{fmt_duration(left)}"

    def copy_selected(self, variant, seed, cand, run_id, cfg):
        """The selected candidate's first-seed run IS the first-seed run: reuse it, do not train twice."""
        src = f"{variant['name']}@cand{cand}__seed{seed}"
        cfg = dict(cfg, checkpoint_dir=os.path.join(self.work_dir, run_id))
        digest = self.digest(variant, cfg)
        if not os.path.isfile(self.run_path(src)):
            return
        if self.finished(run_id, digest, self.resolve(variant, cfg)) is not None:  # copied before
            return
        # a first-seed run made before the search, with other settings, was moved to runs/stale/
        with open(self.run_path(src), encoding="utf-8") as f:
            record = json.load(f)
        self.copy_run(record, src, run_id, spec_hash=digest, selected_from=src)
