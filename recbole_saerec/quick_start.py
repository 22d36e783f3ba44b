"""One run = one (model, dataset, config): the same path for SAERec and every RecBole baseline.

Mirrors ``recbole.quick_start.run_recbole`` (which we do not import: it pulls in
ray at import time and only knows RecBole's own models), using the plugin's
Config / get_model / get_trainer.
"""
import contextlib
import logging
import os
import re
import sys
import time
import warnings
from logging import getLogger

from recbole.data import create_dataset
from recbole.utils import get_environment, init_seed, set_color

from recbole_saerec.config import Config
from recbole_saerec.data import check_atomic_files, check_dataset_files, data_fingerprint, split_with_protocol
from recbole_saerec.logger import init_logger
from recbole_saerec.utils import get_model, get_trainer


def prepare(model=None, dataset=None, config_file_list=None, config_dict=None):
    """Config, logger, dataset and splits: everything before the model exists."""
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    check_dataset_files(config)  # [data] clear error + prepare command when the atomic files are missing
    check_atomic_files(config)  # [data] file:line errors for short lines, bad numbers, exact duplicates
    config["data_files"] = data_fingerprint(config)  # [data] kept in the checkpoint: the tools check it
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)  # [logs] log_dir / tensorboard_dir, not RecBole's fixed ./log
    logger = getLogger()
    if not any(isinstance(f, EpochsFromOne) for f in logger.filters):
        logger.addFilter(EpochsFromOne())
    logger.info(sys.argv)
    logger.info(config)
    with quiet_recbole_pandas():  # the intent build loads the dataset too
        ensure_intents(config)
    data = load_dataset(config)
    logger.info(data)
    # [data] protocol: clean (default) | authors_leaky (valid := test; comparison only, logs a warning)
    train_data, valid_data, test_data = split_with_protocol(config, data)
    return config, data, train_data, valid_data, test_data


class EpochsFromOne(logging.Filter):
    """Numbers epochs from 1 in the run's log, as every table, plot and progress line of the plugin does.

    RecBole's trainer logs its 0-based epoch index ("epoch 0 training", "best eval result in epoch 0")
    and the plugin's trainer follows it in the same log; run records keep that index (``epoch``,
    ``best_epoch``), only what a person reads says "epoch 1" for the first epoch. Rewrites those
    messages only, nothing else.
    """

    def filter(self, record):
        if isinstance(record.msg, str) and "epoch" in record.msg and not record.args:
            record.msg = re.sub(r"(epoch )(\d+)( training| evaluating| set-up)|"
                                r"((?:best eval result in epoch|Resume training from epoch|: epoch) )(\d+)",
                                _plus_one, record.msg)
        return True


def _plus_one(match):
    if match.group(2) is not None:
        return f"{match.group(1)}{int(match.group(2)) + 1}{match.group(3)}"
    return f"{match.group(4)}{int(match.group(5)) + 1}"


@contextlib.contextmanager
def quiet_recbole_pandas():
    """Hide RecBole's known pandas-2 warning blocks while the plugin loads a dataset.

    RecBole 1.2.1 fills NaNs with ``feat[field].fillna(..., inplace=True)``; pandas 2.x
    warns about that chained assignment (it still works; pandas 3 is refused at import,
    see recbole_saerec/__init__.py) on every load. Only that message, raised from RecBole's
    data code, is ignored: every other warning, ours included, still shows.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"A value is trying to be set on a copy of a DataFrame",
                                category=FutureWarning, module=r"recbole\.data\.")
        yield


def load_dataset(config):
    """RecBole's ``create_dataset``, quietly (see :func:`quiet_recbole_pandas`)."""
    with quiet_recbole_pandas():
        return create_dataset(config)


def ensure_intents(config, shared_cache=False, builder=None, log=None):
    """Models that read intent artefacts get them built offline first when asked to.

    ``shared_cache``: unless the config names a cache, every intent tag of the dataset shares one
    (artefacts.shared_cache_dir), so noIde filters the very same SAE latents as SAERec and
    KMeans-Intent clusters the very same embeddings: only the studied part differs (benchmark, tune).
    ``builder`` replaces ``build_intents`` (tests); ``log`` gets one line per set, cached or built.
    Returns the artefact directory (None for models without intents).
    """
    model_class = get_model(config["model"])
    if not getattr(model_class, "needs_intents", False):
        return None
    from recbole_saerec.artefacts import MANIFEST, resolve_intent_dir, shared_cache_dir
    from recbole_saerec.intents import build

    builder = builder or build.build_intents  # looked up now: the name tests (and users) patch
    intent_dir = resolve_intent_dir(config)
    # [intents] texts changed since the build, or built with another keep rule, method, k ...: rebuild or stop
    build.check_intent_sources(config, intent_dir, builder)
    build.check_build_settings(config, intent_dir, builder)
    if os.path.isfile(os.path.join(intent_dir, MANIFEST)) or not config["intent_autobuild"]:
        if log:
            log(f"intents: cached in {intent_dir}")
        check_intent_count(config, intent_dir)
        return intent_dir  # the model validates what is there (or reports what is missing)
    if shared_cache and not config["intent_cache_dir"]:
        config["intent_cache_dir"] = shared_cache_dir(config["intent_root"], config["dataset"])
    getLogger().info(set_color("Intent artefacts missing", "yellow")
                     + f": building them in {intent_dir} (cache {config['intent_cache_dir'] or 'default'})")
    start = time.time()
    builder(config, intent_dir=intent_dir)
    if log:
        log(f"intents: built in {intent_dir} in {time.time() - start:.0f}s")
    check_intent_count(config, intent_dir)
    return intent_dir


def check_intent_count(config, intent_dir):
    """``intents_retrieved`` against the intent set it retrieves from: the one config check that needs the
    intents built, done before the dataset is loaded or a model exists."""
    import json

    from recbole_saerec.artefacts import MANIFEST
    from recbole_saerec.config_check import ConfigValueError

    path = os.path.join(intent_dir, MANIFEST)
    if "intents_retrieved" not in config or not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        n_intents = json.load(f).get("n_intents")
    wanted = config["intents_retrieved"]
    if isinstance(n_intents, int) and isinstance(wanted, int) and wanted > n_intents:
        raise ConfigValueError(f"intents_retrieved={wanted} is more than the {n_intents} intents in {intent_dir}: "
                               f"choose 1 <= intents_retrieved <= {n_intents}, or keep more intents (intent_keep, "
                               "sae_n_latents).")


def ensure_guided(config, dataset):
    """Models that read guided attribute vectors get them built offline (or found) first; sets guided_path.

    Runs before the model's seed is set, so a cold or warm cache gives the model the same
    initialisation. A ``guided_path`` already in the config (a checkpoint's, or the user's) is kept;
    the one set here is recorded with the run's external settings, so its checkpoint names the build.
    """
    if not getattr(get_model(config["model"]), "needs_guided", False) or config["guided_path"]:
        return
    from recbole_saerec.intents.guided import build_guided

    path = os.path.abspath(build_guided(config, list(dataset.field2id_token[dataset.iid_field][1:]))["path"])
    config["guided_path"] = path
    config.external_config_dict["guided_path"] = path  # a setting of this run: the checkpoint keeps it


def ensure_item_text(config, dataset):
    """Models that read dense item-text vectors get them built offline (or found) first; sets item_text_path.

    As :func:`ensure_guided`: before the model's seed is set, recorded with the run's settings.
    """
    if not getattr(get_model(config["model"]), "needs_item_text", False) or config["item_text_path"]:
        return
    from recbole_saerec.intents.item_text import build_item_text

    with quiet_recbole_pandas():
        path = os.path.abspath(build_item_text(config, list(dataset.field2id_token[dataset.iid_field][1:]))["path"])
    config["item_text_path"] = path
    config.external_config_dict["item_text_path"] = path


def build_model(config, train_data):
    ensure_guided(config, train_data._dataset)
    ensure_item_text(config, train_data._dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    return get_model(config["model"])(config, train_data._dataset).to(config["device"])


def run(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True):
    """Train on train, select on valid, report test. Returns RecBole's result dict."""
    config, data, train_data, valid_data, test_data = prepare(model, dataset, config_file_list, config_dict)
    logger = getLogger()
    model = build_model(config, train_data)
    logger.info(model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    for handler in list(logging.getLogger().handlers):
        handler.flush()
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": dict(best_valid_result or {}),
        "test_result": dict(test_result or {}),
        "saved_model_file": trainer.saved_model_file if saved else None,
        "history": list(getattr(trainer, "history", None) or []),  # per evaluated epoch (resume_state runs)
    }
