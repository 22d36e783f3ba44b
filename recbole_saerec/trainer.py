"""Trainer fixes for RecBole 1.2.1 on torch >= 2.6.

RecBole saves checkpoints as a pickled dict (config object included, pickle
protocol 4). torch >= 2.6 loads with ``weights_only=True`` by default, which
rejects these files before any allow-list is consulted (RecBole issue 2212), so
``trainer.evaluate(load_best_model=True)`` and ``resume_checkpoint`` crash.
The mixin below loads with ``weights_only=False`` -- only for checkpoint files
that this run wrote itself (``saved_model_file``) or that the user names
explicitly, the same trust RecBole's own loader assumes.
"""
import torch


def load_checkpoint(path, map_location="cpu"):
    """Load a RecBole/plugin checkpoint (a pickled dict) on any torch version."""
    return torch.load(str(path), map_location=map_location, weights_only=False)


class CheckpointMixin:
    def resume_checkpoint(self, resume_file):
        checkpoint = load_checkpoint(resume_file, self.device)
        self.saved_model_file = str(resume_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            raise ValueError(
                f"Checkpoint {resume_file} is of model {checkpoint['config']['model']}, "
                f"not {self.config['model']}."
            )
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = load_checkpoint(checkpoint_file, self.device)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)


_FIXED = {}


def with_checkpoint_fix(trainer_class):
    """Return `trainer_class` with CheckpointMixin in front (cached, same name)."""
    if issubclass(trainer_class, CheckpointMixin):
        return trainer_class
    if trainer_class not in _FIXED:
        _FIXED[trainer_class] = type(trainer_class.__name__, (CheckpointMixin, trainer_class), {})
    return _FIXED[trainer_class]
