"""The plugin's Config: RecBole's yaml chain with the plugin's yaml layered on top.

Merge order (later wins), as in RecBole and RecBole-GNN:
RecBole internal yaml -> plugin ``properties/overall.yaml`` -> plugin
``properties/model/<Model>.yaml`` -> plugin ``properties/dataset/<dataset>.yaml``
-> ``--config_files`` -> ``config_dict`` -> command line.
"""
import os

import numpy as np
import yaml
from recbole.config import Config as RecBoleConfig

from recbole_saerec.settings import PROPERTIES_DIR
from recbole_saerec.utils import get_model


def plugin_yaml_files(model, dataset):
    """The plugin's yaml layers for a model and dataset, in merge order (some may not exist)."""
    return [os.path.join(PROPERTIES_DIR, "overall.yaml"),
            os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"),
            os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml")]


def plugin_yaml_keys(model, dataset):
    """Every key the plugin's yaml layers set for this model and dataset."""
    keys = set()
    for path in plugin_yaml_files(model, dataset):
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                keys.update(yaml.safe_load(f) or {})
    return keys


class Config(RecBoleConfig):
    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None):
        super().__init__(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
        self._validate()

    def _validate(self):
        # Before any work (dataset, encoder, SAE): unknown keys warned with the closest
        # known one, every plugin value checked against its type, range or choices.
        from recbole_saerec.config_check import validate_config

        validate_config(self.final_config_dict, self.external_config_dict)

    def _init_device(self):
        # RecBole writes CUDA_VISIBLE_DEVICES from `gpu_id`. When the variable is
        # already set (by the user, or by Ray Tune for the GPU it assigned to a
        # trial), overwriting it would move the run to another card: keep it.
        # `use_gpu: False` forces the CPU (RecBole 1.2.1 ignores that key).
        preset = os.environ.get("CUDA_VISIBLE_DEVICES")
        if not self.final_config_dict.get("use_gpu", True):
            self.final_config_dict["gpu_id"] = ""
        elif preset is not None:
            self.final_config_dict["gpu_id"] = preset
        super()._init_device()
        if preset is not None and not self.final_config_dict.get("use_gpu", True):
            os.environ["CUDA_VISIBLE_DEVICES"] = preset

    def _load_cmd_line(self):
        # RecBole reads sys.argv itself, so a plugin command's own flags (--keep_checkpoints,
        # --debug, --user ...) would reach it, be warned about as "will not be used", and
        # `--key=value` ones would even become config keys. Plugin commands scope the keys meant
        # for the config (cli.recbole_cmd_line); outside such a scope (a script, a notebook)
        # RecBole's own reading of sys.argv applies.
        from recbole_saerec import cli

        keys = cli.scoped_cmd_line()
        if keys is None:
            return super()._load_cmd_line()
        return self._convert_config_dict(keys)

    def _set_default_parameters(self):
        # A CE-loss sequential model (SASRec's default, SAERec) must not sample
        # training negatives; RecBole's overall.yaml turns sampling on and then
        # refuses the combination. Unless the user set it, switch it off for CE.
        if (self.final_config_dict.get("loss_type") == "CE"
                and "train_neg_sample_args" not in self.external_config_dict):
            self.final_config_dict["train_neg_sample_args"] = None
        super()._set_default_parameters()

    def compatibility_settings(self):
        # RecBole's version assigns np.float_ / np.complex_ / np.unicode_, which
        # numpy 2 removed (AttributeError at Config()). Same aliases, numpy-1/2 safe.
        aliases = {"bool": "bool_", "int": "int_", "float": "float64", "complex": "complex128",
                   "object": "object_", "str": "str_", "long": "int_", "unicode": "str_"}
        for alias, target in aliases.items():
            setattr(np, alias, getattr(np, target))
        # RecBole's graph models (LightGCN, NGCF, NCL, GCMC, SpectralCF) fill their adjacency
        # with dok_matrix._update, which scipy >= 1.13 removed (a dok_matrix is no longer a
        # dict). Same operation on the new internal dict; added only where it is missing.
        import scipy.sparse as sp

        if not hasattr(sp.dok_matrix, "_update") and hasattr(sp.dok_matrix((1, 1)), "_dict"):
            sp.dok_matrix._update = lambda self, data: self._dict.update(data)

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model", "SAERec")
        if isinstance(model, str):
            model_class = get_model(model)
        else:
            model_class, model = model, model.__name__
        if dataset is None:
            dataset = self.external_config_dict.get("dataset", "ml-100k")
        return model, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for path in plugin_yaml_files(model, dataset):
            if os.path.isfile(path):
                loaded = self._update_internal_config_dict(path)
                if loaded and path.endswith(os.path.join("dataset", f"{dataset}.yaml")):
                    self.parameters["Dataset"] += [k for k in loaded if k not in self.parameters["Dataset"]]
