"""Which checkpoint a command means, and reading it: shared by explain, steer, probe (and guided).

A command accepts a ``.pth`` file or a folder: a benchmark run folder
(``<work_dir>/<run_id>/``, where the benchmark keeps each run's valid-selected checkpoint) or any
``checkpoint_dir`` holding exactly one model checkpoint. Reading goes through
:func:`recbole_saerec.trainer.load_checkpoint`, which refuses arbitrary pickles unless the
caller trusts the file (``--trust_checkpoint``; a run trusts the file it wrote itself) and calls
a file that is cut short or overwritten damaged. :func:`check_checkpoint_fits` then refuses, before
any data is loaded, a model the command cannot read and data other than the data it was trained on.
"""
import glob
import os

from recbole_saerec.cli import UsageError, recbole_cmd_line

# Files a run folder may hold besides the model checkpoint: S3Rec's stage-1 weights, and the
# training state of an unfinished resumable run (trainer.RESUME_SUFFIX).
NOT_MODEL_CHECKPOINTS = {"pretrained.pth"}


def _model_checkpoints(pattern):
    from recbole_saerec.trainer import RESUME_SUFFIX

    return sorted(p for p in glob.glob(pattern)
                  if os.path.basename(p) not in NOT_MODEL_CHECKPOINTS and not p.endswith(RESUME_SUFFIX))


def resolve_checkpoint(path):
    """A ``.pth`` path, or a folder holding exactly one model checkpoint (directly or one level down)."""
    path = str(path)
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise UsageError(f"no checkpoint at {path} (relative to the working folder {os.getcwd()}); give a .pth "
                         f"file or a benchmark run folder (<work_dir>/<run_id>, kept by default)")
    found = _model_checkpoints(os.path.join(path, "*.pth")) or _model_checkpoints(os.path.join(path, "*", "*.pth"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"no .pth checkpoint in {path} or its sub-folders (a benchmark run with "
                         f"--drop_checkpoints keeps none: rerun it without that flag)")
    shown = "\n  ".join(found[:10]) + ("\n  ..." if len(found) > 10 else "")
    raise UsageError(f"{path} holds {len(found)} checkpoints; pass one of them:\n  {shown}")


def read_checkpoint(path, trust=False, map_location="cpu"):
    """The checkpoint dict of `path` (file or folder, see :func:`resolve_checkpoint`), with ``path`` set to the file."""
    from recbole_saerec.trainer import load_checkpoint

    file = resolve_checkpoint(path)
    saved = load_checkpoint(file, map_location, trust=trust)
    saved["path"] = file
    return saved


def checkpoint_config(saved, config_dict=None):
    """The run's Config from a checkpoint (trainer.checkpoint_config), built from the checkpoint's
    settings only: this command's own flags (--user, --checkpoint ...) are not config keys."""
    from recbole_saerec.trainer import checkpoint_config as from_checkpoint

    with recbole_cmd_line({}):
        return from_checkpoint(saved, config_dict)


# What a command may need of the model: the class flag that says the model has it, and its name in messages.
MODEL_NEEDS = {
    "intents": ("needs_intents", "a model with intents (SAERec and its variants)"),
    "guided": ("needs_guided", "GuidedRec (attribute blocks)"),
}


def check_checkpoint_fits(saved, config, needs=None):
    """Before a command loads the data and the model: refuse, in one line, a checkpoint of a model the
    command cannot read (``needs``: a key of MODEL_NEEDS, or None for any model), and data that is not
    the data the model was trained on.

    The data check compares the checkpoint's record of its data files (``data_files``: every atomic
    file of the dataset, by sha256) with the files at ``config['data_path']`` now; a checkpoint written
    before that record existed is checked, for a model with intents, against the raw-file hashes its
    intent build recorded. Either way a changed file would put other ids or other texts beside what the
    model learned, silently: the command stops instead.
    """
    from recbole_saerec.utils import get_model

    path, name = saved.get("path", "the checkpoint"), config["model"]
    model_class = get_model(name)
    if needs is not None:
        flag, wanted = MODEL_NEEDS[needs]
        if not getattr(model_class, flag, False):
            raise UsageError(f"{path} holds a {name} model, and this command reads {wanted}; "
                             "python -m recbole_saerec.analysis.probe reads any sequential model.")
    saved_config = saved.get("config")
    recorded = saved_config.get("data_files") if isinstance(saved_config, dict) else None
    if recorded:
        _same_files(path, config["data_path"], recorded, "the data it was trained on")
    elif getattr(model_class, "needs_intents", False):
        _same_files(path, config["data_path"], _intent_sources(config), "the texts its intents were built from")


def _intent_sources(config):
    import json

    from recbole_saerec.artefacts import MANIFEST, resolve_intent_dir

    manifest = os.path.join(resolve_intent_dir(config), MANIFEST)
    if not os.path.isfile(manifest):
        return {}
    with open(manifest, encoding="utf-8") as f:
        return json.load(f).get("sources") or {}


def _same_files(path, data_path, recorded, what):
    from recbole_saerec.artefacts import file_sha256

    for name, digest in sorted(recorded.items()):
        file = os.path.join(data_path, name)
        if not os.path.isfile(file):
            raise UsageError(f"{file} is missing: {path} was trained on {what}. Point --data_path at the folder "
                             f"holding {os.path.basename(os.path.normpath(data_path))}/ as it was for training.")
        if not file_sha256(file).startswith(digest):
            raise UsageError(f"{file} changed after {path} was trained (it is not {what}): the model's items and "
                             f"intents would be shown beside other ids or texts. Restore the file, point --data_path "
                             f"at the data the model was trained on, or train again.")


def add_checkpoint_args(parser, what="a trained model", scoring=False):
    """The --checkpoint, --trust_checkpoint and --data_path flags, worded the same in every command;
    with ``scoring`` also --device and --batch_size, for commands that score every test user."""
    parser.add_argument("--checkpoint", required=True,
                        help=f"{what}: a .pth file, or a benchmark run folder holding one")
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="allow a full (pickled) checkpoint: only for files you or your own runs wrote, since "
                             "unpickling can run code")
    parser.add_argument("--data_path", default=None,
                        help="folder holding <dataset>/ (default: the checkpoint's; give it when the data moved)")
    if scoring:
        parser.add_argument("--device", help="cpu | cuda (default: the training device when available)")
        parser.add_argument("--batch_size", type=int, help="users per forward pass (default: eval_batch_size)")
