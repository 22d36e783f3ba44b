"""Named benchmark variants (properties/benchmark/*.yaml): a base model + config overrides."""
import os

import yaml

from recbole_saerec.cli import UsageError
from recbole_saerec.experiments.benchmark.records import log
from recbole_saerec.settings import PROPERTIES_DIR

BENCHMARK_DIR = os.path.join(PROPERTIES_DIR, "benchmark")


# What a variant entry may hold (variants.yaml's header says what each means).
VARIANT_KEYS = {"model", "role", "description", "config", "search", "pretrain", "against", "keep_own_as"}


def load_registry(paths=None, extra=()):
    """name -> variant dict, from every yaml in properties/benchmark/ (or `paths`), then the `extra`
    files (a user's --variants: they add variants or override ours by name)."""
    if paths is None:
        paths = sorted(os.path.join(BENCHMARK_DIR, f) for f in os.listdir(BENCHMARK_DIR) if f.endswith(".yaml"))
    paths = list(paths) + [p for p in extra if p]
    registry, where = {}, {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for name, spec in (yaml.safe_load(f) or {}).items():
                if not isinstance(spec, dict) or "model" not in spec:
                    raise UsageError(f"Variant '{name}' in {path} has no `model`.")
                unknown = sorted(set(spec) - VARIANT_KEYS)
                if unknown:
                    raise UsageError(f"Variant '{name}' in {path}: unknown key(s) {unknown}; a variant takes "
                                     f"{sorted(VARIANT_KEYS)} (see the comment at the top of variants.yaml).")
                registry[name] = {"config": {}, "role": None, "description": "", "search": None, "pretrain": None,
                                  "against": [], "keep_own_as": None, **spec}
                where[name] = path
    for name, spec in registry.items():
        refs = spec["against"]
        spec["against"] = [] if refs is None else [refs] if isinstance(refs, str) else list(refs)
        for ref in spec["against"]:
            if ref not in registry and not _is_model(ref):
                raise UsageError(f"Variant '{name}' in {where[name]}: against: '{ref}' is not a variant "
                                 f"nor a model name (variants: {', '.join(sorted(registry))}).")
        pin = spec["keep_own_as"]
        if pin is not None and (pin not in registry or registry[pin]["model"] != spec["model"]):
            raise UsageError(f"Variant '{name}' in {where[name]}: keep_own_as: '{pin}' must be a variant of the "
                             f"same model ({spec['model']}) whose config states {name}'s own settings.")
    return registry


def _is_model(name):
    """A plain model name (plugin or RecBole) also names a benchmark row: `--models=GRU4Rec`."""
    from recbole_saerec.utils import UnknownModelError, get_model

    try:
        get_model(name)
    except UnknownModelError:
        return False
    return True


def resolve_variant(name, registry):
    """A registered variant, or a plain model name (SAERec or any RecBole model) with its defaults."""
    if name in registry:
        variant = dict(registry[name], name=name)
    else:
        from recbole_saerec.utils import get_model

        get_model(name)  # a clear error for typos, before any run starts
        variant = {"name": name, "model": name, "config": {}, "search": None, "pretrain": None, "role": None,
                   "against": [], "keep_own_as": None,
                   "description": f"{name}, its RecBole/plugin defaults"}
        if name != "SAERec":
            # The protocol (split, masking, batch, lr, weight decay, early stopping) is shared through
            # the plugin's overall.yaml; the model's own hyperparameters (loss, dropout, size) are not.
            log(f"'{name}' is not a variant in {BENCHMARK_DIR}/variants.yaml: it shares the plugin's "
                f"protocol (overall.yaml) but keeps its model's own loss, dropout and sizes. "
                f"Register it there (as GRU4Rec is) to state and pin what the row runs with.")
    if variant["role"] is None:
        variant["role"] = "ours" if name == "SAERec" else "baseline"
    return variant
