"""Hyper-parameter sweeps with Ray Tune; the CLI is ``python -m recbole_saerec.experiments.tune``.

The package, read in this order:

- ``space``: the search-space yaml -> (swept, fixed), Tune's sampling objects, intent sets and their tags;
- ``configs``: argv isolation for RecBole's Config, yaml values, the per-trial config;
- ``trial``: the trainable (one RecBole run per trial, reporting per epoch) and the best trial's test;
- ``driver``: the CLI, the Tuner (ASHA, FailureConfig, resume, ``--address``), the intent builds;
- ``report``: the results table, best.yaml, the test metrics, the plot.

The names below are the package's API (tests, scripts and users import them from here).
"""
from recbole_saerec.experiments.tune.configs import merge_config_files, parse_value, resolved_config, trial_config
from recbole_saerec.experiments.tune.driver import build_parser, main, make_setup, prepare_intents, run_sweep
from recbole_saerec.experiments.tune.report import (cluster_nodes, plot_params, results_rows, write_best_yaml,
                                                    write_outputs, write_table)
from recbole_saerec.experiments.tune.space import (DEFAULT_SPACE, SPACE_DIR, intent_combinations, intent_tag,
                                                   is_intent_key, load_space, one_at_a_time_points,
                                                   param_space)
from recbole_saerec.experiments.tune.trial import evaluate_best, load_trial_state, placement, train_trial

__all__ = ["DEFAULT_SPACE", "SPACE_DIR", "build_parser", "cluster_nodes", "evaluate_best", "intent_combinations",
           "intent_tag", "is_intent_key", "load_space", "one_at_a_time_points", "load_trial_state", "main", "make_setup",
           "merge_config_files", "param_space", "parse_value", "placement", "plot_params", "prepare_intents",
           "resolved_config", "results_rows", "run_sweep", "train_trial", "trial_config", "write_best_yaml",
           "write_outputs", "write_table"]
