"""PackedBERT4Rec computes RecBole's BERT4Rec: same weights and batch -> same CE loss, gradients, scores."""
import torch
from recbole.data import create_dataset, data_preparation

from conftest import base_config
from recbole_saerec.config import Config
from recbole_saerec.utils import get_model


def model_and_data(root, name, **overrides):
    config = Config(model=name, dataset="tiny", config_dict=base_config(root, n_layers=2, **overrides))
    train, _valid, test = data_preparation(config, create_dataset(config))
    return get_model(name)(config, train._dataset).eval(), train, next(iter(test))[0]


def test_same_weights_and_batch_give_recbole_bert4rec_loss_gradients_and_scores(tiny_root):
    ref, train, test_batch = model_and_data(tiny_root, "BERT4Rec")
    ours, _, _ = model_and_data(tiny_root, "PackedBERT4Rec")
    ours.load_state_dict(ref.state_dict(), strict=True)  # RecBole's parameters, under RecBole's names
    batch = next(iter(train))  # masked once by RecBole's transform, fed to both models
    real = batch[ref.MASK_INDEX] > 0
    # the case that matters: some slots are padding (RecBole scores and zeroes them; ours skips them)
    assert real.any() and (~real).any()

    ref_loss, our_loss = ref.calculate_loss(batch), ours.calculate_loss(batch)
    assert torch.allclose(our_loss, ref_loss, atol=1e-5)
    ref_loss.backward()
    our_loss.backward()
    ref_grads = dict(ref.named_parameters())
    for name, param in ours.named_parameters():
        assert torch.allclose(param.grad, ref_grads[name].grad, atol=1e-6), name
    with torch.no_grad():
        assert torch.allclose(ours.full_sort_predict(test_batch), ref.full_sort_predict(test_batch), atol=1e-5)


def test_the_loss_ignores_what_sits_at_padded_slots(tiny_root):
    """A label at a padded slot must not change the loss: the padding rule is RecBole's."""
    model, train, _ = model_and_data(tiny_root, "PackedBERT4Rec")
    batch = next(iter(train))
    with torch.no_grad():
        before = model.calculate_loss(batch)
        pos = batch[model.POS_ITEMS]
        pos[batch[model.MASK_INDEX] == 0] = 1  # a real item id where RecBole pads with 0
        assert torch.equal(model.calculate_loss(batch), before)
