"""Hyper-parameter sweeps with Ray Tune (issue 6): one command on a laptop, a GPU box or a cluster.

    python -m recbole_saerec.experiments.tune --dataset=amazon-beauty --data_path=dataset
    python -m recbole_saerec.experiments.tune --dataset=ml-100k --space=my_space.yaml --gpus_per_trial=0.5 \\
        --max_epochs=50 --grace_period=5 --out=docs/results/tune-ml100k
    RAY_ADDRESS=auto python -m recbole_saerec.experiments.tune --dataset=amazon-beauty --storage_path=/shared/tune
    python -m recbole_saerec.experiments.tune --resume --storage_path=saved/tune --name=SAERec-amazon-beauty-...

Every other ``--key=value`` is a RecBole/plugin config key, fixed for all trials
(``--epochs`` is ignored: ``--max_epochs`` is the trial budget). See docs/tune.md.

How a sweep runs:

1. The driver merges ``--config_files``, the fixed keys of the space yaml and the
   extra ``--key=value`` into one config dict, with ``data_path`` and
   ``intent_root`` made absolute (trials run in other working directories, or on
   other machines that see the same paths).
2. Every distinct set of intent-construction values in the space (``sae_k``,
   ``sae_n_latents``, ...) is built ONCE, driver side, by
   ``recbole_saerec.intents.build.build_intents`` into
   ``<intent_root>/<dataset>/<tag>``; a trial sets ``intent_dir`` to the set its
   values name. A set that is already there (its manifest exists) is reused.
3. Each trial is RecBole's own ``Trainer.fit`` (the exact path of
   ``quick_start.run``) with a ``callback_fn`` that, after each epoch's
   validation, saves a checkpoint (model + optimizer + epoch + the best epoch's
   weights) and calls ``tune.report`` with the VALIDATION metrics. ASHA stops
   bad trials on that; a restored trial continues from its checkpoint.
4. At the end: results table (CSV + Markdown), the best config as a RecBole yaml
   (``run_recbole_saerec.py --config_files=<it>`` retrains it), its TEST metrics
   (the best trial's best-epoch weights, evaluated once, no retraining) and a PNG
   of the metric against each swept key. Written to the experiment directory and
   to ``--out``.
"""
import argparse
import contextlib
import datetime
import hashlib
import itertools
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time

import yaml

SPACE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "properties", "tune")
DEFAULT_SPACE = os.path.join(SPACE_DIR, "saerec_space.yaml")
SPACE_KINDS = ("grid", "choice", "uniform", "loguniform")
CKPT_FILE = "trial_state.pt"
SETUP_FILE = "sweep_setup.json"

# Keys that start like intent-construction keys but only change how the MODEL reads
# the artefacts (or where they are): no rebuild for these.
INTENT_RUNTIME_KEYS = {"intent_dir", "intent_root", "intent_tag", "intent_autobuild", "intent_layers",
                       "intent_query", "intent_query_source", "intent_check_encoder"}
# ... and intent keys that change how fast a build runs, not what it builds (no rebuild, not in the tag).
INTENT_SPEED_KEYS = {"intent_cache_dir", "intent_num_threads", "intent_encode_chunk", "intent_encode_batch_size"}
INTENT_KEY_PREFIXES = ("sae_", "intent_", "judge_")
TAG_ABBREV = {"sae_k": "k", "sae_n_latents": "m"}
NODE_ID_CHARS = 8  # Ray node ids are 56 hex digits; the tables show the first 8


# --------------------------------------------------------------------------- space

def is_intent_key(key):
    """True for keys that change the intent artefacts (a new build per value)."""
    return (key.startswith(INTENT_KEY_PREFIXES) and key not in INTENT_RUNTIME_KEYS
            and key not in INTENT_SPEED_KEYS)


def _number(value):
    """YAML 1.1 reads `1e-4` as a string; numbers written that way become floats."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_space(path):
    """Read a space yaml. Returns (swept, fixed): swept = {key: (kind, values)}, fixed = {key: value}."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a search space is a mapping of config keys, got {type(raw).__name__}.")
    swept, fixed = {}, {}
    for key, spec in raw.items():
        if isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in SPACE_KINDS:
            kind, values = next(iter(spec.items()))
            values = [_number(v) for v in (values if isinstance(values, list) else [values])]
            if kind in ("grid", "choice") and not values:
                raise ValueError(f"{path}: {key}: {kind} needs at least one value.")
            if kind in ("uniform", "loguniform"):
                if len(values) != 2 or not all(isinstance(v, (int, float)) for v in values):
                    raise ValueError(f"{path}: {key}: {kind} takes [low, high], got {values}.")
                if kind == "loguniform" and min(values) <= 0:
                    raise ValueError(f"{path}: {key}: loguniform needs low > 0, got {values}.")
                if is_intent_key(key):
                    raise ValueError(f"{path}: {key} builds intent artefacts, so it takes grid or choice "
                                     f"values (each is built once before the trials), not {kind}.")
            swept[key] = (kind, values)
        elif isinstance(spec, dict) and any(k in SPACE_KINDS for k in spec):
            raise ValueError(f"{path}: {key}: write exactly one of {SPACE_KINDS}, e.g. {{grid: [1, 2]}}.")
        else:
            fixed[key] = spec
    return swept, fixed


def param_space(swept):
    from ray import tune

    make = {"grid": tune.grid_search, "choice": tune.choice,
            "uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v)}
    return {key: make[kind](values) for key, (kind, values) in swept.items()}


def intent_combinations(swept):
    """Every distinct assignment of the swept intent keys (the artefact sets to build)."""
    keys = sorted(k for k in swept if is_intent_key(k))
    values = [swept[k][1] for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)] if keys else [{}]


def intent_tag(intent_values, fixed_config):
    """Readable part from the swept intent keys (k8-m512) + a short hash of every intent key.

    The hash covers the fixed intent-construction keys too (encoder, corpus, ...),
    so a build with another encoder never hides behind the same readable name.
    """
    readable = "-".join(f"{TAG_ABBREV.get(k, k.split('_', 1)[-1])}{intent_values[k]}" for k in sorted(intent_values))
    everything = {k: v for k, v in fixed_config.items() if is_intent_key(k)}
    everything.update(intent_values)
    digest = hashlib.sha1(json.dumps(everything, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{readable}-{digest}" if readable else f"fixed-{digest}"


# --------------------------------------------------------------------------- configs

@contextlib.contextmanager
def _argv(args):
    """RecBole's Config parses sys.argv; in a Ray worker (and in this CLI) that is not its command line.

    It also writes CUDA_VISIBLE_DEVICES from gpu_id: on the driver, that must not
    narrow the GPUs that Ray (or a later build) sees, so the variable is restored.
    """
    saved, cuda = sys.argv, os.environ.get("CUDA_VISIBLE_DEVICES")
    sys.argv = [saved[0] if saved else "recbole_saerec.experiments.tune", *args]
    try:
        yield
    finally:
        sys.argv = saved
        if cuda is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = cuda


def _yaml_loader():
    from recbole_saerec.config import Config

    return Config._build_yaml_loader(None)  # RecBole's own float-aware loader


def parse_value(text):
    """A command-line value as RecBole would read it from a yaml."""
    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError:
        return text


def merge_config_files(paths):
    out = {}
    for path in paths or []:
        with open(path, encoding="utf-8") as f:
            out.update(yaml.load(f, Loader=_yaml_loader()) or {})
    return out


def resolved_config(setup, params):
    """The portable config of one trial: what the best-config yaml holds."""
    cfg = dict(setup["config_dict"])
    cfg.update(params)
    cfg["epochs"] = setup["max_epochs"]
    cfg["eval_step"] = 1
    if setup["needs_intents"]:
        cfg["intent_dir"] = setup["intent_dirs"][intent_tag(
            {k: params[k] for k in params if is_intent_key(k)}, setup["config_dict"])]
    return cfg


def trial_config(setup, params):
    cfg = resolved_config(setup, params)
    cfg.update(show_progress=False, intent_autobuild=False,
               checkpoint_dir=os.path.abspath("recbole_checkpoints"))
    if not setup["gpus_per_trial"]:
        cfg["use_gpu"] = False
    return cfg


# --------------------------------------------------------------------------- the trial

def _plain(value):
    return float(value) if isinstance(value, (int, float)) else value


def _save_trial_state(path, trainer, epoch_idx, best):
    import torch

    torch.save({
        "epoch": epoch_idx,
        "cur_step": trainer.cur_step,
        "best_valid_score": float(trainer.best_valid_score),
        "best_valid_result": {k: _plain(v) for k, v in dict(trainer.best_valid_result or {}).items()},
        "model": trainer.model.state_dict(),
        "other_parameter": trainer.model.other_parameter(),
        "optimizer": trainer.optimizer.state_dict(),
        "best_epoch": best["epoch"],
        "best_model": best["state"],
        "best_other_parameter": best["other"],
        "torch_rng": torch.get_rng_state(),
    }, path)


def load_trial_state(checkpoint):
    """The state dict inside a tune.Checkpoint written by a trial of this module."""
    import torch

    with checkpoint.as_directory() as d:
        # A file the sweep wrote itself (plain tensors and dicts); see trainer.load_checkpoint.
        return torch.load(os.path.join(d, CKPT_FILE), map_location="cpu", weights_only=False)


def _clone_state(model):
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def train_trial(params, setup):
    """Tune function trainable: one RecBole Trainer.fit, reporting after every validation."""
    import torch
    from ray import tune

    from recbole_saerec.quick_start import build_model, prepare
    from recbole_saerec.utils import get_trainer

    torch.set_num_threads(max(1, int(math.ceil(setup["cpus_per_trial"]))))
    with _argv([]):
        config, _, train_data, valid_data, _ = prepare(setup["model"], setup["dataset"], None,
                                                       trial_config(setup, params))
        where = placement(config)  # inside _argv: the CUDA_VISIBLE_DEVICES that torch saw
    model = build_model(config, train_data)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    metric = config["valid_metric"].lower()

    best = {"epoch": -1, "state": None, "other": None}
    resumed_from = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        state = load_trial_state(checkpoint)
        model.load_state_dict(state["model"])
        model.load_other_parameter(state["other_parameter"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.start_epoch = resumed_from = state["epoch"] + 1
        trainer.cur_step = state["cur_step"]
        trainer.best_valid_score = state["best_valid_score"]
        trainer.best_valid_result = state["best_valid_result"]
        best = {"epoch": state["best_epoch"], "state": state["best_model"], "other": state["best_other_parameter"]}
        torch.set_rng_state(state["torch_rng"])

    last_result = {}
    valid_epoch = trainer._valid_epoch

    def remember_valid(*args, **kwargs):
        score, result = valid_epoch(*args, **kwargs)
        last_result.clear()
        last_result.update(result)
        return score, result

    trainer._valid_epoch = remember_valid

    def report(epoch_idx, valid_score):
        if trainer.cur_step == 0:  # RecBole's early_stopping resets it on an improvement
            best.update(epoch=epoch_idx, state=_clone_state(model), other=model.other_parameter())
        metrics = {k.lower(): _plain(v) for k, v in last_result.items()}
        metrics.update({
            metric: float(valid_score),
            "epoch": epoch_idx + 1,
            "best_score": float(trainer.best_valid_score),
            "best_epoch": best["epoch"] + 1,
            "train_loss": _plain(trainer.train_loss_dict.get(epoch_idx, float("nan"))),
            "patience_stop": trainer.cur_step > trainer.stopping_step,
            "resumed_from": resumed_from,
            **where,
        })
        with tempfile.TemporaryDirectory(prefix="saerec-ckpt-") as tmp:
            _save_trial_state(os.path.join(tmp, CKPT_FILE), trainer, epoch_idx, best)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    trainer.fit(train_data, valid_data, verbose=True, saved=False, show_progress=False, callback_fn=report)


def placement(config):
    """Where a trial runs: its Ray node, the GPUs Ray assigned, and what RecBole made of them.

    Ray sets CUDA_VISIBLE_DEVICES to the GPU(s) it assigned to the trial; the plugin's
    Config keeps that value as `gpu_id` instead of overwriting the variable from the
    yaml's gpu_id (RecBole's behaviour, which would put every trial on GPU 0).
    """
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(),
            "ray_gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "recbole_gpu_id": str(config["gpu_id"]), "device": str(config["device"])}


def evaluate_best(setup, params, checkpoint):
    """Valid (as a check) and TEST metrics of a trial's best-epoch weights; no retraining."""
    import torch

    from recbole_saerec.quick_start import build_model, prepare
    from recbole_saerec.utils import get_trainer

    torch.set_num_threads(max(1, int(math.ceil(setup["cpus_per_trial"]))))
    state = load_trial_state(checkpoint)
    with tempfile.TemporaryDirectory(prefix="saerec-eval-") as tmp, _argv([]):
        cfg = trial_config(setup, params)
        cfg["checkpoint_dir"] = tmp
        config, _, train_data, valid_data, test_data = prepare(setup["model"], setup["dataset"], None, cfg)
        model = build_model(config, train_data)
        model.load_state_dict(state["best_model"])
        model.load_other_parameter(state["best_other_parameter"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        valid = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
        test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    return {"best_epoch": state["best_epoch"] + 1, "valid": {k: _plain(v) for k, v in valid.items()},
            "test": {k: _plain(v) for k, v in test.items()}}


# --------------------------------------------------------------------------- driver

def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="SAERec", help="SAERec or any RecBole model name")
    p.add_argument("--dataset", default=None, help="dataset name (required unless --resume)")
    p.add_argument("--space", default=DEFAULT_SPACE, help="search-space yaml (default: %(default)s)")
    p.add_argument("--config_files", default=None, help="space-separated RecBole yaml files, fixed for all trials")
    p.add_argument("--num_samples", type=int, default=1, help="samples per grid point (Tune's num_samples)")
    p.add_argument("--max_epochs", type=int, default=50, help="epochs per trial at most (ASHA's max_t)")
    p.add_argument("--grace_period", type=int, default=5, help="ASHA: epochs before a trial may be stopped")
    p.add_argument("--reduction_factor", type=float, default=3, help="ASHA: keep 1/reduction_factor per rung")
    p.add_argument("--cpus_per_trial", type=float, default=1)
    p.add_argument("--gpus_per_trial", type=float, default=0, help="GPUs per trial; fractions share a GPU (0.5)")
    p.add_argument("--max_concurrent_trials", type=int, default=None)
    p.add_argument("--num_cpus", type=int, default=None, help="local Ray only: CPUs Ray may use (default: all)")
    p.add_argument("--address", default=None,
                   help="join an existing Ray cluster (auto | ip:port | ray://host:10001); RAY_ADDRESS works too")
    p.add_argument("--storage_path", default="saved/tune",
                   help="where Tune keeps experiments (local path, made absolute; or s3://, gs://)")
    p.add_argument("--name", default=None, help="experiment name (default: <model>-<dataset>-<time>)")
    p.add_argument("--resume", action="store_true",
                   help="restore the experiment --storage_path/--name (default: the newest one) and finish it")
    p.add_argument("--out", default=None, help="also copy the table, best yaml, test metrics and plot here")
    p.add_argument("--no_test", action="store_true", help="skip the final test evaluation of the best config")
    p.add_argument("--verbose", type=int, default=1, help="Tune verbosity 0-2")
    return p


def _storage_uri(path):
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def _latest_experiment(storage):
    if "://" in storage or not os.path.isdir(storage):
        return None
    found = [os.path.join(storage, d) for d in os.listdir(storage)
             if os.path.isfile(os.path.join(storage, d, SETUP_FILE))]
    return os.path.basename(max(found, key=os.path.getmtime)) if found else None


def make_setup(args, extra, argv=None):
    """Everything a trial needs, resolved once on the driver (absolute paths, merged configs)."""
    from recbole_saerec.config import Config
    from recbole_saerec.utils import get_model

    if not args.dataset:
        raise SystemExit("error: --dataset is required (or --resume to finish an earlier sweep).")
    swept, space_fixed = load_space(args.space)
    config_dict = merge_config_files(args.config_files.split() if args.config_files else None)
    config_dict.update(space_fixed)
    config_dict.update(extra)
    for key in ("epochs", "eval_step"):
        config_dict.pop(key, None)
    with _argv([]):
        config = Config(model=args.model, dataset=args.dataset, config_dict=config_dict)
    config_dict["data_path"] = os.path.dirname(os.path.abspath(config["data_path"]))
    config_dict["seed"] = config["seed"]
    config_dict["reproducibility"] = config["reproducibility"]
    needs_intents = bool(getattr(get_model(args.model), "needs_intents", False))
    if needs_intents:
        root = config["intent_root"] if "intent_root" in config and config["intent_root"] else "saved_intents"
        config_dict["intent_root"] = os.path.abspath(root)
        if config_dict.get("intent_dir"):
            config_dict["intent_dir"] = os.path.abspath(config_dict["intent_dir"])
    return {
        "model": args.model, "dataset": args.dataset, "config_dict": config_dict,
        "swept": {k: list(v) for k, v in swept.items()}, "space_file": os.path.abspath(args.space),
        "metric": config["valid_metric"].lower(), "max_epochs": args.max_epochs,
        "grace_period": args.grace_period, "reduction_factor": args.reduction_factor,
        "num_samples": args.num_samples, "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial, "max_concurrent_trials": args.max_concurrent_trials,
        "needs_intents": needs_intents, "intent_dirs": {},
        "command": "python -m recbole_saerec.experiments.tune " + " ".join(sys.argv[1:] if argv is None else argv),
    }


def prepare_intents(setup, builder=None, log=print):
    """Build each distinct intent artefact set once (driver side); record tag -> directory."""
    if not setup["needs_intents"]:
        return
    from recbole_saerec.artefacts import MANIFEST, shared_cache_dir
    from recbole_saerec.config import Config

    base = setup["config_dict"]
    swept = {k: tuple(v) for k, v in setup["swept"].items()}
    combos = intent_combinations(swept)
    for values in combos:
        tag = intent_tag(values, base)
        if not values and base.get("intent_dir"):
            intent_dir = base["intent_dir"]  # the user named one set for the whole sweep
        else:
            intent_dir = os.path.join(base["intent_root"], setup["dataset"], tag)
        setup["intent_dirs"][tag] = intent_dir
        if os.path.isfile(os.path.join(intent_dir, MANIFEST)):
            log(f"[tune] intents {tag}: cached in {intent_dir}")
            continue
        if builder is None:
            from recbole_saerec.intents.build import build_intents as builder
        log(f"[tune] intents {tag}: building in {intent_dir}")
        start = time.time()
        build_cfg = dict(base, **values, intent_dir=intent_dir)
        # One cache for all builds of the dataset (sweeps, benchmark, the default build): the text
        # embeddings are computed once, not once per k.
        if not build_cfg.get("intent_cache_dir"):
            build_cfg["intent_cache_dir"] = shared_cache_dir(base["intent_root"], setup["dataset"])
        with _argv([]):
            config = Config(model=setup["model"], dataset=setup["dataset"], config_dict=build_cfg)
        builder(config, intent_dir=intent_dir, progress=True)
        log(f"[tune] intents {tag}: built in {time.time() - start:.0f}s")


def _trainable(setup):
    from ray import tune

    resources = {"cpu": setup["cpus_per_trial"], "gpu": setup["gpus_per_trial"]}
    return tune.with_resources(tune.with_parameters(train_trial, setup=setup), resources)


def _init_ray(args):
    import ray

    if ray.is_initialized():
        return
    address = args.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)  # an existing cluster, as it is: its nodes, its resources
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False)


def run_sweep(argv=None, callbacks=None, intent_builder=None):
    """The CLI as a function. Returns a summary dict (paths, best trial, test metrics)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    args, rest = build_parser().parse_known_args(argv)
    extra = {}
    for item in rest:
        if not item.startswith("--") or "=" not in item:
            raise SystemExit(f"error: unrecognised argument {item!r} (config keys are written --key=value).")
        key, value = item[2:].split("=", 1)
        extra[key] = parse_value(value)
    storage = _storage_uri(args.storage_path)
    # num_to_keep forces an experiment snapshot per epoch: intended here (epochs are long), so no warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    _init_ray(args)
    started = time.time()

    if args.resume:
        name = args.name or _latest_experiment(storage)
        if not name:
            raise SystemExit(f"error: no experiment to resume under {storage} (give --name).")
        exp_path = os.path.join(storage, name)
        with open(os.path.join(exp_path, SETUP_FILE), encoding="utf-8") as f:
            setup = json.load(f)
        print(f"[tune] resuming {exp_path}")
        tuner = tune.Tuner.restore(exp_path, trainable=_trainable(setup), resume_errored=True)
    else:
        setup = make_setup(args, extra, argv)
        name = args.name or f"{args.model}-{args.dataset}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
        exp_path = os.path.join(storage, name)
        _check_resources(setup)
        prepare_intents(setup, builder=intent_builder)
        setup["name"], setup["storage_path"], setup["out"] = name, storage, args.out
        if "://" not in storage:
            os.makedirs(exp_path, exist_ok=True)
            with open(os.path.join(exp_path, SETUP_FILE), "w", encoding="utf-8") as f:
                json.dump(setup, f, indent=1)
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=setup["max_epochs"],
                                  grace_period=min(setup["grace_period"], setup["max_epochs"]),
                                  reduction_factor=setup["reduction_factor"])
        tuner = tune.Tuner(
            _trainable(setup),
            param_space=param_space({k: tuple(v) for k, v in setup["swept"].items()}),
            tune_config=tune.TuneConfig(metric=setup["metric"], mode="max", scheduler=scheduler,
                                        num_samples=setup["num_samples"],
                                        max_concurrent_trials=setup["max_concurrent_trials"]),
            run_config=tune.RunConfig(
                name=name, storage_path=storage, callbacks=callbacks, verbose=args.verbose,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                failure_config=tune.FailureConfig(max_failures=1)),
        )
    grid = tuner.fit()
    out = args.out or setup.get("out")
    return write_outputs(setup, grid, exp_path, out, run_test=not args.no_test,
                         wall_s=time.time() - started + (_previous_wall_s(exp_path) if args.resume else 0.0))


def _previous_wall_s(exp_path):
    """Wall time of the earlier invocations of a resumed sweep (from its last summary.json)."""
    try:
        with open(os.path.join(exp_path, "summary.json"), encoding="utf-8") as f:
            return float(json.load(f).get("wall_s") or 0.0)
    except (OSError, ValueError):
        return 0.0


def _check_resources(setup):
    import ray

    total = ray.cluster_resources()
    if setup["gpus_per_trial"] and total.get("GPU", 0) < setup["gpus_per_trial"]:
        print(f"[tune] warning: --gpus_per_trial={setup['gpus_per_trial']} but the Ray cluster has "
              f"{total.get('GPU', 0)} GPU(s): trials wait until an autoscaler adds GPUs.")
    if total.get("CPU", 0) < setup["cpus_per_trial"]:
        print(f"[tune] warning: --cpus_per_trial={setup['cpus_per_trial']} > cluster CPUs {total.get('CPU', 0)}.")


# --------------------------------------------------------------------------- outputs

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
        params = {k: (result.config or {}).get(k) for k in setup["swept"]}
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
    done = [r for r in rows if r["epochs_run"] > 0]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys or [None]):
        if key is None:
            ax.text(0.5, 0.5, "nothing swept", ha="center")
            continue
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
        ax.scatter([x for x, e in zip(xs, early) if not e], [r[f"best_{metric}"] for r, e in zip(done, early) if not e],
                   color="C0", label="ran to the end", zorder=2)
        ax.scatter([x for x, e in zip(xs, early) if e], [r[f"best_{metric}"] for r, e in zip(done, early) if e],
                   color="C3", marker="x", label="stopped early", zorder=2)
        ax.set_xlabel(key)
        ax.set_ylabel(f"best valid {metric}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{setup['model']} on {setup['dataset']}: {len(done)} trials", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _machine():
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, {gpu}"


def write_outputs(setup, grid, exp_path, out=None, run_test=True, wall_s=None):
    import ray

    metric = setup["metric"]
    rows = results_rows(setup, grid, exp_path)
    finished = all(r["status"] in ("TERMINATED", "ERROR") for r in rows)
    local_exp = "://" not in exp_path
    target = exp_path if local_exp else tempfile.mkdtemp(prefix="saerec-tune-")
    columns = ["trial_id", *setup["swept"], f"best_{metric}", rung_column(setup), "best_epoch", "epochs_run",
               "stopped_early",
               "status", "time_s", "resumed_from_epoch", "nodes", "gpus"]
    nodes = cluster_nodes(rows)
    summary = {"experiment": exp_path, "metric": metric, "finished": finished, "n_trials": len(rows), "wall_s": wall_s,
               "rows": [{c: r[c] for c in columns} for r in rows], "nodes": nodes}
    best = next((r for r in rows if r["epochs_run"] > 0 and r["_result"].checkpoint), None)
    files = {"csv": "results.csv", "md": "results.md", "yaml": "best.yaml", "test": "best_test.json",
             "png": "metric_vs_params.png"}
    header = [f"# Ray Tune sweep: {setup['model']} on {setup['dataset']}", "",
              f"- command: `{setup.get('command', '')}`",
              f"- machine: {_machine()}; Ray {ray.__version__}",
              f"- budget: max {setup['max_epochs']} epochs/trial, ASHA grace {setup['grace_period']}, "
              f"reduction factor {setup['reduction_factor']}, {setup['cpus_per_trial']} CPU + "
              f"{setup['gpus_per_trial']} GPU per trial",
              f"- metric: valid {metric} (best epoch per trial; `{rung_column(setup)}`: at epoch "
              f"{setup['grace_period']}, the first ASHA rung, reached by every trial); {len(rows)} trials"
              + (f"; wall time {wall_s / 60:.1f} min (all invocations)" if wall_s else ""), ""]
    if best is not None:
        params = {k: best[k] for k in setup["swept"]}
        summary["best"] = {"trial_id": best["trial_id"], "params": params, f"valid_{metric}": best[f"best_{metric}"],
                           "best_epoch": best["best_epoch"]}
        write_best_yaml(setup, best["_result"].config, os.path.join(target, files["yaml"]),
                        f"trial {best['trial_id']}, valid {metric} {best[f'best_{metric}']:.4f}")
        plot_params(rows, setup, os.path.join(target, files["png"]))
        if run_test and finished:
            remote = ray.remote(num_cpus=setup["cpus_per_trial"], num_gpus=setup["gpus_per_trial"])(evaluate_best)
            test = ray.get(remote.remote(setup, best["_result"].config, best["_result"].checkpoint))
            test["trial_id"] = best["trial_id"]
            summary["best"]["test"] = test["test"]
            summary["best"]["valid_reloaded"] = test["valid"]
            with open(os.path.join(target, files["test"]), "w", encoding="utf-8") as f:
                json.dump(test, f, indent=1)
            header += [f"Best: trial {best['trial_id']} {params} -> valid {metric} "
                       f"{best[f'best_{metric}']:.4f} (epoch {best['best_epoch']}); TEST of its best-epoch weights: "
                       + ", ".join(f"{k} {v:.4f}" for k, v in test["test"].items()), ""]
    if not finished:
        header += [f"**Interrupted**: some trials did not finish. Resume with "
                   f"`python -m recbole_saerec.experiments.tune --resume --storage_path={setup.get('storage_path')} "
                   f"--name={setup.get('name')}`", ""]
    header += ["Ray nodes (`nodes`/`gpus` columns below: the nodes a trial reported from, and the "
               "CUDA_VISIBLE_DEVICES it ran with, in order):", "",
               "| node | name | address | head | CPUs | GPUs | alive | trials |", "|---|---|---|---|---|---|---|---|"]
    header += [f"| {n['node']} | {n['name']} | {n['address']} | {'yes' if n['head'] else 'no'} | {n['cpus']:g} | "
               f"{n['gpus']:g} | {'yes' if n['alive'] else 'no'} | {n['trials']} |" for n in nodes] + [""]
    write_table(rows, columns, os.path.join(target, files["csv"]), os.path.join(target, files["md"]), header,
                metric_columns=(f"best_{metric}", rung_column(setup)))
    with open(os.path.join(target, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, default=str)
    summary["files"] = {k: os.path.join(target, v) for k, v in files.items() if os.path.isfile(os.path.join(target, v))}
    if out:
        os.makedirs(out, exist_ok=True)
        for name in [*files.values(), "summary.json"]:
            if os.path.isfile(os.path.join(target, name)):
                shutil.copy2(os.path.join(target, name), os.path.join(out, name))
        summary["out"] = os.path.abspath(out)
    if not local_exp:
        print(f"[tune] outputs written to {target} (the experiment lives at {exp_path})")
    print(f"[tune] {len(rows)} trials; table: {os.path.join(target, files['md'])}")
    if "best" in summary:
        print(f"[tune] best: {summary['best']}")
    return summary


def main(argv=None):
    summary = run_sweep(argv)
    return 0 if summary["finished"] else 1


if __name__ == "__main__":
    sys.exit(main())
