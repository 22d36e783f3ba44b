"""Side-by-side benchmark: many models, one dataset, one protocol, several seeds.

    python -m recbole_saerec.experiments.benchmark --dataset=amazon-beauty \\
        --models=SAERec,SASRec,SASRec-CE,BERT4Rec,GRU4Rec,Caser,BPR --seeds=3 \\
        --out=docs/results/beauty --budget_epochs=20 [--config_files="a.yaml b.yaml"] [--key=value ...]

Every (model, seed) goes through :func:`recbole_saerec.quick_start.run` with the same
config chain (RecBole yaml -> plugin overall.yaml -> model yaml -> dataset yaml ->
``--config_files`` -> variant overrides -> ``--key=value``), so every model sees the
same split (leave-one-out by time), the same full-ranking evaluation and the same
early stopping on the VALID metric. Names are RecBole/plugin models or named variants
from ``properties/benchmark/variants.yaml`` (SAERec ablations, KMeans-Intent, SASRec-CE).

Outputs under ``--out`` (see docs/benchmark.md):

- ``runs/<variant>__seed<seed>.json``: one per finished run (metrics, resolved config,
  seed, versions, wall time, machine), written as soon as the run ends: a second
  invocation skips finished runs (resume) and re-runs those whose spec changed.
- ``runs/<variant>__seed<seed>.peruser.npz``: per-test-user Hit@K / NDCG@K of the best
  (valid-selected) checkpoint, for the per-user paired significance test.
- ``results.csv`` (one row per run), ``summary.csv`` (mean/std per variant),
  ``results.md`` (mean ± std table, best bold, significance), ``results.png``.
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
