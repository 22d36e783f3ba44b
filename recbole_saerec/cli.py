"""What every plugin command shares: one-line errors, ``--debug``, and which flags RecBole sees.

- :func:`run_main` wraps a command's ``main``: a user mistake (bad flag, missing file,
  unknown model, unprepared dataset, wrong intent artefacts) prints ``error: <message>``
  to stderr and exits with status 2; anything else is a bug and keeps its traceback.
  ``--debug`` shows the traceback for user mistakes too.
- :func:`config_args` turns the ``--key=value`` items a command did not parse itself into
  config keys, refusing anything else with the fix; :func:`recbole_cmd_line` scopes them
  as the only command line RecBole's ``Config`` reads (its ``_load_cmd_line`` would
  otherwise read ``sys.argv``, warn about the plugin's own flags, and let them leak into
  every Config the command builds).
- :func:`config_files` resolves ``--config_files`` from any working folder.

This module imports neither torch nor RecBole: ``--help`` and errors stay instant.
"""
import contextlib
import os
import re
import sys
import warnings

from recbole_saerec.settings import PROPERTIES_DIR


class UsageError(Exception):
    """A mistake in how a command was called or configured; the message says the fix."""


# Exceptions whose message is the whole story, matched by class name along the MRO so that
# this module does not import the packages defining them (RecBole, torch, the intent build).
USER_ERROR_NAMES = {
    "UsageError",            # this module: flags, config files, checkpoints
    "UnknownModelError",     # utils.get_model: misspelled model name
    "UntrustedCheckpointError",  # trainer.load_checkpoint: a pickle checkpoint without --trust_checkpoint
    "DamagedFileError",      # artefacts: a checkpoint or tensor file cut short or overwritten
    "DatasetFilesMissingError",  # data.check: dataset not prepared / data_path wrong
    "AtomicFileError",       # data.check: a malformed atomic file (names file and line)
    "ConfigValueError",      # config_check: a config value out of range / of the wrong type
    "PrepareError",          # data.prepare_amazon: bad or missing raw files
    "IntentArtefactError",   # artefacts: missing or mismatched intent build
    "CorpusError",           # intents.corpus: no usable text
    "IntentBuildError",      # intents.build: settings that do not fit the corpus (k > latents, no intent kept)
    "BadTextError",          # data.text: a line that is not valid in its encoding (on_bad_line: error)
    "JudgeError",            # intents.judge: an unreachable or misbehaving judge server
    "UnsupportedModelError",  # probe: a model the probe cannot read
}


# A dataset name (or an intent tag) becomes part of folder and file names: <data_path>/<dataset>/<dataset>.inter,
# RecBole's log file, saved_intents/<dataset>/<intent_tag>. A path separator or a leading dot would put
# them somewhere else (or nowhere: RecBole's log file then fails to open); the folder belongs in data_path.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def plain_name_problem(key, value, folder_key="data_path"):
    """Why ``value`` cannot be the name ``key`` asks for (a sentence naming the fix), or None.

    ``folder_key``: the setting a folder in a dataset name belongs to (the prepare command's --out).
    """
    if isinstance(value, str) and PLAIN_NAME.fullmatch(value):
        return None
    hint = ""
    if key == "dataset" and isinstance(value, str) and ("/" in value or "\\" in value):
        folder, _, name = value.replace("\\", "/").rstrip("/").rpartition("/")
        hint = f" The folder belongs in {folder_key}: --{key}={name} --{folder_key}=<{folder_key}>/{folder}."
    return (f"{key}={value!r} is not a plain name: use letters, digits, '.', '_', '-' and '+', starting with a "
            f"letter or digit (it becomes part of folder and file names).{hint}")


def is_user_error(exc):
    return any(cls.__name__ in USER_ERROR_NAMES for cls in type(exc).__mro__)


# Warnings that are known, harmless and not ours, each hidden for the one module that raises it:
# RecBole's Trainer builds torch.cuda.amp.GradScaler even on a CPU, a spelling torch deprecated.
KNOWN_WARNINGS = [
    {"message": r"`torch\.cuda\.amp\.GradScaler", "category": FutureWarning, "module": r"recbole\.trainer"},
]


def ignore_known_warnings():
    """Hide KNOWN_WARNINGS (in the current warnings context): every command, and each Ray Tune trial
    process, which runs outside the command's context."""
    for spec in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", **spec)


def run_main(main, argv=None, prog=None):
    """Call ``main(argv)`` with ``--debug`` removed; one-line message for user mistakes.

    Returns the process exit status: 0 (or ``main``'s own int status), 2 for a user
    mistake, 130 on Ctrl-C. Real bugs propagate with their traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        with warnings.catch_warnings():
            ignore_known_warnings()
            status = main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - sorted into user mistakes and bugs right here
        if debug or not is_user_error(exc):
            raise
        name = prog or os.path.basename(sys.argv[0] or "command")
        print(f"{name}: error: {exc}\n(add --debug for the traceback)", file=sys.stderr)
        return 2
    return status if isinstance(status, int) else 0


def config_args(items):
    """``['--epochs=5', '--data_path=x']`` -> ``{'epochs': '5', 'data_path': 'x'}`` (values stay strings).

    Anything not of the form ``--key=value`` is a mistake (RecBole would only warn that
    it "will not be used"): refuse it, naming the form that works.
    """
    out = {}
    for item in items:
        key, sep, value = item[2:].partition("=") if item.startswith("--") else ("", "", "")
        if not sep or not key:
            hint = f"--{item.lstrip('-')}=VALUE" if item.startswith("-") else f"--KEY={item}"
            raise UsageError(f"unrecognised argument {item!r}: config keys are given as --key=value "
                             f"(e.g. {hint}); --help lists the command's own flags")
        if key in out and out[key] != value:
            raise UsageError(f"--{key} given twice with different values ({out[key]!r}, {value!r})")
        out[key] = value
    return out


_RECBOLE_CMD = None  # the config keys RecBole's Config reads as its command line, while scoped


@contextlib.contextmanager
def recbole_cmd_line(keys):
    """Within the block, every plugin ``Config`` reads exactly ``keys`` (a dict of strings) as its
    command line instead of ``sys.argv``; pass ``{}`` when the command gives config another way."""
    global _RECBOLE_CMD
    saved, _RECBOLE_CMD = _RECBOLE_CMD, dict(keys)
    try:
        yield
    finally:
        _RECBOLE_CMD = saved


def scoped_cmd_line():
    """The scoped command-line keys, or None outside :func:`recbole_cmd_line` (then ``sys.argv``)."""
    return None if _RECBOLE_CMD is None else dict(_RECBOLE_CMD)


def config_files(value):
    """``--config_files`` (space- or comma-separated) -> absolute paths.

    A path is taken as given (relative to the working folder) when it exists there, else
    relative to the package's ``properties/`` folder, so ``properties/demo-ml-100k.yaml`` and
    ``demo-ml-100k.yaml`` work from any folder.
    """
    if not value:
        return None
    out = []
    for name in value.replace(",", " ").split():
        candidates = [name, os.path.join(PROPERTIES_DIR, name)]
        if name.startswith("properties" + os.sep) or name.startswith("properties/"):
            candidates.append(os.path.join(PROPERTIES_DIR, name.split("/", 1)[1]))
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found is None:
            raise UsageError(f"config file {name!r} not found in the working folder {os.getcwd()} nor in "
                             f"{PROPERTIES_DIR}; give a path that exists")
        out.append(os.path.abspath(found))
    return out
