"""PackedBERT4Rec against RecBole's BERT4Rec: one training step each, the same batches and weights.

    python -m recbole_saerec.experiments.speed.bert4rec --dataset=amazon-beauty --threads=1

Why a separate script: BERT4Rec's batches come from RecBole's masking transform in the training
loader, so the side-by-side benchmark (cli.py), which feeds SASRec-style batches, cannot time it.
Here ``--warmup`` + ``--steps`` batches are drawn once (masked once) and both models, starting
from the same weights, train on them with the side-by-side benchmark's own timing (measure.py:
untimed warm-up, then alternating rounds); the script prints the median step time of each, their
ratio, and the two losses on the first batch in eval mode (they must agree).
"""
import argparse

import torch

from recbole_saerec.experiments.speed.measure import median, new_records, time_train, warm_up
from recbole_saerec.quick_start import prepare
from recbole_saerec.utils import get_model

MODELS = ("BERT4Rec", "PackedBERT4Rec")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="amazon-beauty")
    p.add_argument("--data_path", default=None, help="folder holding <dataset>/ (default: the dataset yaml's)")
    p.add_argument("--steps", type=int, default=10, help="timed batches per model per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches per model, once")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = {"show_progress": False, "loss_type": "CE"}
    if args.data_path:
        overrides["data_path"] = args.data_path
    config, _data, train, _valid, _test = prepare("BERT4Rec", args.dataset, config_dict=overrides)
    batches = []
    for batch in train:
        batches.append(batch)
        if len(batches) == args.warmup + args.steps:
            break
    models = {name: get_model(name)(config, train._dataset) for name in MODELS}
    models["PackedBERT4Rec"].load_state_dict(models["BERT4Rec"].state_dict())
    index = batches[0][models["BERT4Rec"].MASK_INDEX]
    print(f"[bert4rec] {args.dataset}: {len(batches)} batches of {len(batches[0])}; mask slots per sequence "
          f"{index.shape[1]}, real {float((index > 0).sum(1).float().mean()):.2f} on average", flush=True)
    with torch.no_grad():
        losses = {name: float(m.eval().calculate_loss(batches[0])) for name, m in models.items()}
    print(f"[bert4rec] same weights, first batch, eval mode: loss {losses}", flush=True)
    built = {name: {"model": m, "optimizer": torch.optim.Adam(m.parameters(), lr=config["learning_rate"])}
             for name, m in models.items()}
    records, cpu = new_records(MODELS), torch.device("cpu")
    warm_up(built, records, batches[:args.warmup], cpu)
    time_train(built, records, MODELS, batches[args.warmup:], args.rounds, cpu)
    medians = {name: median(rec["step_s"]) for name, rec in records.items()}
    per_epoch = len(train)
    for name in MODELS:
        print(f"{name:15s} step {1e3 * medians[name]:7.1f} ms   epoch of {per_epoch} steps ~ "
              f"{medians[name] * per_epoch / 60:5.1f} min   ratio {medians[name] / medians['BERT4Rec']:.2f}")


if __name__ == "__main__":
    main()
