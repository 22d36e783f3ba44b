"""Config validation before any work: unknown keys, types, ranges, choices."""
import logging
import os
import time

import pytest
import recbole
import yaml

from conftest import base_config
from recbole_saerec.config import Config
from recbole_saerec.config_check import (RULES, ConfigValueError, check_value, in_interval, known_keys,
                                         plugin_key_types)


def make(root, **overrides):
    return Config(model="SAERec", dataset="tiny", config_dict=base_config(root, **overrides))


def test_misspelled_key_warns_with_closest(tiny_root, caplog):
    with caplog.at_level(logging.WARNING, logger="recbole_saerec.config_check"):
        make(tiny_root, intents_retrived=5)
    assert "'intents_retrived'" in caplog.text and "Did you mean 'intents_retrieved'" in caplog.text


def test_known_keys_do_not_warn(tiny_root, caplog):
    with caplog.at_level(logging.WARNING, logger="recbole_saerec.config_check"):
        make(tiny_root, intents_retrieved=3, learning_rate=0.01, topk=[5])  # plugin + RecBole keys
    assert "not a RecBole" not in caplog.text


@pytest.mark.parametrize("key,value,fragment", [
    ("ema_decay", -0.5, "outside [0, 1)"),
    ("ema_decay", 1.5, "outside [0, 1)"),
    ("ema_decay", 1.0, "outside [0, 1)"),
    ("intents_retrieved", 0, "outside [1, inf)"),
    ("intents_retrieved", 2.5, "expected int"),
    ("intent_keep", "nothing", "choose one of"),
    ("fusion", "concat", "choose one of"),
    ("hidden_dropout_prob", 1.0, "outside [0, 1)"),
    ("intent_encode_chunk", 0, "outside [1, inf)"),
    ("use_ema", "yes", "expected bool"),
    ("hidden_size", None, "needs a int value"),
])
def test_bad_values_refused_naming_key(tiny_root, key, value, fragment):
    with pytest.raises(ConfigValueError) as err:
        make(tiny_root, **{key: value})
    assert f"{key}=" in str(err.value) and fragment in str(err.value)


@pytest.mark.parametrize("key,value", [
    ("ema_decay", 0.0), ("ema_decay", 0.99), ("intent_keep", "grounded"), ("intent_keep", True),
    ("intent_keep", "probably"), ("fusion", "mean"), ("fusion", "residual"), ("mask_history", True),
    ("resume_state", False), ("sae_n_latents", None), ("learning_rate", 1),
])
def test_good_values_pass(tiny_root, key, value):
    assert make(tiny_root, **{key: value})[key] == value


@pytest.mark.parametrize("model", ["SAERec", "GuidedRec", "PackedSASRec", "SASRec", "BPR", "GRU4Rec"])
@pytest.mark.parametrize("dataset", ["ml-100k", "amazon-beauty", "amazon-sports", "amazon-toys"])
def test_shipped_defaults_pass_their_own_rules(model, dataset, tmp_path, caplog):
    config_dict = {"use_gpu": False, "checkpoint_dir": str(tmp_path)}
    if model == "BPR":
        config_dict["train_neg_sample_args"] = {"distribution": "uniform", "sample_num": 1}
    with caplog.at_level(logging.WARNING, logger="recbole_saerec.config_check"):
        Config(model=model, dataset=dataset, config_dict=config_dict)
    assert "not a RecBole" not in caplog.text


def test_every_model_shares_the_training_protocol(tmp_path):
    """overall.yaml gives every model, RecBole's included, SAERec's batch and weight decay: a
    baseline left at RecBole's weight decay 0 would not be trained like SAERec (a converged
    GuidedRec row once ran so). The learning rate is not protocol but a searched hyperparameter
    (SAERec.yaml holds what SAERec's search picked; the benchmark searches each model's)."""
    shared = ("train_batch_size", "weight_decay", "epochs", "stopping_step", "valid_metric",
              "mask_history", "MAX_ITEM_LIST_LENGTH")
    resolved = {model: Config(model=model, dataset="amazon-beauty",
                              config_dict={"use_gpu": False, "checkpoint_dir": str(tmp_path)})
                for model in ("SAERec", "GuidedRec", "PackedSASRec", "PackedBERT4Rec", "SASRec", "GRU4Rec", "BERT4Rec",
                              "NARM")}
    for model, config in resolved.items():
        assert [config[k] for k in shared] == [resolved["SAERec"][k] for k in shared], model
    assert resolved["NARM"]["weight_decay"] == 0.0001


@pytest.mark.parametrize("packed, parent", [("PackedSASRec", "SASRec"), ("PackedBERT4Rec", "BERT4Rec")])
def test_a_packed_model_resolves_its_recbole_parents_defaults(packed, parent, tmp_path):
    """properties/model/Packed*.yaml copy RecBole's <parent>.yaml (a plugin model does not get
    RecBole's model yaml): a copy that drifts would train a different model under the same row."""
    parent_yaml = os.path.join(os.path.dirname(recbole.__file__), "properties", "model", f"{parent}.yaml")
    with open(parent_yaml) as f:
        keys = list(yaml.safe_load(f))
    assert keys  # the comparison below must cover something
    config = {m: Config(model=m, dataset="amazon-beauty", config_dict={"use_gpu": False, "checkpoint_dir": str(tmp_path)})
              for m in (packed, parent)}
    assert {k: config[packed][k] for k in keys} == {k: config[parent][k] for k in keys}


def test_intent_keep_refused_before_any_work(tiny_root, tmp_path):
    """The build CLI builds the same Config: a bad keep rule stops it in well under a second."""
    t = time.time()
    with pytest.raises(ConfigValueError, match="intent_keep"):
        make(tiny_root, intent_keep="nothing", intent_dir=str(tmp_path / "never"))
    assert time.time() - t < 10
    assert not (tmp_path / "never").exists()


def test_every_plugin_key_is_typed_and_has_a_rule():
    types = plugin_key_types()
    untyped = sorted(k for k, (t, _, _) in types.items() if t is None)
    assert not untyped, f"yaml keys without a '# (type)' comment: {untyped}"
    missing = sorted(set(types) - set(RULES))
    assert not missing, f"add a rule (interval, choices or ANY) to config_check.RULES for: {missing}"
    assert set(RULES) <= known_keys()


def test_interval_and_choice_primitives():
    assert in_interval(0, "[0, 1)") and not in_interval(1, "[0, 1)") and not in_interval(float("nan"), "[0, 1]")
    assert in_interval(1e9, "[1, inf)") and not in_interval(0, "(0, inf)")
    assert check_value("intent_keep", "True", "str") is not None  # the string is not YAML's True
    assert check_value("rm_dup_inter", None, "str", none_ok=False) is None  # None is one of its choices
