"""Which checkpoint a command means, and reading it: shared by explain, steer, labels, probe and attribution.

A command accepts a ``.pth`` file or a folder: a benchmark run folder
(``<work_dir>/<run_id>/``, where the benchmark keeps each run's valid-selected checkpoint) or any
``checkpoint_dir`` holding exactly one model checkpoint. Reading goes through
:func:`recbole_saerec.trainer.load_checkpoint`, which refuses arbitrary pickles unless the
caller trusts the file (``--trust_checkpoint``; a run trusts the file it wrote itself) and calls
a file that is cut short or overwritten damaged. :func:`check_checkpoint_fits` then refuses, before
any data is loaded, a model the command cannot read and data other than the data it was trained on.
:func:`load_model` does all of it and returns a :class:`Bundle` (config, dataset, splits, model,
the items' raw text); :func:`test_rows` and :func:`batches` walk its test users.
"""
import csv
import glob
import os
from dataclasses import dataclass

import numpy as np
import torch

from recbole_saerec.cli import UsageError, recbole_cmd_line
from recbole_saerec.data.text import BadLines, decode_lines
from recbole_saerec.settings import setting

TITLE_FIELDS = ("title", "movie_title", "name", "item_name")

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
    """The run's Config, rebuilt from a checkpoint (model, dataset and the settings in force).

    Plugin checkpoints store the external settings (command line, config files, config_dict)
    as plain values; the yaml layers are re-read, so a checkpoint stays loadable across
    plugin versions that keep their keys. A trusted RecBole checkpoint carries its Config.
    Built from the checkpoint's settings only: this command's own flags (--user, --checkpoint ...)
    are not config keys.
    """
    from recbole.config import Config as RecBoleConfig

    from recbole_saerec.config import Config

    if isinstance(saved.get("config"), RecBoleConfig):
        config = saved["config"]
        for key, value in (config_dict or {}).items():
            config[key] = value
        return config
    external = dict(saved.get("config_external") or {})
    external.update(config_dict or {})
    with recbole_cmd_line({}):
        return Config(model=saved["model"], dataset=saved["dataset"], config_dict=external)


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
    from recbole_saerec.fileio import file_sha256

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


# ---------------------------------------------------------------------------- the loaded model
@dataclass
class Bundle:
    """A trained model with its config, dataset, splits and item text."""
    config: object
    dataset: object
    train_data: object
    valid_data: object
    test_data: object
    model: object
    items: "ItemText"
    checkpoint: str


def load_model(checkpoint, data_path=None, device=None, quiet=True, trust=False, needs="intents"):
    """Load a saved checkpoint like RecBole's ``load_data_and_model``, through the plugin.

    Config comes from the checkpoint; dataset and splits are rebuilt with the plugin's
    Config / ``create_dataset`` / ``split_with_protocol`` (same protocol as training), the
    model is rebuilt and its weights loaded with :func:`recbole_saerec.analysis.checkpoints.read_checkpoint`.

    Args:
        checkpoint: a ``.pth`` written by ``run_recbole_saerec.py`` / ``quick_start.run``, or a
            benchmark run folder holding one (:func:`resolve_checkpoint`).
        data_path: folder holding ``<dataset>/`` when it moved since training (the config key).
        device: 'cpu' / 'cuda'; default: the training device if available, else the CPU.
        trust: allow a full pickled checkpoint (only for files you trust: unpickling can run code).
        needs: what the caller reads of the model (``MODEL_NEEDS``): a checkpoint of
            another model, or data changed since training, is refused before anything is loaded.
    """
    import logging

    from recbole.utils import init_seed

    from recbole_saerec.data import split_with_protocol
    from recbole_saerec.quick_start import load_dataset
    from recbole_saerec.utils import get_model

    saved = read_checkpoint(checkpoint, trust=trust)
    checkpoint = saved["path"]
    config = checkpoint_config(saved)
    if data_path:
        config["data_path"] = os.path.join(data_path, config["dataset"])
    check_checkpoint_fits(saved, config, needs)
    if device is None:
        device = config["device"]
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            device = "cpu"
    config["device"] = torch.device(device)
    config["use_gpu"] = torch.device(device).type == "cuda"
    if quiet:
        logging.getLogger().setLevel(logging.ERROR)
    init_seed(config["seed"], config["reproducibility"])
    dataset = load_dataset(config)
    train_data, valid_data, test_data = split_with_protocol(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    state = saved["state_dict"]
    if "intent_vectors" in state and hasattr(model, "intent_vectors"):
        # The catalogue and item activations come from the artefact directory (not from the
        # checkpoint): refuse an artefact build other than the one the model was trained with.
        if state["intent_vectors"].shape != model.intent_vectors.shape or not torch.equal(
                state["intent_vectors"].cpu(), model.intent_vectors.cpu()):
            raise UsageError(
                f"The intent artefacts in {model.intent_dir} are not the ones {checkpoint} was trained with "
                f"(intent vectors differ: {tuple(state['intent_vectors'].shape)} saved vs "
                f"{tuple(model.intent_vectors.shape)} now). Point intent_dir at the original build.")
    model.load_state_dict(state)
    model.load_other_parameter(saved.get("other_parameter"))
    model.eval()
    items = ItemText.from_config(config, dataset)
    return Bundle(config, dataset, train_data, valid_data, test_data, model, items, str(checkpoint))


# ------------------------------------------------------------------------- item text
class ItemText:
    """Raw item columns from ``<data_path>/<dataset>.item`` (what RecBole did not load)."""

    def __init__(self, columns, rows, title_field=None):
        self.columns = columns  # field names without the ':type' suffix
        self.rows = rows  # token -> {field: raw string}
        self.title_field = title_field or next((f for f in TITLE_FIELDS if f in columns), None)

    @classmethod
    def from_config(cls, config, dataset, title_field=None):
        path = os.path.join(config["data_path"], f"{config['dataset']}.item")
        if not os.path.isfile(path):
            return cls([], {}, title_field)
        encoding = config["encoding"] if "encoding" in config and config["encoding"] else "utf-8"
        sep = config["field_separator"] if "field_separator" in config and config["field_separator"] else "\t"
        rows = {}
        with open(path, "rb") as f:  # bytes not valid in `encoding`: the on_bad_line policy (data/text.py)
            reader = csv.reader(decode_lines(f, path, BadLines(setting(config, "on_bad_line")), encoding),
                                delimiter=sep, quoting=csv.QUOTE_NONE)
            header = [h.split(":")[0] for h in next(reader)]
            iid = dataset.iid_field if dataset.iid_field in header else header[0]
            key = header.index(iid)
            for rec in reader:
                if len(rec) > key:
                    rows[rec[key]] = dict(zip(header, rec))
        return cls(header, rows, title_field)

    def title(self, token):
        row = self.rows.get(str(token))
        if row and self.title_field and row.get(self.title_field, "").strip():
            from recbole_saerec.intents.corpus import clean_value

            return clean_value(row[self.title_field]) or str(token)  # as the corpus reads it: "&amp;" -> "&"
        return str(token)

    def field(self, token, name):
        row = self.rows.get(str(token))
        return (row or {}).get(name, "")

    def labels(self, token, name, sep=None):
        """A multi-valued column as a list: split on `sep`, else on '|' when present, else on spaces."""
        raw = self.field(token, name).strip()
        if not raw:
            return []
        if sep is None:
            sep = "|" if "|" in raw else None
        return [part.strip() for part in raw.split(sep) if part.strip()]


# ------------------------------------------------------------------------- test users
def test_rows(bundle, users=None):
    """Row indices in the test split for raw user tokens (None: every test user, in split order)."""
    ds = bundle.test_data._dataset
    uid_field = ds.uid_field
    uids = ds.inter_feat[uid_field].numpy()
    if users is None:
        return np.arange(len(uids))
    row_of = {int(u): r for r, u in enumerate(uids)}
    rows = []
    for token in users:
        token = str(token)
        if token not in ds.field2token_id[uid_field]:
            examples = ", ".join(str(t) for t in ds.id2token(uid_field, uids[:3]))
            raise KeyError(f"Unknown user '{token}': not a raw {uid_field} of dataset '{bundle.config['dataset']}' "
                           f"(its test users include {examples}).")
        uid = ds.field2token_id[uid_field][token]
        if uid not in row_of:
            raise KeyError(f"User '{token}' has no test interaction (too short a sequence?).")
        rows.append(row_of[uid])
    return np.asarray(rows, dtype=np.int64)


def batches(bundle, rows, batch_size=None):
    """Test interactions (the loader's own transform applied) in chunks of `batch_size` rows."""
    loader = bundle.test_data
    batch_size = batch_size or bundle.config["eval_batch_size"]
    for start in range(0, len(rows), batch_size):
        index = rows[start:start + batch_size]
        inter = loader._dataset[index]
        inter = loader.transform(loader._dataset, inter)
        yield index, inter.to(bundle.config["device"])
