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
* A new packed token count every batch grew RSS ~5 MB per step (oneDNN caches a primitive per
  shape); ``layers.bucketed_count`` rounds it to 16 sizes per octave and keeps RSS flat.
  2026-12-01, AMD EPYC, 1 thread, real intents: one real epoch SAERec 71 s vs SASRec 155 s
  (0.46x), full-sort eval 7.1 s vs 25.6 s (docs/results/speed.md).
"""
import argparse
import contextlib
import csv
import json
import os
import resource
import statistics
import sys
import threading
import time

import torch

from recbole_saerec.artefacts import atomic_path

MODELS = ("SASRec", "SAERec")
SYNTHETIC_ENCODER = "synthetic-speed-bench"
CONFIG_KEYS = ["hidden_size", "inner_size", "n_layers", "n_heads", "MAX_ITEM_LIST_LENGTH", "train_batch_size",
               "eval_batch_size", "hidden_dropout_prob", "attn_dropout_prob", "loss_type", "autocast_bf16", "compile",
               "intents_retrieved", "intent_layers"]
TABLE_COLUMNS = ["model", "intents", "step_ms_median", "step_ratio_vs_sasrec", "step_cpu_ms_median",
                 "step_cpu_ratio_vs_sasrec", "epoch_cpu_s_extrapolated", "epoch_s_extrapolated", "full_epoch_s",
                 "eval_s_median", "eval_ratio_vs_sasrec", "train_peak_mb", "eval_peak_mb"]


# ----------------------------------------------------------------------------- memory
class PeakRSS:
    """Peak resident memory of this process during a `with` block (CPU), sampled every 5 ms."""

    def __init__(self, interval=0.005):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self.start = self.proc.memory_info().rss
        self.peak = self.start
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


@contextlib.contextmanager
def peak_memory(device, record):
    """record['peak_mb'] (RSS on CPU, max allocated on GPU) and record['delta_mb'] (peak - start)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        yield
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        with PeakRSS() as rss:
            yield
        start, peak = rss.start, rss.peak
    record["peak_mb"] = max(record.get("peak_mb", 0), peak / 2**20)
    record["delta_mb"] = max(record.get("delta_mb", 0), (peak - start) / 2**20)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ------------------------------------------------------------------- intents
def write_synthetic_intents(intent_dir, dataset_name, item_tokens, m=1200, dim=384, per_item=16, seed=0):
    """Random intent artefacts for the dataset's real item tokens (speed only: content is irrelevant)."""
    from recbole_saerec.artefacts import items_sha1, save_artefacts

    g = torch.Generator().manual_seed(seed)
    n = len(item_tokens)
    vectors = torch.randn(m, dim, generator=g)
    indices = torch.rand(n, m, generator=g).topk(per_item, dim=1).indices
    values = torch.rand(n, per_item, generator=g)
    fingerprint = {"dataset": dataset_name, "items_sha1": items_sha1(item_tokens), "n_items": n,
                   "encoder": SYNTHETIC_ENCODER, "layer": None, "pooling": "mean", "corpus_sha1": "synthetic",
                   "method": "synthetic", "n_latents": m, "k": per_item, "keep": "all", "judge": "none"}
    catalogue = [{"row": j, "latent_id": j, "words": [], "summary": "synthetic (speed benchmark)",
                  "verdict": "Yes", "frequency": 0.0} for j in range(m)]
    save_artefacts(intent_dir, fingerprint, vectors, torch.arange(m), item_tokens, indices, values, catalogue,
                   stats={"synthetic": True})
    return intent_dir


def dataset_item_tokens(data_path, dataset_name):
    """Item tokens of the atomic .inter file (what RecBole's item set will be), without RecBole."""
    path = os.path.join(data_path, dataset_name, f"{dataset_name}.inter")
    tokens = set()
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        col = [h.split(":")[0] for h in header].index("item_id")
        for line in f:
            tokens.add(line.rstrip("\n").split("\t")[col])
    return sorted(tokens)


def time_intent_build(config, intent_dir):
    """Run build_intents once: total wall time and the per-stage times the build records in its manifest."""
    from recbole_saerec.intents.build import build_intents

    t0 = time.perf_counter()
    manifest = build_intents(config, intent_dir=intent_dir)
    total = time.perf_counter() - t0
    reported = dict((manifest.get("stats") or {}).get("timings") or {})
    stages = {k: v for k, v in reported.items() if k != "total_s"}
    return {"total_s": total, "stages_s": stages, "build_reported_timings": reported}


def given_intent_info(intent_dir):
    """What the manifest of a given build says about it ({} when it cannot be read)."""
    try:
        with open(os.path.join(intent_dir, "manifest.json")) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return {}
    return {"manifest_timings": manifest.get("stats", {}).get("timings"), "n_intents": manifest.get("n_intents"),
            "dim": manifest.get("dim"), "fingerprint": manifest.get("fingerprint")}


def prepare_intents(args, base):
    """SAERec's intents: built and timed (--intents), given (--intent_dir) or synthetic. (dir, source, info)."""
    from recbole_saerec.config import Config

    probe = Config(model="SAERec", dataset=args.dataset, config_dict=dict(base, intent_autobuild=False))
    if args.intents:
        intent_dir = args.intent_dir or os.path.join(args.out, "intents", args.dataset)
        print(f"[bench] building intents for {args.dataset} into {intent_dir} (timed per stage) ...", flush=True)
        info = time_intent_build(probe, intent_dir)
        print(f"[bench] intent build: {json.dumps(info, default=str)}", flush=True)
        return intent_dir, "built", info
    if args.intent_dir:
        return args.intent_dir, "given", given_intent_info(args.intent_dir)
    intent_dir = os.path.join(args.out, "synthetic_intents", args.dataset)
    tokens = dataset_item_tokens(os.path.dirname(os.path.normpath(probe["data_path"])), args.dataset)
    write_synthetic_intents(intent_dir, args.dataset, tokens, args.synthetic_m, args.synthetic_dim,
                            args.synthetic_per_item, seed=args.seed)
    print(f"[bench] SYNTHETIC intents (m={args.synthetic_m}, d_t={args.synthetic_dim}, "
          f"{args.synthetic_per_item}/item) for {len(tokens)} items in {intent_dir}", flush=True)
    return intent_dir, "synthetic", {}


# ----------------------------------------------------------------------------- set-up
def shared_config(args):
    cfg = {
        "data_path": args.data_path, "seed": args.seed, "reproducibility": False,
        "use_gpu": args.device == "cuda", "show_progress": False, "state": "WARNING",
        "train_batch_size": args.batch, "eval_batch_size": args.eval_batch,
        "hidden_size": args.hidden, "inner_size": args.inner, "n_layers": args.layers, "n_heads": args.heads,
        "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "initializer_range": 0.02, "loss_type": "CE", "train_neg_sample_args": None,
        "MAX_ITEM_LIST_LENGTH": args.max_len, "learning_rate": 1e-3, "weight_decay": 0.0,
        "save_dataset": False, "save_dataloaders": False, "log_wandb": False,
        "checkpoint_dir": os.path.join(args.out, "saved"),
    }
    if args.data_path is None:
        cfg.pop("data_path")
    cfg.update(json.loads(args.config))  # every model, e.g. the columns of a dataset without a yaml
    return cfg


def model_plan(args):
    """(names in run order, name -> model class, SAERec variants {name: overrides})."""
    models = [m for m in args.models.split(",") if m]
    variants = json.loads(args.variants)
    model_class = {name: name for name in models}
    for name in variants:
        models.append(name)
        model_class[name] = "SAERec"
    return models, model_class, variants


def saerec_overrides(args):
    extra = json.loads(args.saerec_config)
    if args.bf16:
        extra["autocast_bf16"] = True
    if args.compile:
        extra["compile"] = True
    return extra


def build_configs(args, models, variants, base):
    """One plugin Config per model name; SAERec and its variants share the intents. (configs, source, info)."""
    from recbole_saerec.config import Config

    configs, intent_source, intent_info = {}, None, {}
    if "SAERec" in models or variants:
        intent_dir, intent_source, intent_info = prepare_intents(args, base)
        saerec_cfg = dict(base, intent_dir=os.path.abspath(intent_dir), intent_autobuild=False,
                          **saerec_overrides(args))
        if intent_source == "synthetic":
            saerec_cfg["intent_check_encoder"] = False
        configs["SAERec"] = Config(model="SAERec", dataset=args.dataset, config_dict=saerec_cfg)
        for name, overrides in variants.items():
            configs[name] = Config(model="SAERec", dataset=args.dataset, config_dict=dict(saerec_cfg, **overrides))
    for name in models:
        if name not in configs:
            configs[name] = Config(model=name, dataset=args.dataset, config_dict=dict(base))
    return configs, intent_source, intent_info


def load_data(args, config):
    """The dataset and its splits, loaded once and shared by every model."""
    from recbole.data import create_dataset
    from recbole.utils import init_seed

    from recbole_saerec.data import split_with_protocol

    init_seed(args.seed, False)
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    train_data, _valid, test_data = split_with_protocol(config, dataset)
    data = {"dataset": dataset, "train": train_data, "test": test_data, "load_s": time.perf_counter() - t0,
            "device": config["device"], "steps_per_epoch": len(train_data), "eval_users": test_data.sample_size}
    print(f"[bench] {dataset.dataset_name}: {dataset.user_num - 1} users, {dataset.item_num - 1} items, "
          f"{len(train_data.dataset)} training samples = {data['steps_per_epoch']} steps of {args.batch}; "
          f"data loaded in {data['load_s']:.1f} s; device {data['device']}", flush=True)
    return data


def draw_batches(train_data, n_batches, device):
    """The first n batches of the real loader (fed to every model), and the loader's time per batch."""
    batches = []
    t0 = time.perf_counter()
    for batch in train_data:
        batches.append(batch)
        if len(batches) == n_batches:
            break
    loader_s_per_step = (time.perf_counter() - t0) / max(len(batches), 1)
    batches = [b.to(device) for b in batches]
    lens = torch.cat([b["item_length"] for b in batches]).float()
    batch_max = [int(b["item_length"].max()) for b in batches]
    print(f"[bench] {len(batches)} batches: mean sample length {lens.mean():.1f}, median batch max length "
          f"{median(batch_max)}, loader {loader_s_per_step * 1e3:.1f} ms/batch", flush=True)
    return batches, loader_s_per_step, float(lens.mean()), batch_max


def build_models(args, models, model_class, configs, train_data, device):
    """name -> {model, optimizer, trainer, params}, each from the same seed."""
    from recbole.utils import init_seed

    from recbole_saerec.utils import get_model, get_trainer

    built = {}
    for name in models:
        config = configs[name]
        init_seed(args.seed, False)
        model = get_model(model_class[name])(config, train_data._dataset).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
        trainer = get_trainer(config["MODEL_TYPE"], model_class[name])(config, model)
        built[name] = {"model": model, "optimizer": optimizer, "trainer": trainer,
                       "params": sum(p.numel() for p in model.parameters())}
    return built


def set_anomaly_detection(args):
    """Same autograd anomaly setting for every model; returns what RecBole's imports had left."""
    # RecBole's recbole/model/sequential_recommender/sine.py calls torch.autograd.set_detect_anomaly(True)
    # at import time, i.e. whenever any RecBole sequential model is imported (get_model("SASRec") does).
    # That NaN-checks every backward output (~40% of a step here). Same setting for both models.
    on_import = torch.is_anomaly_enabled()
    if not args.anomaly:
        torch.autograd.set_detect_anomaly(False)
    print(f"[bench] autograd anomaly detection: {torch.is_anomaly_enabled()} for both models "
          f"(after RecBole's imports it was {on_import})", flush=True)
    return on_import


# ----------------------------------------------------------------------------- timing
def train_step(model, optimizer, batch):
    optimizer.zero_grad(set_to_none=True)
    loss = model.calculate_loss(batch)
    loss.backward()
    optimizer.step()
    return loss


def _write_profile(prof, path, device, by_shape=False):
    key = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    with open(path, "w") as f:
        f.write(prof.key_averages().table(sort_by=key, row_limit=40))
        if by_shape:
            f.write("\n\nby input shape:\n")
            f.write(prof.key_averages(group_by_input_shape=True).table(sort_by=key, row_limit=30))


def _activities(device):
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


def profile_eval(trainer, eval_data, path, device):
    from torch.profiler import profile

    with profile(activities=_activities(device)) as prof:
        trainer.evaluate(eval_data, load_best_model=False, show_progress=False)
        sync(device)
    _write_profile(prof, path, device)


def profile_steps(model, optimizer, batches, path, device, n=5):
    from torch.profiler import profile

    model.train()
    with profile(activities=_activities(device), record_shapes=True) as prof:
        for batch in batches[:n]:
            train_step(model, optimizer, batch)
        sync(device)
    _write_profile(prof, path, device, by_shape=True)


def new_records(models):
    return {name: {"step_s": [], "step_cpu_s": [], "eval_s": [], "eval_cpu_s": [], "mem_train": {}, "mem_eval": {}}
            for name in models}


def warm_up(built, records, batches, device):
    """Untimed steps per model (include compilation when asked); their wall time goes to the JSON."""
    for name, b in built.items():
        b["model"].train()
        t0 = time.perf_counter()
        for batch in batches:
            train_step(b["model"], b["optimizer"], batch)
        sync(device)
        records[name]["warmup_s"] = time.perf_counter() - t0


def time_train(built, records, models, timed, rounds, device):
    """Each round runs every model over the same batches; the order flips every round."""
    for r in range(rounds):
        for name in (models if r % 2 == 0 else models[::-1]):
            b, rec = built[name], records[name]
            b["model"].train()
            with peak_memory(device, rec["mem_train"]):
                for batch in timed:
                    t0, c0 = time.perf_counter(), time.process_time()
                    train_step(b["model"], b["optimizer"], batch)
                    sync(device)
                    rec["step_s"].append(time.perf_counter() - t0)
                    rec["step_cpu_s"].append(time.process_time() - c0)
            print(f"[bench] round {r + 1} {name:7s} train: median {median(rec['step_s'][-len(timed):]) * 1e3:.0f} "
                  f"ms/step wall, {median(rec['step_cpu_s'][-len(timed):]) * 1e3:.0f} ms/step CPU", flush=True)


def time_eval(built, records, models, test_data, rounds, device):
    """Full-sort evaluation of ALL test users through RecBole's Trainer.evaluate, alternating the same way."""
    for r in range(rounds):
        for name in (models if r % 2 == 0 else models[::-1]):
            b, rec = built[name], records[name]
            with peak_memory(device, rec["mem_eval"]):
                t0, c0 = time.perf_counter(), time.process_time()
                result = b["trainer"].evaluate(test_data, load_best_model=False, show_progress=False)
                sync(device)
                rec["eval_s"].append(time.perf_counter() - t0)
                rec["eval_cpu_s"].append(time.process_time() - c0)
            rec["eval_result"] = {k: round(float(v), 4) for k, v in result.items()}
            print(f"[bench] round {r + 1} {name:7s} eval : {rec['eval_s'][-1]:.2f} s wall, "
                  f"{rec['eval_cpu_s'][-1]:.2f} s CPU", flush=True)


def time_full_epoch(built, records, train_data, device):
    for name, b in built.items():
        b["model"].train()
        t0 = time.perf_counter()
        for batch in train_data:
            train_step(b["model"], b["optimizer"], batch.to(device))
        sync(device)
        records[name]["full_epoch_s"] = time.perf_counter() - t0
        print(f"[bench] {name} full epoch: {records[name]['full_epoch_s']:.1f} s", flush=True)


# ----------------------------------------------------------------------------- results
def _flag(config, key):
    return bool(config[key]) if key in config else False


def _rounded(xs, fn, digits):
    return round(fn(xs), digits) if xs else ""


def result_row(args, name, rec, config, model_class, params, data, intent_source, loader_s_per_step):
    """One table row: medians over every timed step / evaluation of this model, plus memory."""
    step, steps_per_epoch = median(rec["step_s"]), data["steps_per_epoch"]
    return {
        "dataset": args.dataset, "model": name, "device": str(data["device"]),
        "intents": (intent_source if model_class == "SAERec" else "-"),
        "bf16": _flag(config, "autocast_bf16"), "compile": _flag(config, "compile"), "params": params,
        "step_ms_median": round(step * 1e3, 1),
        "step_cpu_ms_median": round(median(rec["step_cpu_s"]) * 1e3, 1),
        "step_ms_min": round(min(rec["step_s"]) * 1e3, 1),
        "step_ms_max": round(max(rec["step_s"]) * 1e3, 1),
        "steps_timed": len(rec["step_s"]), "steps_per_epoch": steps_per_epoch,
        "epoch_s_extrapolated": round((step + loader_s_per_step) * steps_per_epoch, 1),
        "epoch_cpu_s_extrapolated": round((median(rec["step_cpu_s"]) + loader_s_per_step) * steps_per_epoch, 1),
        "full_epoch_s": round(rec["full_epoch_s"], 1) if "full_epoch_s" in rec else "",
        "eval_s_median": _rounded(rec["eval_s"], median, 2),
        "eval_s_min": _rounded(rec["eval_s"], min, 2),
        "eval_cpu_s_median": _rounded(rec["eval_cpu_s"], median, 2),
        "eval_users": data["eval_users"],
        "train_peak_mb": round(rec["mem_train"].get("peak_mb", 0)),
        "train_delta_mb": round(rec["mem_train"].get("delta_mb", 0)),
        "eval_peak_mb": round(rec["mem_eval"].get("peak_mb", 0)),
        "eval_delta_mb": round(rec["mem_eval"].get("delta_mb", 0)),
        "warmup_s": round(rec["warmup_s"], 1),
    }


def per_round_ratio(mine, theirs, steps, rounds):
    """Median over rounds of (my median step / SASRec's median step) in that round."""
    return [median(mine[i * steps:(i + 1) * steps]) / median(theirs[i * steps:(i + 1) * steps]) for i in range(rounds)]


def add_ratios_vs_sasrec(rows, records, model_class, steps, rounds):
    """SAERec rows get step / CPU-step / eval time ratios against SASRec (each round ran both back to back)."""
    if "SASRec" not in records or "SAERec" not in records:
        return
    sasrec = records["SASRec"]
    for row in rows:
        if model_class[row["model"]] != "SAERec":
            continue
        rec = records[row["model"]]
        round_ratios = per_round_ratio(rec["step_s"], sasrec["step_s"], steps, rounds)
        eval_ratios = [e / s for e, s in zip(rec["eval_s"], sasrec["eval_s"])]
        row["step_ratio_vs_sasrec"] = round(median(round_ratios), 3)
        row["step_ratio_rounds"] = " ".join(f"{x:.2f}" for x in round_ratios)
        row["step_cpu_ratio_vs_sasrec"] = round(median(
            per_round_ratio(rec["step_cpu_s"], sasrec["step_cpu_s"], steps, rounds)), 3)
        row["eval_ratio_vs_sasrec"] = round(median(eval_ratios), 3) if eval_ratios else ""


def print_table(args, rows, data, intent_source, intent_info):
    label = f"intents={intent_source}" if intent_source else ""
    print()
    print(f"autograd anomaly detection {'ON' if torch.is_anomaly_enabled() else 'off'} for both models")
    print(f"{args.dataset}: {data['steps_per_epoch']} steps/epoch of {args.batch}, {data['eval_users']} eval users, "
          f"device {data['device']}, {os.cpu_count()} CPUs, torch {torch.__version__} {label}")
    print("epoch_s_extrapolated = (median step + loader time per batch) x steps per epoch (wall; *_cpu_*: process "
          "CPU time, robust on a shared machine)")
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in TABLE_COLUMNS]
    print("  ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, widths)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(TABLE_COLUMNS, widths)))
    if intent_info:
        print(f"intent construction: {json.dumps(intent_info, default=str)}")


def write_csv(path, args, rows, device, intent_info):
    """speed.csv: one row per model, then one per intent-build stage (seconds in epoch_s_extrapolated)."""
    all_cols = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=all_cols)
        writer.writeheader()
        writer.writerows(rows)
        if intent_info and "stages_s" in intent_info:
            stages = intent_info.get("build_reported_timings") or dict(intent_info["stages_s"],
                                                                      total_s=intent_info["total_s"])
            for stage, secs in stages.items():
                writer.writerow({"dataset": args.dataset, "model": f"intent_build:{stage}",
                                 "device": str(device), "intents": "built", "step_ms_median": "",
                                 "epoch_s_extrapolated": round(secs, 1)})


def json_report(args, models, configs, records, rows, data, batch_stats, intents, anomaly_on_import):
    """speed.json: machine, versions, seed, dataset, config per model, table rows and raw timings."""
    from recbole_saerec.utils import run_environment

    env = run_environment(device=data["device"])
    dataset, train_data = data["dataset"], data["train"]
    loader_s_per_step, mean_len, batch_max = batch_stats
    return {
        "machine": {**env["machine"], **env["versions"]}, "seed": args.seed,
        "dataset": {"name": args.dataset, "users": dataset.user_num - 1, "items": dataset.item_num - 1,
                    "train_samples": len(train_data.dataset), "steps_per_epoch": data["steps_per_epoch"],
                    "eval_users": data["eval_users"], "load_s": data["load_s"],
                    "timed_batches_mean_len": mean_len, "timed_batches_max_len": batch_max},
        "loader_s_per_step": loader_s_per_step, "anomaly_detection": torch.is_anomaly_enabled(),
        "anomaly_detection_after_recbole_import": anomaly_on_import, "intents": intents,
        "config": {name: {k: (configs[name][k] if k in configs[name] else None) for k in CONFIG_KEYS}
                   for name in models},
        "rows": rows,
        "raw": {name: {"step_s": records[name]["step_s"], "eval_s": records[name]["eval_s"],
                       "step_cpu_s": records[name]["step_cpu_s"], "eval_cpu_s": records[name]["eval_cpu_s"],
                       "eval_result": records[name].get("eval_result")} for name in models},
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# -------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_path", default=None, help="folder holding <dataset>/ (default: the dataset yaml's)")
    p.add_argument("--steps", type=int, default=30, help="timed train steps per model per round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="alternation rounds (train and eval)")
    p.add_argument("--eval_rounds", type=int, default=None, help="default: --rounds")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--eval_batch", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--inner", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--max_len", type=int, default=50)
    p.add_argument("--models", default=",".join(MODELS))
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
                   help='extra SAERec variants as JSON {"name": {config overrides}}, e.g. {"SAERec-padded": {"pack_tokens": false}}')
    p.add_argument("--no_eval", action="store_true", help="skip the evaluation timing")
    p.add_argument("--full_epoch", action="store_true", help="also time one real epoch per model")
    p.add_argument("--profile", action="store_true", help="write torch.profiler tables per model")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=2020)
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
    add_ratios_vs_sasrec(rows, records, model_class, args.steps, args.rounds)
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
