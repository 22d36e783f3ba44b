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
import argparse
import os
import sys

import yaml

from recbole_saerec import cli
from recbole_saerec.experiments.benchmark.records import RUNS, log, rename_variant
from recbole_saerec.experiments.benchmark.registry import load_registry, resolve_variant
from recbole_saerec.experiments.benchmark.report import format_progress, headline, progress, report, report_names
from recbole_saerec.experiments.benchmark.runner import Benchmark, resolve_work_dir


def parse_value(text):
    """A command-line value as RecBole would read it (yaml scalars, lists, dicts)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", "-d", required=True)
    p.add_argument("--models", "-m", help="comma-separated model or variant names (not needed with --progress)")
    p.add_argument("--seeds", default="3", help="a count N (seeds seed_base..seed_base+N-1) or a list '1,2,3'")
    p.add_argument("--seed_base", type=int, default=2020, help="first seed when --seeds is a count")
    p.add_argument("--out", default=None, help=f"results folder (default {default_out('<dataset>')}: outside the "
                                                "tracked docs; give --out=docs/results/<name> for a table to commit)")
    p.add_argument("--work_dir", default=None, help="checkpoints (default saved/benchmark/<dataset>)")
    p.add_argument("--config_files", default=None, help="yaml files for every run (space or comma separated)")
    p.add_argument("--budget_epochs", type=int, default=None, help="the same epochs cap for every model")
    # Off unless asked: a search trains every candidate of a variant on the search seed, which turns
    # "2 models x 1 seed" into several times the runs the user counted.
    p.add_argument("--search", default="off", choices=["on", "off"],
                   help="on: run the variants' valid-selected searches (each candidate is one more run, announced "
                        "with its count before training); off (default): each variant's own settings")
    p.add_argument("--search_candidates", default=None,
                   help="train only these search candidates (0-based indices, e.g. '0,2') and select nothing "
                        "until every candidate has a record: two processes can share one search")
    p.add_argument("--search_seed", type=int, default=None,
                   help="the seed whose VALID the searches select on (default --seed_base), also when --seeds "
                        "lists other seeds only: adding seeds to a searched table reuses its search")
    # Each run keeps its valid-selected checkpoint (<work_dir>/<run_id>/<Model>-<date>.pth, one file per
    # run) so that explain/steer/probe can read the run folder; --drop_checkpoints saves the disk.
    p.add_argument("--keep_checkpoints", dest="keep_checkpoints", action="store_true", default=True,
                   help="keep each run's best checkpoint under --work_dir (the default)")
    p.add_argument("--drop_checkpoints", dest="keep_checkpoints", action="store_false",
                   help="delete each run's checkpoint once its record is written")
    p.add_argument("--machine", default=None, help="a label for the machine, stored in every run")
    p.add_argument("--report_only", action="store_true", help="rebuild the tables/plot from finished runs")
    p.add_argument("--rename", metavar="OLD=NEW",
                   help="give the finished runs of variant OLD the name NEW (a registered variant whose config "
                        "they ran with), e.g. after a default changed; needs --why; then rebuild with --report_only")
    p.add_argument("--why", help="--rename: the reason, stored in each renamed record")
    p.add_argument("--progress", action="store_true",
                   help="print the runs in flight under --work_dir (valid curve so far, epochs without improvement)")
    p.add_argument("--bars", default="auto", choices=["auto", "on", "off"],
                   help="per-epoch progress bars of each run: auto = when stderr is a terminal (a log file gets "
                        "one line per epoch instead)")
    p.add_argument("--fail_fast", action="store_true", help="stop at the first failing run")
    p.add_argument("--variants", default=None, help="extra registry yaml (adds/overrides variants)")
    args, unknown = p.parse_known_args(argv)
    return args, {key: parse_value(value) for key, value in cli.config_args(unknown).items()}


def default_out(dataset):
    """Where results go without --out: under the working folder's git-ignored saved/, so that trying the
    benchmark never writes into a checkout's committed docs/results/."""
    return os.path.join("saved", "results", dataset)


def rename(args):
    old, sep, new = (part.strip() for part in args.rename.partition("="))
    if not (sep and old and new and args.why):
        raise cli.UsageError("--rename takes OLD=NEW (variant names) and needs --why \"<reason>\"")
    registry = load_registry(extra=[args.variants])
    if new not in registry:
        raise cli.UsageError(f"--rename: '{new}' is not a registered variant: add it to "
                             f"properties/benchmark/variants.yaml (or --variants) with the config the runs had")
    runs_dir = os.path.join(args.out or default_out(args.dataset), RUNS)
    try:
        target = resolve_variant(new, registry)
        ids = rename_variant(runs_dir, old, new, target["config"], args.why, role=target["role"])
    except ValueError as err:
        raise cli.UsageError(f"--rename: {err}") from None
    log(f"renamed {old} -> {new}: {', '.join(ids)}")
    return {"renamed": ids}


def main(argv=None):
    args, overrides = parse_args(argv)
    if args.progress:  # read-only: creates nothing
        rows = progress(resolve_work_dir(args.work_dir, args.dataset))
        for row in rows:
            log(format_progress(row))
        if not rows:
            log(f"no run in flight under {resolve_work_dir(args.work_dir, args.dataset)}")
        return {}
    if args.rename:
        return rename(args)
    if not args.models:
        raise cli.UsageError("--models is required (e.g. --models=SAERec,SASRec-CE); only --progress runs without it")
    registry = load_registry(extra=[args.variants])
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    variants = [resolve_variant(n, registry) for n in names]
    seeds = ([int(s) for s in args.seeds.split(",") if s.strip()] if "," in args.seeds
             else [args.seed_base + i for i in range(int(args.seeds))])
    if len(seeds) > 100:  # '--seeds=2020' meant one seed, not 2,020 runs per model
        raise cli.UsageError(f"--seeds={args.seeds} asks for {len(seeds)} seeds per model. --seeds is a COUNT "
                            f"(with --seed_base) or a LIST: for the single seed {args.seeds} write "
                            f"--seeds={args.seeds}, (trailing comma) or --seeds=1 --seed_base={args.seeds}.")
    out = args.out or default_out(args.dataset)
    config_files = cli.config_files(args.config_files)
    bench = Benchmark(args.dataset, variants, seeds, out, config_files=config_files, cli_config=overrides,
                      budget_epochs=args.budget_epochs, work_dir=args.work_dir, search=args.search == "on",
                      keep_checkpoints=args.keep_checkpoints, machine_label=args.machine, fail_fast=args.fail_fast,
                      registry=registry, bars={"on": True, "off": False}.get(args.bars, sys.stderr.isatty()),
                      search_seed=args.seed_base if args.search_seed is None else args.search_seed,
                      search_candidates=None if args.search_candidates is None
                      else [int(k) for k in args.search_candidates.split(",") if k.strip()])
    if not args.report_only:
        log(f"{args.dataset}: {len(variants)} models x {len(seeds)} seeds {seeds} -> {bench.out_dir}")
        with cli.recbole_cmd_line({}):  # every config key reaches the runs as cli_config, none via sys.argv
            bench.run_all()
    # --report_only shows exactly --models; a call that ran models keeps the rows the table had
    result = report(bench.out_dir, args.dataset, names if args.report_only else report_names(bench.out_dir, names),
                    registry)
    if result:
        log(headline(result["records"]))
        log(f"table: {os.path.join(bench.out_dir, 'results.md')}")
    return result
