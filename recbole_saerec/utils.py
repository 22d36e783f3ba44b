"""Model and trainer lookup: the plugin's own first, then every RecBole one."""
import importlib

from recbole.utils import ModelType
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

# name -> module inside recbole_saerec.model. One model per file.
PLUGIN_MODELS = {
    "SAERec": "recbole_saerec.model.saerec",
}


def plugin_model_names():
    return sorted(PLUGIN_MODELS)


def get_model(model_name):
    """Return the model class: plugin models first, then RecBole's."""
    if model_name in PLUGIN_MODELS:
        return getattr(importlib.import_module(PLUGIN_MODELS[model_name]), model_name)
    try:
        return recbole_get_model(model_name)
    except ValueError:
        raise ValueError(
            f"Unknown model '{model_name}'. Plugin models: {', '.join(plugin_model_names())}; "
            "or any RecBole model name (e.g. SASRec, GRU4Rec, BERT4Rec, BPR, LightGCN). "
            "Names are case-sensitive."
        ) from None


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
        base = recbole_get_trainer(model_type, model_name)
    return with_checkpoint_fix(base)


__all__ = ["get_model", "get_trainer", "plugin_model_names", "ModelType"]
