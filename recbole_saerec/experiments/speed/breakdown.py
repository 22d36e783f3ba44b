"""Where a training step and a full-sort evaluation spend their time, part by part.

    python -m recbole_saerec.experiments.speed.breakdown --dataset=amazon-beauty --threads=1 \\
        [--data_path=dataset/] [--models=PackedSASRec,SAERec] [--steps=20] [--out=DIR] \\
        [--config='{"pack_attention": false}'] [--intent_dir=DIR]

Each part is timed on its own, on the same real batches, in process CPU time (robust on a
shared machine; the median over ``--steps`` batches):

* ``item table``: building the table the model scores against (SAERec: the item embeddings plus
  the item-side intent feature, a sparse [items x intents] product; PackedSASRec: none);
* ``encoder fwd+bwd``: the sequence encoder (SAERec: with its intent retrieval and branches) and its
  backward, up to the user vector;
* ``output layer fwd+bwd``: the softmax cross-entropy over all items and its gradients w.r.t. the
  user vectors and the item table (``layers.linear_cross_entropy`` as the model is configured), with
  the GFLOP/s its three [B x d x n_items] matmuls achieve;
* ``optimizer``: Adam's update of every parameter;
* ``other``: the whole step minus the parts (autograd bookkeeping, the item table's backward ...);
* ``loader``: RecBole's training loader, per batch.

The evaluation is one full-sort pass over all test users through RecBole's ``Trainer.evaluate``,
split into the scoring (``full_sort_predict`` of every batch) and the rest (RecBole's collector:
the seen-item mask, top-k, metrics). The machine's matmul peak (a 1024^3 product, fp32 and bf16)
is measured in the same run, so the GFLOP/s read against it. Writes ``breakdown.md`` and
``breakdown.json`` to ``--out``.
"""
import argparse
import json
import os
import sys
import time

import torch

from recbole_saerec.experiments.speed.measure import median, train_step
from recbole_saerec.experiments.speed.plan import (add_setup_args, build_configs, build_models, draw_batches, load_data,
                                                  shared_config)
from recbole_saerec.fileio import atomic_path


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m recbole_saerec.experiments.speed.breakdown",
                                description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_path", default=None)
    p.add_argument("--models", default="PackedSASRec,SAERec")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--config", default="{}", help="extra config for every model as JSON")
    p.add_argument("--intent_dir", default=None, help="SAERec's intents (default: synthetic, as the speed benchmark)")
    p.add_argument("--out", default="bench_out")
    add_setup_args(p)  # the speed benchmark's set-up (plan.py)
    args = p.parse_args(argv)
    args.variants, args.saerec_config, args.bf16, args.compile, args.intents = "{}", "{}", False, False, False
    args.synthetic_m, args.synthetic_dim, args.synthetic_per_item = 1200, 384, 16
    return args


def cpu_ms(fn, reps):
    """Median process CPU time of fn() in ms over `reps` calls (fn gets the call index)."""
    times = []
    for i in range(reps):
        c0 = time.process_time()
        fn(i)
        times.append(time.process_time() - c0)
    return median(times) * 1e3


def matmul_peak(dtype, n=1024, reps=3):
    a = torch.randn(n, n).to(dtype)
    a @ a
    return 2 * n ** 3 / (cpu_ms(lambda _: a @ a, reps) / 1e3) / 1e9


def user_and_table(model, batch):
    """The user vectors (encoder output) and the scored table, as the model's loss computes them."""
    return model.user_and_table(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])


def step_parts(model, optimizer, batches):
    from recbole_saerec.model.layers import linear_cross_entropy

    model.train()
    n = len(batches)
    parts = {"step": cpu_ms(lambda i: train_step(model, optimizer, batches[i]), n)}
    if hasattr(model, "projected_intents"):
        def table(_):
            with torch.no_grad():
                model.item_table()
        parts["item table"] = cpu_ms(table, n)

    def encoder(i):
        optimizer.zero_grad(set_to_none=True)
        user, _ = user_and_table(model, batches[i])
        user.sum().backward()
    parts["encoder fwd+bwd"] = cpu_ms(encoder, n) - parts.get("item table", 0.0)
    with torch.no_grad():
        users = [user_and_table(model, b) for b in batches]

    def output(i):
        user, table = (t.detach().requires_grad_() for t in users[i])
        linear_cross_entropy(user, table, batches[i][model.POS_ITEM_ID], model.fused_ce, bf16=model.bf16_ce).backward()
    parts["output layer fwd+bwd"] = cpu_ms(output, n)
    b, d = users[0][0].shape
    flops = 3 * 2 * b * d * users[0][1].shape[0]
    parts["output layer GFLOP/s"] = flops / (parts["output layer fwd+bwd"] / 1e3) / 1e9
    train_step(model, optimizer, batches[0])  # gradients in place for Adam
    parts["optimizer"] = cpu_ms(lambda _: optimizer.step(), n)
    parts["other"] = parts["step"] - sum(parts[k] for k in ("item table", "encoder fwd+bwd", "output layer fwd+bwd",
                                                            "optimizer") if k in parts)
    return parts


def eval_parts(trainer, model, test_data):
    model.eval()
    c0 = time.process_time()
    trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    total = time.process_time() - c0
    c0 = time.process_time()
    with torch.no_grad():
        for batch in test_data:
            model.full_sort_predict(batch[0])
    scoring = time.process_time() - c0
    return {"eval total s": total, "eval scoring s": scoring, "eval rest s": total - scoring}


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    torch.autograd.set_detect_anomaly(False)  # RecBole's SINE import turns it on for every model
    models = [m for m in args.models.split(",") if m]
    model_class = {m: m for m in models}
    base = dict(shared_config(args), **json.loads(args.config))
    configs, intent_source, _ = build_configs(args, models, {}, base)
    data = load_data(args, configs[models[0]])
    batches, loader_s, _, _ = draw_batches(data["train"], args.warmup + args.steps, data["device"])
    built = build_models(args, models, model_class, configs, data["train"], data["device"])
    torch.autograd.set_detect_anomaly(False)
    report = {"command": " ".join(["python -m recbole_saerec.experiments.speed.breakdown"]
                                  + (sys.argv[1:] if argv is None else list(argv))),
              "threads": torch.get_num_threads(), "intents": intent_source,
              "peak GFLOP/s fp32": matmul_peak(torch.float32), "peak GFLOP/s bf16": matmul_peak(torch.bfloat16),
              "loader ms per batch": loader_s * 1e3, "steps_per_epoch": data["steps_per_epoch"],
              "eval_users": data["eval_users"], "models": {}}
    for name in models:
        b = built[name]
        for batch in batches[: args.warmup]:
            train_step(b["model"], b["optimizer"], batch)
        parts = step_parts(b["model"], b["optimizer"], batches[args.warmup:])
        parts.update(eval_parts(b["trainer"], b["model"], data["test"]))
        parts["epoch s (steps x step + loader)"] = (parts["step"] + report["loader ms per batch"]) \
            * data["steps_per_epoch"] / 1e3
        report["models"][name] = {k: round(v, 2) for k, v in parts.items()}
        print(f"[breakdown] {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()), flush=True)
    from recbole_saerec.environment import run_environment

    report["machine"] = run_environment(device=data["device"])["machine"]
    write(report, args.out)
    return report


ORDER = ("step", "item table", "encoder fwd+bwd", "output layer fwd+bwd", "output layer GFLOP/s", "optimizer", "other",
         "epoch s (steps x step + loader)", "eval total s", "eval scoring s", "eval rest s")


def write(report, out):
    with atomic_path(os.path.join(out, "breakdown.json")) as tmp, open(tmp, "w") as f:
        json.dump(report, f, indent=1, default=str)
    names = list(report["models"])
    keys = [k for k in ORDER if any(k in report["models"][m] for m in names)]
    lines = [f"Machine: {report['machine'].get('cpu_model', '')} ({report['machine'].get('cpu_capability')}), "
             f"{report['threads']} torch thread(s); matmul peak (1024^3) {report['peak GFLOP/s fp32']:.0f} GFLOP/s "
             f"fp32, {report['peak GFLOP/s bf16']:.1f} bf16; loader {report['loader ms per batch']:.1f} ms/batch; "
             f"{report['steps_per_epoch']} steps per epoch; {report['eval_users']} evaluated users.", "",
             "CPU ms per training step (median) unless the name says otherwise:", "",
             "| part | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(str(report["models"][m].get(k, "")) for m in names) + " |")
    lines += ["", f"Command: `{report['command']}`"]
    with atomic_path(os.path.join(out, "breakdown.md")) as tmp, open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
