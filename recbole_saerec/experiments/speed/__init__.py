"""Side-by-side speed benchmark, SASRec vs SAERec; the CLI is ``python -m recbole_saerec.experiments.speed``.

The package, read in this order:

- ``measure``: peak memory (RSS sampler / CUDA max allocated) and the alternated train / eval / epoch timings;
- ``intents_timing``: SAERec's intents, built and timed per stage, given, or synthetic;
- ``plan``: the set-up (one config per model, the data and batches shared by all, the same seed);
- ``report``: the result rows, the ratios vs SASRec, the table, speed.csv and speed.json;
- ``cli``: the flags and ``main`` (what the module docstring there describes).
"""
from recbole_saerec.experiments.speed.cli import MODELS, main, parse_args
from recbole_saerec.experiments.speed.intents_timing import (dataset_item_tokens, given_intent_info, prepare_intents,
                                                             time_intent_build, write_synthetic_intents)
from recbole_saerec.experiments.speed.measure import PeakRSS, median, peak_memory, train_step
from recbole_saerec.experiments.speed.plan import build_configs, model_plan, shared_config
from recbole_saerec.experiments.speed.report import per_round_ratio, result_row, write_csv

__all__ = ["MODELS", "PeakRSS", "build_configs", "dataset_item_tokens", "given_intent_info", "main", "median",
           "model_plan", "parse_args", "peak_memory", "per_round_ratio", "prepare_intents", "result_row",
           "shared_config", "time_intent_build", "train_step", "write_csv", "write_synthetic_intents"]
