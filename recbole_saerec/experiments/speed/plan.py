"""The run's set-up: one config per model, the data loaded once, the same batches and seeds for every model."""
import json
import os
import time

import torch

from recbole_saerec.experiments.speed.intents_timing import prepare_intents
from recbole_saerec.experiments.speed.measure import median


def add_setup_args(parser):
    """The flags :func:`shared_config` reads: the one set-up every model of a speed run shares."""
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--eval_batch", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--inner", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--max_len", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])


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
    """(names in run order, name -> model class, variants {name: overrides}).

    A variant's overrides may name its model (``"model": "PackedSASRec"``); without one it is SAERec's.
    """
    models = [m for m in args.models.split(",") if m]
    variants = json.loads(args.variants)
    model_class = {name: name for name in models}
    for name, overrides in variants.items():
        models.append(name)
        model_class[name] = overrides.get("model", "SAERec")
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
    saerec_cfg = None
    if "SAERec" in models or any(model_class == "SAERec" for model_class in _variant_models(variants)):
        intent_dir, intent_source, intent_info = prepare_intents(args, base)
        saerec_cfg = dict(base, intent_dir=os.path.abspath(intent_dir), intent_autobuild=False,
                          **saerec_overrides(args))
        if intent_source == "synthetic":
            saerec_cfg["intent_check_encoder"] = False
        if "SAERec" in models:
            configs["SAERec"] = Config(model="SAERec", dataset=args.dataset, config_dict=saerec_cfg)
    for name, overrides in variants.items():
        model = overrides.get("model", "SAERec")
        own = {k: v for k, v in overrides.items() if k != "model"}
        configs[name] = Config(model=model, dataset=args.dataset,
                               config_dict=dict(saerec_cfg if model == "SAERec" else base, **own))
    for name in models:
        if name not in configs:
            configs[name] = Config(model=name, dataset=args.dataset, config_dict=dict(base))
    return configs, intent_source, intent_info


def _variant_models(variants):
    return [overrides.get("model", "SAERec") for overrides in variants.values()]


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

    from recbole_saerec.quick_start import ensure_item_text

    built = {}
    for name in models:
        config = configs[name]
        ensure_item_text(config, train_data._dataset)  # the text controls' offline vectors, before the seed
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
