"""Model and trainer lookup (the plugin's own first, then every RecBole one), the run record, config values."""
import importlib
import importlib.util
import os
import platform
import subprocess


# RecBole is imported where it is used, not here: `setting` (below) is read by the offline
# pipeline and the data checks, and importing this module must not pull RecBole (and its
# model zoo) into them.

# RecBole's model packages, searched in this order. `exlib_recommender` comes last:
# importing it imports lightgbm and xgboost, which most users do not install, and
# RecBole's own get_model then crashes with ModuleNotFoundError for ANY unknown name.
RECBOLE_SUBMODULES = ["general_recommender", "sequential_recommender", "context_aware_recommender",
                      "knowledge_aware_recommender", "exlib_recommender"]

# name -> module inside recbole_saerec.model. One model per file.
PLUGIN_MODELS = {
    "SAERec": "recbole_saerec.model.saerec",
    "GuidedRec": "recbole_saerec.model.guidedrec",
    "PackedSASRec": "recbole_saerec.model.packed_sasrec",
    "PackedBERT4Rec": "recbole_saerec.model.packed_bert4rec",
    "CL4SRec": "recbole_saerec.model.cl4srec",
    "DuoRec": "recbole_saerec.model.duorec",
    "ICLRec": "recbole_saerec.model.iclrec",
    "ICSRec": "recbole_saerec.model.icsrec",
    "SASRecTextFeat": "recbole_saerec.model.textfeat",
    "LLMInit": "recbole_saerec.model.llminit",
}


class UnknownModelError(ValueError):
    """No plugin or RecBole model has this name (a user mistake: the CLIs print one line)."""


def plugin_model_names():
    return sorted(PLUGIN_MODELS)


def _undo_recbole_anomaly_detection():
    # recbole/model/sequential_recommender/sine.py calls
    # torch.autograd.set_detect_anomaly(True) at import, and importing ANY RecBole
    # sequential model imports it: every backward then NaN-checks each output,
    # ~44% of a training step, for every model in the process. Debug-only; off.
    import torch

    torch.autograd.set_detect_anomaly(False)


def get_model(model_name):
    """Return the model class: plugin models first, then RecBole's."""
    try:
        return _find_model(model_name)
    finally:
        _undo_recbole_anomaly_detection()


def _find_model(model_name):
    if model_name in PLUGIN_MODELS:
        return getattr(importlib.import_module(PLUGIN_MODELS[model_name]), model_name)
    for submodule in RECBOLE_SUBMODULES:
        module_path = f"recbole.model.{submodule}.{model_name.lower()}"
        try:
            found = importlib.util.find_spec(module_path)
        except ModuleNotFoundError as err:  # the exlib package itself needs lightgbm/xgboost
            if submodule == "exlib_recommender" and model_name.lower() in ("lightgbm", "xgboost"):
                raise ImportError(f"RecBole's {model_name} needs `pip install {model_name.lower()}`.") from err
            continue
        if found:
            module = importlib.import_module(module_path)
            if hasattr(module, model_name):
                return getattr(module, model_name)
    raise UnknownModelError(
        f"Unknown model '{model_name}'. Plugin models: {', '.join(plugin_model_names())}; "
        "or any RecBole model name (e.g. SASRec, GRU4Rec, BERT4Rec, BPR, LightGCN). "
        "Names are case-sensitive."
    )


def get_trainer(model_type, model_name):
    """Return the trainer class for a model, with the plugin's checkpoint fixes mixed in.

    A plugin model may ship `<Model>Trainer` in its module; otherwise RecBole's
    choice (S3RecTrainer, KGTrainer, ...) is used. Either way the result loads its
    own checkpoints under torch >= 2.6 (see trainer.CheckpointMixin).
    """
    from recbole_saerec.trainer import with_checkpoint_fix

    base = None
    if model_name in PLUGIN_MODELS:
        base = getattr(importlib.import_module(PLUGIN_MODELS[model_name]), model_name + "Trainer", None)
    if base is None:
        from recbole.utils import get_trainer as recbole_get_trainer

        base = recbole_get_trainer(model_type, model_name)
    return with_checkpoint_fix(base)


def _git_commit():
    """HEAD of the checkout this package runs from (``-dirty`` with uncommitted changes), or None."""
    root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _versions():
    import numpy
    import recbole
    import scipy
    import torch

    import recbole_saerec

    out = {"python": platform.python_version(), "torch": torch.__version__, "recbole": recbole.__version__,
           "numpy": numpy.__version__, "scipy": scipy.__version__, "recbole_saerec": recbole_saerec.__version__}
    try:
        import sklearn

        out["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    commit = _git_commit()
    if commit:
        out["git_commit"] = commit
    return out


def _machine(device=None, label=None):
    import torch

    info = {"host": platform.node(), "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "ld_preload": os.environ.get("LD_PRELOAD", "")}
    if device is not None:
        info["device"] = str(device)
    if torch.cuda.is_available():
        info["cuda_version"] = torch.version.cuda
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else ""
    except OSError:
        pass
    try:
        import psutil

        info["ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    from recbole_saerec.hardware import bf16_fast, cpu_capability

    # what the 'auto' speed switches (bf16_ce, intent_encode_bf16) resolve to on this machine
    info["cpu_capability"] = cpu_capability()
    info["bf16_native"] = bf16_fast(device if device is not None and str(device) != "cpu" else "cpu")
    if label:
        info["label"] = label
    return info


def run_environment(device=None, label=None):
    """What a result file records about where it was made: ``{"versions": ..., "machine": ...}``.

    ``versions``: python, torch, recbole, numpy, scipy, sklearn (when installed),
    recbole_saerec and ``git_commit`` (``-dirty`` when the checkout has uncommitted
    changes; absent outside a git checkout). ``machine``: host, platform, processor,
    CPU model and count, RAM, torch threads, GPU, ``device`` (when given) and ``label``
    (a free-text machine name, when given). One implementation for every tool.
    """
    return {"versions": _versions(), "machine": _machine(device, label)}


# ---------------------------------------------------------------------------- per-user metrics
def hit_ndcg_per_user(pos_index, pos_len, ks):
    """Per-user Hit@K and NDCG@K by RecBole's own metric classes (``metric_info`` is their per-user
    row before the mean): pos_index [U, >=max(ks)] bool hit flags of the ranked list, pos_len [U] the
    number of held-out items. The one implementation (benchmark, steering, the probe)."""
    import numpy as np
    from recbole.evaluator.metrics import NDCG, Hit

    from recbole_saerec.config import Config

    Config.compatibility_settings(None)  # RecBole's NDCG uses np.float: the numpy-2-safe aliases
    pos_index, pos_len = np.asarray(pos_index, dtype=bool), np.asarray(pos_len, dtype=np.int64)
    hit, ndcg = Hit.metric_info(None, pos_index), NDCG.metric_info(None, pos_index, pos_len)
    out = {}
    for k in ks:
        out[f"hit@{k}"] = hit[:, k - 1].astype(np.float64)
        out[f"ndcg@{k}"] = ndcg[:, k - 1].astype(np.float64)
    return out


# ---------------------------------------------------------------------------- config values
PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "properties")


def setting(config, key):
    """``config[key]``: the value the yaml layers (or the user) gave it. Defaults live in the yaml only.

    A key the config does not hold is an error, never a silent inline default: the
    message names the plugin yaml that declares it (a config built without that
    layer, e.g. a plain dict) or says where a new key must be declared.
    """
    try:
        present = key in config
    except TypeError:  # RecBole's Config only takes str keys; anything else is not a config
        present = False
    if not present:
        raise KeyError(_missing_setting(key))
    return config[key]


def _missing_setting(key):
    import glob
    import re

    pattern = re.compile(rf"^{re.escape(key)}\s*:", re.M)
    declared = []
    for path in sorted(glob.glob(os.path.join(PROPERTIES_DIR, "*.yaml"))
                       + glob.glob(os.path.join(PROPERTIES_DIR, "*", "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            if pattern.search(f.read()):
                declared.append(os.path.relpath(path, os.path.dirname(os.path.dirname(PROPERTIES_DIR))))
    if declared:
        return (f"config key '{key}' is missing: its default is declared in {', '.join(declared)}, which this "
                f"config did not load (build it with recbole_saerec.config.Config, or set '{key}').")
    return (f"config key '{key}' is missing and no yaml declares it: add '{key}: <default>  # (type) meaning' to "
            f"recbole_saerec/properties/overall.yaml (every model) or properties/model/<Model>.yaml, and a rule "
            f"to config_check.RULES.")


# ---------------------------------------------------------------------------- logging
LOG_LEVELS = {"info": 20, "debug": 10, "error": 40, "warning": 30, "critical": 50}  # RecBole's `state` names


def init_logger(config):
    """RecBole's logger (coloured console + a log file), with its files where the config says.

    RecBole's own ``init_logger`` always writes ``./log/<model>/...`` and its trainer
    ``./log_tensorboard/...``, relative to the working folder, so a run from a read-only folder
    failed even with every other path absolute. Here the log file goes to ``log_dir`` and the
    TensorBoard events to ``tensorboard_dir`` (``~``: none); the file name is RecBole's
    (``<model>-<dataset>-<time>-<config hash>.log``), so tools that read RecBole's logs still work.
    """
    import hashlib
    import logging

    import colorlog
    from recbole.utils.logger import RemoveColorFilter, log_colors_config
    from recbole.utils.utils import get_local_time

    try:
        from colorama import init as colour_init

        colour_init(autoreset=True)
    except ImportError:  # pragma: no cover - RecBole installs colorama
        pass
    level = LOG_LEVELS.get(str(config["state"]).lower(), logging.INFO) if config["state"] else logging.INFO
    console = logging.StreamHandler()
    console.setLevel(level)
    console.setFormatter(colorlog.ColoredFormatter("%(log_color)s%(asctime)-15s %(levelname)s  %(message)s",
                                                   "%d %b %H:%M", log_colors=log_colors_config))
    handlers = [console]
    log_dir = setting(config, "log_dir")
    if log_dir:
        folder = os.path.join(os.path.abspath(log_dir), config["model"])
        _writable(folder, "log_dir", "no log file")
        md5 = hashlib.md5("".join(str(v) for v in config.final_config_dict.values()).encode("utf-8")).hexdigest()[:6]
        path = os.path.join(folder, f"{config['model']}-{config['dataset']}-{get_local_time()}-{md5}.log")
        file = logging.FileHandler(path)
        file.setLevel(level)
        file.setFormatter(logging.Formatter("%(asctime)-15s %(levelname)s  %(message)s", "%a %d %b %Y %H:%M:%S"))
        file.addFilter(RemoveColorFilter())
        handlers.append(file)
    logging.basicConfig(level=level, handlers=handlers)  # as RecBole: the first set-up in a process stays
    _route_tensorboard(setting(config, "tensorboard_dir"))


class _NoTensorBoard:
    """What RecBole's trainer writes its TensorBoard scalars to when ``tensorboard_dir`` is ~."""

    def add_scalar(self, *args, **kwargs):
        pass

    def add_hparams(self, *args, **kwargs):
        pass

    def close(self):
        pass


def _route_tensorboard(tensorboard_dir):
    """RecBole's trainers open their TensorBoard writer with ``recbole.trainer.trainer.get_tensorboard``
    (``./log_tensorboard/<log file name>``); from now on it opens in ``tensorboard_dir``, or nowhere."""
    import logging

    import recbole.trainer.trainer as recbole_trainer

    def get_tensorboard(logger):
        if not tensorboard_dir:
            return _NoTensorBoard()
        from torch.utils.tensorboard import SummaryWriter

        files = [h.baseFilename for h in logging.getLogger().handlers if hasattr(h, "baseFilename")]
        run = os.path.basename(files[0]).split(".")[0] if files else f"model-{_local_time()}"
        folder = os.path.join(os.path.abspath(tensorboard_dir), run)
        _writable(folder, "tensorboard_dir", "no TensorBoard files")
        return SummaryWriter(folder)

    recbole_trainer.get_tensorboard = get_tensorboard


def _writable(folder, key, off):
    """Create ``folder``, or stop with one line naming the setting that put it there."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        from recbole_saerec.cli import UsageError

        raise UsageError(f"cannot create {folder} ({exc.strerror}): set {key} to a folder you can write "
                         f"(an absolute path when the working folder is read-only), or {key}: ~ for {off}.") from None


def _local_time():
    from recbole.utils.utils import get_local_time

    return get_local_time()


def __getattr__(name):
    if name == "ModelType":  # kept in the API, imported on first use
        from recbole.utils import ModelType

        return ModelType
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["UnknownModelError", "hit_ndcg_per_user", "get_model", "get_trainer", "init_logger", "plugin_model_names",
           "run_environment", "setting", "ModelType"]
