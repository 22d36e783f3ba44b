"""Config plumbing shared by the driver, the trials and the report: argv isolation, yaml values, trial configs."""
import contextlib
import os
import sys

import yaml

from recbole_saerec.experiments.tune.space import intent_tag, is_intent_key


@contextlib.contextmanager
def isolated_argv(args):
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


POINT_KEY = "point"  # a one-at-a-time design's trials are Tune's grid over this index into setup["points"]


def trial_params(setup, params):
    """A trial's swept values: Tune's config as it is, or the design point its index names."""
    if setup.get("points") and POINT_KEY in (params or {}):
        return dict(setup["points"][params[POINT_KEY]])
    return dict(params or {})


def resolved_config(setup, params):
    """The portable config of one trial: what the best-config yaml holds."""
    params = trial_params(setup, params)
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
