"""Side-by-side benchmark: many models, one dataset, one protocol, several seeds.

The command, its flags and its outputs: :mod:`recbole_saerec.experiments.benchmark.cli`
(``python -m recbole_saerec.experiments.benchmark --help``); docs/benchmark.md.
"""
# The package, by seam: registry (named variants), records (run files: JSON, per-user rows, spec
# hashes), runner (one run and the whole plan, resumable), stats (per-user metrics, paired tests),
# report (tables, CSVs, plot, in-flight progress), cli. The names below are its public API.
from recbole_saerec.experiments.benchmark.records import (RUNS, USERS_FILE, file_sha1, fmt_duration, jsonable,
                                                          load_per_user, load_records, log, rename_variant, save_per_user,
                                                          spec_hash, write_json_atomic)
from recbole_saerec.experiments.benchmark.registry import BENCHMARK_DIR, load_registry, resolve_variant
from recbole_saerec.experiments.benchmark.report import (format_progress, markdown, plot, progress, report,
                                                    report_names, write_csvs)
from recbole_saerec.experiments.benchmark.runner import RUN_DEFAULTS, Benchmark, per_user_metrics, stopped_by
from recbole_saerec.experiments.benchmark.stats import (metric_keys, paired_seed_test, paired_user_test,
                                                        per_user_from_topk, seed_averaged_per_user, significance,
                                                        summarize)
from recbole_saerec.experiments.benchmark.cli import main, parse_args, parse_value

__all__ = ["RUNS", "USERS_FILE", "BENCHMARK_DIR", "RUN_DEFAULTS", "Benchmark", "file_sha1", "fmt_duration", "format_progress", "jsonable",
           "load_per_user", "load_records", "load_registry", "log", "main", "markdown", "metric_keys",
           "paired_seed_test", "paired_user_test", "parse_args", "parse_value", "per_user_from_topk",
           "per_user_metrics", "plot", "progress", "rename_variant", "report", "report_names", "resolve_variant", "save_per_user",
           "seed_averaged_per_user", "significance", "spec_hash", "stopped_by", "summarize", "write_csvs",
           "write_json_atomic"]
