"""PackedSASRec computes RecBole's SASRec: same weights -> same scores (padded and packed paths)."""
import pytest
import torch
from recbole.data import create_dataset, data_preparation

from conftest import base_config
from recbole_saerec.config import Config
from recbole_saerec.utils import get_model


def model_and_batch(root, name, **overrides):
    config = Config(model=name, dataset="tiny", config_dict=base_config(root, n_layers=2, **overrides))
    dataset = create_dataset(config)
    train, _valid, test = data_preparation(config, dataset)
    return get_model(name)(config, train._dataset).eval(), next(iter(test))[0], next(iter(train))


@pytest.mark.parametrize("pack", [True, False])
def test_same_weights_give_recbole_sasrec_scores(tiny_root, pack):
    ref, batch, train_batch = model_and_batch(tiny_root, "SASRec")
    ours, _, _ = model_and_batch(tiny_root, "PackedSASRec", pack_tokens=pack)
    ours.load_state_dict(ours.load_recbole_state(ref.state_dict()), strict=True)  # the same parameters, all of them
    with torch.no_grad():
        assert torch.allclose(ours.full_sort_predict(batch), ref.full_sort_predict(batch), atol=1e-5)
        assert torch.allclose(ours.calculate_loss(train_batch), ref.calculate_loss(train_batch), atol=1e-5)


def test_bpr_loss_matches_recbole(tiny_root):
    neg = {"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False,
                                     "candidate_num": 0}, "loss_type": "BPR"}
    ref, _, train_batch = model_and_batch(tiny_root, "SASRec", **neg)
    ours, _, _ = model_and_batch(tiny_root, "PackedSASRec", **neg)
    ours.load_state_dict(ours.load_recbole_state(ref.state_dict()), strict=True)
    with torch.no_grad():
        assert torch.allclose(ours.calculate_loss(train_batch), ref.calculate_loss(train_batch), atol=1e-5)
