"""The plugin's trainer layer: safe checkpoints, resumable runs, the paper's seen-item mask.

Mixed in front of whichever RecBole trainer a model uses (``with_checkpoint_fix``), so every
model run through the plugin gets the same three things:

* **Checkpoints that load without arbitrary pickle.** RecBole pickles its whole ``Config``
  object with protocol 4, which torch >= 2.6's weights-only loader refuses (RecBole issue
  2212), so RecBole's own ``evaluate(load_best_model=True)`` crashes. We save plain data
  instead (tensors, numbers, strings; the config as a dict of plain values) and always load
  with ``weights_only=True``. A file that needs arbitrary pickle (one written by RecBole
  itself, or a crafted one) is refused unless the caller passes ``trust=True``. Writes go
  through ``fileio.save_tensor_file_atomic`` (a unique temporary, fsync, then
  ``os.replace``): a kill at any moment leaves the previous checkpoint whole.
* **Runs that survive interruption** (``resume_state: True``). After every evaluated epoch
  the full training state (model, optimiser, epoch, best-so-far, early-stopping counter,
  the RNG streams and the train loader's shuffle generator) is written atomically to
  ``<checkpoint_dir>/<model>-resume.pth``; a rerun with the same checkpoint_dir continues
  from it and ends with the same result as an uninterrupted run. A state saved with other
  settings (a changed default, learning rate, intent set ...) is moved aside, never continued.
* **The paper's seen-item mask** (``mask_history: True``). The SAERec paper, the authors'
  code and the ICLRec/ICSRec line rank with the user's history removed
  (``rating_pred[train_matrix > 0] = 0``). RecBole forces ``repeatable: True`` for
  sequential models and masks only the padding item, so their numbers are not comparable.
  With the switch on, every item of the evaluated user's input sequence (for test: the
  training items and the valid item) gets -inf before ranking, for every sequential model.

A model that defines ``before_train_epoch(train_data, epoch)`` has it called before each training
epoch (the per-epoch clustering of ICLRec and ICSRec); it must be a function of the model's
weights and the epoch only, so that a resumed run repeats it exactly.

Each epoch's valid score, loss, wall time and the model's own diagnostics (``epoch_stats()``,
e.g. SAERec's fusion weights) are kept in ``trainer.history`` for the run record.
"""
import os
import random
import time

import numpy as np
import torch

from recbole_saerec.fileio import DamagedFileError, save_tensor_file_atomic, tensor_file_damage

CHECKPOINT_FORMAT = "recbole_saerec.checkpoint/1"
RESUME_SUFFIX = "-resume.pth"


class UntrustedCheckpointError(ValueError):
    """A checkpoint that only loads by running arbitrary pickle code."""


# ----------------------------------------------------------------------------- files
def plain(obj):
    """obj reduced to what torch's weights-only loader accepts (None where it cannot be)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            v = plain(v)
            if v is not None or obj[k] is None:
                out[str(k)] = v
        return out
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):  # before float: np.float64 IS a float subclass
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj
    return None


def load_checkpoint(path, map_location="cpu", trust=False):
    """Load a checkpoint with ``weights_only=True``; arbitrary pickle only with ``trust=True``.

    Checkpoints the plugin writes are plain data and always load. A RecBole-written file
    (its pickled Config) or any file that needs code to unpickle raises
    UntrustedCheckpointError naming the file and the way out (``--trust_checkpoint``).
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at {path}.")
    damage = tensor_file_damage(path)
    if damage:  # not a trust question: no flag makes a damaged file load
        raise DamagedFileError(f"{path} is damaged: {damage}. It cannot be loaded, with or without "
                               f"--trust_checkpoint: use another copy of the checkpoint, or train again.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError/RuntimeError variants
        if not trust:
            raise UntrustedCheckpointError(
                f"{path} is not a plain-data checkpoint (written by RecBole itself, by an older version of "
                f"this plugin, or crafted): loading it would run arbitrary pickle code. If you trust the file, "
                f"pass --trust_checkpoint (trust=True). Loader said: {str(err).splitlines()[0][:200]}") from err
    return torch.load(path, map_location=map_location, weights_only=False)


def resume_path(checkpoint_dir, model_name):
    return os.path.join(checkpoint_dir, f"{model_name}{RESUME_SUFFIX}")


# ----------------------------------------------------------------------------- the seen-item mask
def mask_seen_items(scores, interaction, config):
    """-inf on each row's input-sequence items when ``config['mask_history']`` (module docstring).

    The one implementation: the trainer's evaluation, explanations and steering all rank with it,
    so an unsteered steering run reproduces the checkpoint's test metrics.
    """
    seq_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    if config["mask_history"] and seq_field in interaction:  # sequential models; general ones use history_index
        scores.scatter_(1, interaction[seq_field].to(scores.device), -np.inf)
    return scores


# ----------------------------------------------------------------------------- resuming the same run
# Settings a run may change between its interrupted part and its continuation: where and how it
# runs, and when it stops (a longer cap or patience continues the same trajectory).
RESUME_FREE = {"epochs", "stopping_step", "show_progress", "state", "checkpoint_dir", "data_path", "gpu_id", "device",
               "use_gpu", "eval_batch_size", "worker", "log_wandb", "wandb_project", "save_dataset",
               "save_dataloaders", "dataset_save_path", "dataloaders_save_path", "single_spec", "local_rank",
               "world_size", "ip", "port", "nproc", "offset", "intent_root", "intent_dir", "intent_cache_dir",
               "intent_num_threads", "explain_user", "log_dir", "tensorboard_dir",
               # how undecodable text is read: a build whose text had such lines stopped under the old
               # (only) behaviour, and the intents a run reads are checked by their own fingerprint
               "on_bad_line",
               # the data's file hashes: recorded for the analysis tools; a state saved before they were
               # recorded lacks them, and that alone must not discard it
               "data_files",
               # speed switches whose numerical effect is checked where they act (bf16 encoding: cos >= 0.999;
               # the packed paths and the fused CE: the same outputs and gradients; the bf16 CE: close to fp32,
               # tests/test_speed_equivalence.py). bf16_ce is the newest: a state saved before it existed ran fp32
               "intent_encode_bf16", "pack_tokens", "pack_attention", "fused_ce", "cpu_rand_dropout", "bf16_ce",
               # the item-text build a run read: its file name is its fingerprint (of settings compared here)
               "item_text_path"}


def changed_settings(saved, current, free=RESUME_FREE):
    """Keys whose value differs between a saved state's config and the current one (`free` aside)."""
    current = plain(dict(current))
    return sorted(k for k in set(saved) | set(current)
                  if k not in free and saved.get(k) != current.get(k))


# ----------------------------------------------------------------------------- RNG streams
def rng_state(train_data):
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state["numpy"] = [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    generator = getattr(train_data, "generator", None)
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def set_rng_state(state, train_data):
    torch.set_rng_state(state["torch"].cpu())
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "loader" in state and getattr(train_data, "generator", None) is not None:
        train_data.generator.set_state(state["loader"].cpu())


# ----------------------------------------------------------------------------- the mixin
class CheckpointMixin:
    """Placed in front of a RecBole trainer class: see the module docstring."""

    def _payload(self, epoch):
        return {
            "format": CHECKPOINT_FORMAT, "model": self.config["model"], "dataset": self.config["dataset"],
            "config_external": plain(self.config.external_config_dict),
            "config": plain(self.config.final_config_dict),
            "epoch": epoch, "cur_step": self.cur_step, "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(), "other_parameter": plain(self.model.other_parameter()),
            "optimizer": self.optimizer.state_dict(),
        }

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        path = kwargs.pop("saved_model_file", self.saved_model_file)
        save_tensor_file_atomic(path, self._payload(epoch))
        if verbose:
            self.logger.info(f"Saving current: {path}")

    def resume_checkpoint(self, resume_file, trust=False):
        checkpoint = load_checkpoint(resume_file, self.device, trust=trust)
        model_name = checkpoint.get("model") or checkpoint["config"]["model"]
        if model_name.lower() != self.config["model"].lower():
            raise ValueError(f"Checkpoint {resume_file} is of model {model_name}, not {self.config['model']}.")
        self.saved_model_file = str(resume_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
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

    # -- per-epoch model hooks (ICLRec / ICSRec cluster their training samples before each epoch)
    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        hook = getattr(self.model, "before_train_epoch", None)
        if hook is not None:
            start = time.time()
            hook(train_data, epoch_idx)
            self.logger.info(f"epoch {epoch_idx} set-up ({type(self.model).__name__}.before_train_epoch): "
                             f"{time.time() - start:.1f}s")
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)

    # -- the seen-item mask
    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        return interaction, mask_seen_items(scores, interaction, self.config), positive_u, positive_i

    # -- resumable fit
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self.history = []
        if not self._resumable(valid_data, saved):
            return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        state_file = resume_path(self.checkpoint_dir, self.config["model"])
        state = load_checkpoint(state_file, self.device) if os.path.isfile(state_file) else None
        changed = [] if state is None else changed_settings(state.get("config") or {}, self.config.final_config_dict)
        if changed:  # another run's state (a changed default, lr, keep rule ...): never continue it
            os.replace(state_file, state_file + ".stale")
            self.logger.warning(f"{state_file} was saved by a run with other settings ({', '.join(changed)}): "
                                f"moved to {os.path.basename(state_file)}.stale, training from scratch.")
            state = None
        if state is not None:
            self.model.load_state_dict(state["state_dict"])
            self.model.load_other_parameter(state.get("other_parameter"))
            self.optimizer.load_state_dict(state["optimizer"])
            self.start_epoch, self.cur_step = state["epoch"] + 1, state["cur_step"]
            self.best_valid_score, self.best_valid_result = state["best_valid_score"], state["best_valid_result"]
            self.saved_model_file, self.history = state["saved_model_file"], state["history"]
            set_rng_state(state["rng"], train_data)
            self.logger.info(f"Resumed from {state_file}: epoch {self.start_epoch}, best valid "
                             f"{self.best_valid_score:.4f}, {self.cur_step} epochs without improvement")
            # finished by the settings of THIS call: a raised epochs cap continues a run that hit the old one
            if self.cur_step > self.stopping_step or self.start_epoch >= self.epochs:
                return self.best_valid_score, self.best_valid_result
        epoch_start = [time.time()]

        def after_epoch(epoch_idx, valid_score):
            now = time.time()
            entry = {"epoch": epoch_idx, "valid_score": float(valid_score), "seconds": round(now - epoch_start[0], 3),
                     "train_loss": plain(self.train_loss_dict.get(epoch_idx))}
            stats = getattr(self.model, "epoch_stats", None)
            if stats is not None:
                entry.update(plain(stats()))
            self.history.append(entry)
            finished = self.cur_step > self.stopping_step or epoch_idx + 1 >= self.epochs
            state = {**self._payload(epoch_idx), "best_valid_result": plain(self.best_valid_result),
                     "saved_model_file": self.saved_model_file, "history": self.history,
                     "rng": rng_state(train_data), "finished": finished}
            save_tensor_file_atomic(state_file, state)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)
            epoch_start[0] = time.time()

        return super().fit(train_data, valid_data, verbose, saved, show_progress, after_epoch)

    def _resumable(self, valid_data, saved):
        """Only where the epoch loop is RecBole's base Trainer.fit (not a pre-training or tree trainer)."""
        from recbole.trainer import Trainer

        if not (self.config["resume_state"] and saved and valid_data and self.eval_step == 1):
            return False
        mro = type(self).__mro__
        owner = next(c for c in mro[mro.index(CheckpointMixin) + 1:] if "fit" in c.__dict__)
        return owner is Trainer


_FIXED = {}


def with_checkpoint_fix(trainer_class):
    """Return `trainer_class` with CheckpointMixin in front (cached, same name)."""
    if issubclass(trainer_class, CheckpointMixin):
        return trainer_class
    if trainer_class not in _FIXED:
        _FIXED[trainer_class] = type(trainer_class.__name__, (CheckpointMixin, trainer_class), {})
    return _FIXED[trainer_class]
