"""Model and trainer lookup by name: the plugin's own models first, then every RecBole one.

As ``recbole.utils.get_model`` / ``get_trainer`` (and RecBole-GNN's ``utils``), with the plugin's
models in ``PLUGIN_MODELS`` and its checkpoint-safe trainer mixed into whichever trainer a model uses.
A model module is imported only when its name is looked up, so importing this module imports no
model and no RecBole.
"""
import importlib
import importlib.util


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


__all__ = ["PLUGIN_MODELS", "UnknownModelError", "get_model", "get_trainer", "plugin_model_names"]
