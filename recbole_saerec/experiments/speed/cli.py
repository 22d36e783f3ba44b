"""Side-by-side speed benchmark: RecBole's SASRec vs SAERec on one dataset, one machine, one run.

Usage::

    python -m recbole_saerec.experiments.speed --dataset=amazon-beauty [--data_path=dataset/] \
        [--steps=40] [--warmup=3] [--batch=256] [--eval_batch=4096] [--rounds=3] \
        [--hidden=64] [--layers=2] [--heads=2] [--inner=256] [--max_len=50] \
        [--intent_dir=DIR | --synthetic_m=1200 --synthetic_dim=384] [--intents] \
        [--bf16] [--compile] [--profile] [--out=bench_out] [--seed=2020]

What it measures (both models get the SAME config: hidden size, layers, heads,
inner size, dropout, batch, max length, CE over all items, Adam):

* **Train step / epoch.** ``--steps`` batches are drawn once from the real
  training loader (RecBole's shuffled sequential loader) and fed to BOTH models,
  so batch lengths are identical. One step = ``zero_grad`` + ``calculate_loss``
  + ``backward`` + ``Adam.step``. After ``--warmup`` untimed steps per model the
  models alternate for ``--rounds`` rounds (SASRec N steps, SAERec N steps, ...),
  which cancels most of the drift of a shared, noisy VM. **The epoch time is an
  extrapolation**: median step time x steps per epoch, plus the loader's own
  time per batch (measured separately, identical for both models).
  ``--full_epoch`` additionally times one real epoch of each model.
* **Full-sort evaluation** of ALL test users through RecBole's own
  ``Trainer.evaluate`` (scores over all items, history masked, HR/NDCG@10/20),
  alternated the same way.
* **Peak memory**: CPU -- peak RSS of the process during each phase (a 5 ms
  psutil sampler; ``ru_maxrss`` for the whole run in the JSON); GPU --
  ``torch.cuda.max_memory_allocated`` per phase.
* **Intent construction** (``--intents``): ``recbole_saerec.intents.build.build_intents``
  for the dataset, whole and per stage (the per-stage wall times the build itself
  records in its manifest, ``stats.timings``).

SAERec needs intent artefacts. With ``--intent_dir`` (or ``--intents``) it uses
real ones; otherwise it writes SYNTHETIC artefacts (random m x d_t intents,
random sparse item activations, the dataset's real item tokens) and labels every
output row ``intents=synthetic``: speed depends only on m, d_t and the number of
activations per item, not on their content (defaults m=1200, d_t=384, 16 per item,
the size of Beauty's intent set).

Outputs (``--out``): ``speed.csv`` (one row per model x metric), ``speed.json``
(machine, versions, config, seed, raw timings), and with ``--profile``
``profile_<model>.txt`` (torch.profiler tables of a few train steps).

Profile findings (amazon-beauty, batch 256, length 50, hidden 64, 2-core CPU VM; docs/speed.md)
--------------------------------------------------------------------------------------------
* RecBole's ``sine.py`` turns autograd anomaly detection on at import (any RecBole sequential
  model import does it): ~44% of every step is its NaN checks (``aten::ne``/``aten::any``).
  Switched off here for BOTH models (``--anomaly`` keeps it).
* On a shared 2-core VM two intra-op threads are ~3-10x slower in wall time than one:
  use ``--threads=1`` and read the CPU-time columns (``*_cpu_*``), stable to ~10%.
* RecBole SASRec computes [256, 50, 256] activations although Beauty's samples average ~8.5
  real items (the batch's longest is ~always 50, so trimming alone does not help): element-wise
  work (erf GELU, dropout masks, LayerNorm) dominates; CE over all items + Adam are ~30 ms.
* SAERec runs every position-wise op on the packed real tokens only (``pack_tokens``,
  ``layers.Packer``): 373 -> 214 ms CPU per step (SASRec 415 ms); intent branches and the
  item-side intent feature add ~30 ms. Full-sort evaluation: ~0.26-0.5x SASRec's time, the
  rest is RecBole's collector (topk and a dense [B, n_items] positive matrix).
* oneDNN caches a primitive per input shape, so a new packed token count every batch would grow
  RSS ~5 MB per step; ``layers.bucketed_count`` rounds it to 16 sizes per octave and keeps RSS flat.
  AMD EPYC, 1 thread, real intents: one real epoch SAERec 71 s vs SASRec 155 s (0.46x), full-sort
  eval 7.1 s vs 25.6 s (docs/results/speed.md).
"""
import argparse
import json
import os
import sys
import time

import torch

from recbole_saerec.fileio import atomic_path
from recbole_saerec.experiments.speed.measure import (new_records, profile_eval, profile_steps, time_epoch_setup, time_eval,
                                                     time_full_epoch, time_train, warm_up)
from recbole_saerec.experiments.speed.plan import (add_setup_args, build_configs, build_models, draw_batches, load_data,
                                                  model_plan, set_anomaly_detection, shared_config)
from recbole_saerec.experiments.speed.report import add_ratios, json_report, print_table, result_row, write_csv

MODELS = ("SASRec", "SAERec")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m recbole_saerec.experiments.speed",
                                description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_path", default=None, help="folder holding <dataset>/ (default: the dataset yaml's)")
    p.add_argument("--steps", type=int, default=30, help="timed train steps per model per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="alternation rounds (train and eval)")
    p.add_argument("--eval_rounds", type=int, default=None, help="default: --rounds")
    add_setup_args(p)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--reference", default=None, help="the model every ratio is against (default: the first of --models)")
    p.add_argument("--intent_dir", default=None, help="real intent artefacts for SAERec (default: synthetic)")
    p.add_argument("--intents", action="store_true", help="build the intents (timed per stage) and use them")
    p.add_argument("--synthetic_m", type=int, default=1200)
    p.add_argument("--synthetic_dim", type=int, default=384)
    p.add_argument("--synthetic_per_item", type=int, default=16)
    p.add_argument("--bf16", action="store_true", help="SAERec with autocast_bf16 (SASRec stays fp32)")
    p.add_argument("--compile", action="store_true", help="SAERec with compile: True")
    p.add_argument("--saerec_config", default="{}", help="extra SAERec config as JSON")
    p.add_argument("--config", default="{}", help="extra config for every model as JSON")
    p.add_argument("--variants", default="{}",
                   help='extra variants as JSON {"name": {config overrides}}, SAERec\'s unless they name a "model", '
                        'e.g. {"SAERec-padded": {"pack_tokens": false}, "SASRec-plain": {"model": "PackedSASRec", '
                        '"pack_attention": false}}')
    p.add_argument("--no_eval", action="store_true", help="skip the evaluation timing")
    p.add_argument("--full_epoch", action="store_true", help="also time one real epoch per model")
    p.add_argument("--profile", action="store_true", help="write torch.profiler tables per model")
    p.add_argument("--anomaly", action="store_true",
                   help="keep autograd anomaly detection as RecBole's import left it (SINE turns it on globally)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--out", default="bench_out")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report = {"command": " ".join([os.path.basename(sys.executable), "-m", "recbole_saerec.experiments.speed"]
                                  + (sys.argv[1:] if argv is None else list(argv))),
              "args": vars(args), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    models, model_class, variants = model_plan(args)
    configs, intent_source, intent_info = build_configs(args, models, variants, shared_config(args))
    data = load_data(args, configs[models[0]])
    device = data["device"]
    batches, loader_s_per_step, mean_len, batch_max = draw_batches(data["train"], args.warmup + args.steps, device)
    built = build_models(args, models, model_class, configs, data["train"], device)
    anomaly_on_import = set_anomaly_detection(args)
    records = new_records(models)

    time_epoch_setup(built, records, data["train"])
    warm_up(built, records, batches[: args.warmup], device)
    if args.profile:
        for name in models:
            profile_steps(built[name]["model"], built[name]["optimizer"], batches[args.warmup:],
                          os.path.join(args.out, f"profile_{name}.txt"), device)
            profile_eval(built[name]["trainer"], data["test"], os.path.join(args.out, f"profile_eval_{name}.txt"),
                         device)
    time_train(built, records, models, batches[args.warmup:], args.rounds, device)
    time_eval(built, records, models, data["test"], 0 if args.no_eval else (args.eval_rounds or args.rounds), device)
    if args.full_epoch:
        time_full_epoch(built, records, data["train"], device)

    rows = [result_row(args, name, records[name], configs[name], model_class[name], built[name]["params"], data,
                       intent_source, loader_s_per_step) for name in models]
    add_ratios(rows, records, args.reference or models[0], args.steps, args.rounds)
    print_table(args, rows, data, intent_source, intent_info)
    write_csv(os.path.join(args.out, "speed.csv"), args, rows, device, intent_info)
    report.update(json_report(args, models, configs, records, rows, data, (loader_s_per_step, mean_len, batch_max),
                              {"source": intent_source, **intent_info}, anomaly_on_import))
    with atomic_path(os.path.join(args.out, "speed.json")) as tmp, open(tmp, "w") as f:
        json.dump(report, f, indent=1, default=str)
    print(f"[bench] wrote {os.path.join(args.out, 'speed.csv')} and speed.json")
    return report


if __name__ == "__main__":
    main()
