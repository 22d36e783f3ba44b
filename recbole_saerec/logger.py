"""RecBole's logger with its files where the config says (``log_dir``, ``tensorboard_dir``): :func:`init_logger`."""
import os

from recbole_saerec.settings import setting

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
