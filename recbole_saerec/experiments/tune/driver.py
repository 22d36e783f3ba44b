"""Hyper-parameter sweeps with Ray Tune: one command on a laptop, a GPU box or a cluster.

    python -m recbole_saerec.experiments.tune --dataset=amazon-beauty --data_path=dataset
    python -m recbole_saerec.experiments.tune --dataset=ml-100k --space=my_space.yaml --gpus_per_trial=0.5 \\
        --max_epochs=50 --grace_period=5 --out=tune_ml100k
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
import datetime
import json
import os
import sys
import time

from recbole_saerec.experiments.tune.configs import POINT_KEY, isolated_argv, merge_config_files, parse_value
from recbole_saerec.experiments.tune.report import write_outputs
from recbole_saerec.experiments.tune.space import (DEFAULT_SPACE, intent_combinations, intent_tag, load_space,
                                                   one_at_a_time_points, param_space)
from recbole_saerec.experiments.tune.trial import train_trial
from recbole_saerec.fileio import write_json_atomic

SETUP_FILE = "sweep_setup.json"


def build_parser():
    p = argparse.ArgumentParser(prog="python -m recbole_saerec.experiments.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="SAERec", help="SAERec or any RecBole model name")
    p.add_argument("--dataset", default=None, help="dataset name (required unless --resume)")
    p.add_argument("--space", default=DEFAULT_SPACE, help="search-space yaml (default: %(default)s)")
    p.add_argument("--config_files", default=None, help="space-separated RecBole yaml files, fixed for all trials")
    p.add_argument("--num_samples", type=int, default=1,
                   help="samples per grid point (Tune's num_samples); 1 for a one_at_a_time space")
    p.add_argument("--seed_spread", type=float, default=None,
                   help="the metric's standard deviation over seeds at one config, measured beforehand: drawn "
                        "as error bars on the plot, and the yardstick the results page compares axes with")
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
    swept, space_fixed, design = load_space(args.space)
    if design == "one_at_a_time" and args.num_samples != 1:
        raise SystemExit(f"error: {args.space} is a one_at_a_time design (each point once, same seed): "
                         f"--num_samples must be 1, got {args.num_samples}; rerun points with another --seed instead.")
    config_dict = merge_config_files(args.config_files.split() if args.config_files else None)
    config_dict.update(space_fixed)
    config_dict.update(extra)
    for key in ("epochs", "eval_step"):
        config_dict.pop(key, None)
    with isolated_argv([]):
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
        "design": design, "points": one_at_a_time_points(swept) if design == "one_at_a_time" else None,
        "seed_spread": args.seed_spread,
        "metric": config["valid_metric"].lower(), "max_epochs": args.max_epochs,
        "grace_period": args.grace_period, "reduction_factor": args.reduction_factor,
        "num_samples": args.num_samples, "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial, "max_concurrent_trials": args.max_concurrent_trials,
        "needs_intents": needs_intents, "intent_dirs": {},
        "command": "python -m recbole_saerec.experiments.tune " + " ".join(sys.argv[1:] if argv is None else argv),
    }


def prepare_intents(setup, builder=None, log=print):
    """Build each distinct intent artefact set once (driver side), as any run would
    (quick_start.ensure_intents, with the dataset's shared embedding cache); record tag -> directory."""
    if not setup["needs_intents"]:
        return
    from recbole_saerec.config import Config
    from recbole_saerec.quick_start import ensure_intents

    base = setup["config_dict"]
    for values in intent_combinations({k: tuple(v) for k, v in setup["swept"].items()}, setup.get("points")):
        tag = intent_tag(values, base)
        # the user named one set for the whole sweep, or one folder per swept combination
        intent_dir = base["intent_dir"] if not values and base.get("intent_dir") else \
            os.path.join(base["intent_root"], setup["dataset"], tag)
        with isolated_argv([]):
            config = Config(model=setup["model"], dataset=setup["dataset"],
                            config_dict=dict(base, **values, intent_dir=intent_dir, intent_autobuild=True))
        setup["intent_dirs"][tag] = ensure_intents(config, shared_cache=True, builder=builder,
                                                   log=lambda line: log(f"[tune] {tag} {line}"))


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
            write_json_atomic(os.path.join(exp_path, SETUP_FILE), setup)
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=setup["max_epochs"],
                                  grace_period=min(setup["grace_period"], setup["max_epochs"]),
                                  reduction_factor=setup["reduction_factor"])
        swept = {k: tuple(v) for k, v in setup["swept"].items()}
        # a one-at-a-time design: Tune's grid over the points' indices (trial_params maps them back), so
        # that --max_concurrent_trials, resume and the reports work as for any grid
        space = {POINT_KEY: tune.grid_search(list(range(len(setup["points"]))))} if setup.get("points") \
            else param_space(swept)
        samples = 1 if setup.get("points") else setup["num_samples"]
        tuner = tune.Tuner(
            _trainable(setup),
            param_space=space,
            tune_config=tune.TuneConfig(metric=setup["metric"], mode="max", scheduler=scheduler,
                                        num_samples=samples, max_concurrent_trials=setup["max_concurrent_trials"]),
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


def main(argv=None):
    summary = run_sweep(argv)
    return 0 if summary["finished"] else 1


if __name__ == "__main__":
    sys.exit(main())
