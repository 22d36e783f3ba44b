"""The search space: a yaml of config keys -> (swept, fixed), Tune's sampling objects, intent sets.

A swept intent-construction key (``sae_k``, ``sae_n_latents``, ...) names an artefact
set that the driver builds once before the trials; `intent_tag` names that set.

Two designs: ``grid`` (the default: every combination of the grid keys, as Tune crosses them)
and ``one_at_a_time`` (each grid key varies alone while the others stay at their FIRST value,
the centre: 1 + sum(len - 1) trials instead of the product; what a CPU budget affords, and it
answers "does this axis matter" directly).
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
DESIGNS = ("grid", "one_at_a_time")
DESIGN_KEY = "design"  # the one top-level key of a space yaml that is not a config key

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
    """Read a space yaml. Returns (swept, fixed, design): swept = {key: (kind, values)},
    fixed = {key: value}, design = 'grid' unless it says `design: one_at_a_time` (checked
    against its keys)."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a search space is a mapping of config keys, got {type(raw).__name__}.")
    design = raw.get(DESIGN_KEY, "grid")
    if design not in DESIGNS:
        raise ValueError(f"{path}: {DESIGN_KEY}: {design!r} is not one of {DESIGNS}.")
    swept, fixed = {}, {}
    for key, spec in raw.items():
        if key == DESIGN_KEY:
            continue
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
    if design == "one_at_a_time":
        other = sorted(k for k, (kind, _) in swept.items() if kind != "grid")
        if other:
            raise ValueError(f"{path}: design one_at_a_time varies grid keys around their first value; "
                             f"{', '.join(other)} {'is' if len(other) == 1 else 'are'} not a grid (write {{grid: [...]}}).")
    return swept, fixed, design


def one_at_a_time_points(swept):
    """The trials of a one-at-a-time design: the centre (every grid's first value), then each
    key's other values with every other key at the centre. Duplicate values are dropped."""
    centre = {key: values[0] for key, (_, values) in swept.items()}
    points = [dict(centre)]
    for key, (_, values) in swept.items():
        for value in list(dict.fromkeys(values))[1:]:
            points.append(dict(centre, **{key: value}))
    return points


def param_space(swept):
    from ray import tune

    make = {"grid": tune.grid_search, "choice": tune.choice,
            "uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v)}
    return {key: make[kind](values) for key, (kind, values) in swept.items()}


def intent_combinations(swept, points=None):
    """Every distinct assignment of the swept intent keys (the artefact sets to build): all
    combinations, or only those the design's `points` use."""
    keys = sorted(k for k in swept if is_intent_key(k))
    if not keys:
        return [{}]
    if points is not None:
        seen = {json.dumps({k: p[k] for k in keys}, sort_keys=True, default=str): {k: p[k] for k in keys}
                for p in points}
        return list(seen.values())
    values = [swept[k][1] for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


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
