"""The search space: a yaml of config keys -> (swept, fixed), Tune's sampling objects, intent sets.

A swept intent-construction key (``sae_k``, ``sae_n_latents``, ...) names an artefact
set that the driver builds once before the trials; `intent_tag` names that set.
"""
import hashlib
import itertools
import json
import os

import yaml

from recbole_saerec.settings import PROPERTIES_DIR

SPACE_DIR = os.path.join(PROPERTIES_DIR, "tune")
DEFAULT_SPACE = os.path.join(SPACE_DIR, "saerec_space.yaml")
SPACE_KINDS = ("grid", "choice", "uniform", "loguniform")

# Keys that start like intent-construction keys but only change how the MODEL reads
# the artefacts (or where they are): no rebuild for these.
INTENT_RUNTIME_KEYS = {"intent_dir", "intent_root", "intent_tag", "intent_autobuild", "intent_layers",
                       "intent_query", "intent_query_source", "intent_check_encoder"}
# ... and intent keys that change how fast a build runs, not what it builds (no rebuild, not in the tag).
INTENT_SPEED_KEYS = {"intent_cache_dir", "intent_num_threads", "intent_encode_chunk", "intent_encode_batch_size"}
INTENT_KEY_PREFIXES = ("sae_", "intent_", "judge_")
TAG_ABBREV = {"sae_k": "k", "sae_n_latents": "m"}


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
