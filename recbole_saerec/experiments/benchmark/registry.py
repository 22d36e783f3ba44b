"""Named benchmark variants (properties/benchmark/*.yaml): a base model + config overrides."""
import os

import yaml

BENCHMARK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))),
                             "properties", "benchmark")


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
