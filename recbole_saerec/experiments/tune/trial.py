"""The trainable: one RecBole ``Trainer.fit`` per trial, reporting validation metrics and a checkpoint per epoch.

Also `evaluate_best`, which reloads a trial's best-epoch weights for the final TEST metrics.
"""
import logging
import math
import os
import tempfile

from recbole_saerec.experiments.tune.configs import isolated_argv, trial_config

CKPT_FILE = "trial_state.pt"


def _plain(value):
    return float(value) if isinstance(value, (int, float)) else value


def _save_trial_state(path, trainer, epoch_idx, best):
    import torch

    torch.save({
        "epoch": epoch_idx,
        "cur_step": trainer.cur_step,
        "best_valid_score": float(trainer.best_valid_score),
        "best_valid_result": {k: _plain(v) for k, v in dict(trainer.best_valid_result or {}).items()},
        "model": trainer.model.state_dict(),
        "other_parameter": trainer.model.other_parameter(),
        "optimizer": trainer.optimizer.state_dict(),
        "best_epoch": best["epoch"],
        "best_model": best["state"],
        "best_other_parameter": best["other"],
        "torch_rng": torch.get_rng_state(),
    }, path)


def load_trial_state(checkpoint):
    """The state dict inside a tune.Checkpoint written by a trial of this module."""
    import torch

    with checkpoint.as_directory() as d:
        # A file the sweep wrote itself (plain tensors and dicts); see trainer.load_checkpoint.
        return torch.load(os.path.join(d, CKPT_FILE), map_location="cpu", weights_only=False)


def _clone_state(model):
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def _restore(checkpoint, model, trainer):
    """Continue a restored trial from its checkpoint. Returns (best-epoch record, first epoch to run)."""
    import torch

    if not checkpoint:
        return {"epoch": -1, "state": None, "other": None}, 0
    state = load_trial_state(checkpoint)
    model.load_state_dict(state["model"])
    model.load_other_parameter(state["other_parameter"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.start_epoch = state["epoch"] + 1
    trainer.cur_step = state["cur_step"]
    trainer.best_valid_score = state["best_valid_score"]
    trainer.best_valid_result = state["best_valid_result"]
    torch.set_rng_state(state["torch_rng"])
    best = {"epoch": state["best_epoch"], "state": state["best_model"], "other": state["best_other_parameter"]}
    return best, trainer.start_epoch


def _remember_valid_results(trainer):
    """RecBole's callback_fn gets only the valid score: keep the last validation's full result dict too."""
    last_result = {}
    valid_epoch = trainer._valid_epoch

    def remember_valid(*args, **kwargs):
        score, result = valid_epoch(*args, **kwargs)
        last_result.clear()
        last_result.update(result)
        return score, result

    trainer._valid_epoch = remember_valid
    return last_result


class QuietTrialLog(logging.Filter):
    """Drops the run's full config and dataset dumps from a trial's log: Ray forwards every trial's
    output to the sweep's console, where two trials' dumps were most of a sweep's log. The sweep's
    setup.json and each trial's parameters keep what they said."""

    def filter(self, record):
        from recbole.config import Config
        from recbole.data.dataset import Dataset

        return not isinstance(record.msg, (Config, Dataset))


def train_trial(params, setup):
    """Tune function trainable: one RecBole Trainer.fit, reporting after every validation."""
    import torch
    from ray import tune

    from recbole_saerec.cli import ignore_known_warnings
    from recbole_saerec.quick_start import build_model, prepare
    from recbole_saerec.utils import get_trainer

    ignore_known_warnings()  # a trial process is not under the command's warning filters
    logging.getLogger().addFilter(QuietTrialLog())
    torch.set_num_threads(max(1, int(math.ceil(setup["cpus_per_trial"]))))
    with isolated_argv([]):
        config, _, train_data, valid_data, _ = prepare(setup["model"], setup["dataset"], None,
                                                       trial_config(setup, params))
        where = placement(config)  # inside isolated_argv: the CUDA_VISIBLE_DEVICES that torch saw
    model = build_model(config, train_data)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    metric = config["valid_metric"].lower()

    best, resumed_from = _restore(tune.get_checkpoint(), model, trainer)
    last_result = _remember_valid_results(trainer)

    def report(epoch_idx, valid_score):
        if trainer.cur_step == 0:  # RecBole's early_stopping resets it on an improvement
            best.update(epoch=epoch_idx, state=_clone_state(model), other=model.other_parameter())
        metrics = {k.lower(): _plain(v) for k, v in last_result.items()}
        metrics.update({
            metric: float(valid_score),
            "epoch": epoch_idx + 1,
            "best_score": float(trainer.best_valid_score),
            "best_epoch": best["epoch"] + 1,
            "train_loss": _plain(trainer.train_loss_dict.get(epoch_idx, float("nan"))),
            "patience_stop": trainer.cur_step > trainer.stopping_step,
            "resumed_from": resumed_from,
            **where,
        })
        with tempfile.TemporaryDirectory(prefix="saerec-ckpt-") as tmp:
            _save_trial_state(os.path.join(tmp, CKPT_FILE), trainer, epoch_idx, best)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    trainer.fit(train_data, valid_data, verbose=True, saved=False, show_progress=False, callback_fn=report)


def placement(config):
    """Where a trial runs: its Ray node, the GPUs Ray assigned, and what RecBole made of them.

    Ray sets CUDA_VISIBLE_DEVICES to the GPU(s) it assigned to the trial; the plugin's
    Config keeps that value as `gpu_id` instead of overwriting the variable from the
    yaml's gpu_id (RecBole's behaviour, which would put every trial on GPU 0).
    """
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(),
            "ray_gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "recbole_gpu_id": str(config["gpu_id"]), "device": str(config["device"])}


def evaluate_best(setup, params, checkpoint):
    """Valid (as a check) and TEST metrics of a trial's best-epoch weights; no retraining."""
    import torch

    from recbole_saerec.quick_start import build_model, prepare
    from recbole_saerec.utils import get_trainer

    torch.set_num_threads(max(1, int(math.ceil(setup["cpus_per_trial"]))))
    state = load_trial_state(checkpoint)
    with tempfile.TemporaryDirectory(prefix="saerec-eval-") as tmp, isolated_argv([]):
        cfg = trial_config(setup, params)
        cfg["checkpoint_dir"] = tmp
        config, _, train_data, valid_data, test_data = prepare(setup["model"], setup["dataset"], None, cfg)
        model = build_model(config, train_data)
        model.load_state_dict(state["best_model"])
        model.load_other_parameter(state["best_other_parameter"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        valid = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
        test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    return {"best_epoch": state["best_epoch"] + 1, "valid": {k: _plain(v) for k, v in valid.items()},
            "test": {k: _plain(v) for k, v in test.items()}}
