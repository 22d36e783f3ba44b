"""The text controls: item-text vectors from the intent corpus, SASRecTextFeat and LLMInit."""
import os

import pytest
import torch
import torch.nn.functional as F
import yaml
from recbole.data import create_dataset, data_preparation

from conftest import base_config
from recbole_saerec.artefacts import load_item_text
from recbole_saerec.config import Config
from recbole_saerec.model.llminit import select_dimensions
from recbole_saerec.quick_start import ensure_item_text, run
from recbole_saerec.settings import PROPERTIES_DIR
from recbole_saerec.utils import get_model

TEXT = {"intent_encoder": "all-MiniLM-L6-v2", "intent_item_text_fields": ["title"], "hidden_size": 16}
TEXT_KEYS = ("intent_corpus", "intent_review_text_fields", "intent_item_text_fields", "intent_corpus_leaky",
             "intent_encode_chunk")


@pytest.fixture(scope="module")
def text_cfg(tiny_root, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("item_text"))
    return lambda **kw: base_config(tiny_root, **{**TEXT, "intent_root": root, **kw})


def model_and_data(cfg, name):
    config = Config(model=name, dataset="tiny", config_dict=cfg)
    train, _, test = data_preparation(config, create_dataset(config))
    ensure_item_text(config, train._dataset)  # the offline step quick_start runs before the model
    return config, get_model(name)(config, train._dataset), train, test


def test_item_vectors_are_the_normalised_mean_of_the_items_texts(text_cfg):
    from recbole_saerec.intents.encode import TextEncoder

    config, _, train, _ = model_and_data(text_cfg(), "SASRecTextFeat")
    tokens = list(train._dataset.field2id_token["item_id"][1:])
    vectors, has_text = load_item_text(config["item_text_path"], "tiny", tokens)
    assert has_text.all() and torch.allclose(vectors.norm(dim=1), torch.ones(len(tokens)), atol=1e-5)
    encoder = TextEncoder(bf16=False)
    first = tokens[0]  # conftest's .item: "<genre> product number <i>"
    genre = ["skincare", "makeup", "haircare"][(int(first[1:]) - 1) % 3]
    direct = torch.as_tensor(encoder.encode([f"{genre} product number {first[1:]}"]))[0]
    assert F.cosine_similarity(vectors[0], direct, dim=0) > 0.999
    # the embeddings went to the dataset's shared intent cache, and a second call finds the same build
    assert os.path.isdir(os.path.join(config["intent_root"], "tiny", "default", "cache"))
    path = config["item_text_path"]
    again, _, _, _ = model_and_data(text_cfg(), "LLMInit")
    assert again["item_text_path"] == path


def test_a_foreign_or_damaged_build_is_refused(text_cfg, tmp_path):
    config, _, train, _ = model_and_data(text_cfg(), "SASRecTextFeat")
    path = config["item_text_path"]
    tokens = list(train._dataset.field2id_token["item_id"][1:])
    with pytest.raises(ValueError, match="built for dataset 'tiny'"):
        load_item_text(path, "other", tokens)
    with pytest.raises(ValueError, match="not in the build"):
        load_item_text(path, "tiny", tokens + ["i999"])
    torn = tmp_path / "torn.pt"
    torn.write_bytes(open(path, "rb").read()[:100])
    with pytest.raises(ValueError, match="unreadable"):
        load_item_text(str(torn), "tiny", tokens)


def test_textfeat_adds_the_projected_text_to_input_and_output_items(text_cfg):
    torch.manual_seed(4)
    config, model, train, test = model_and_data(text_cfg(), "SASRecTextFeat")
    torch.manual_seed(4)
    base = get_model("PackedSASRec")(config, train._dataset)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in base.state_dict().items())  # same init
    model.eval()
    table = model.item_embedding.weight + model.item_text @ model.text_map.weight.T
    assert torch.equal(model.item_text[0], torch.zeros(model.item_text.shape[1]))  # padding: no text
    batch = next(iter(train))
    with torch.no_grad():
        user = model.forward(batch["item_id_list"], batch["item_length"], table=table)
        expected = F.cross_entropy(user @ table.T, batch["item_id"])
        assert float(model.calculate_loss(batch)) == pytest.approx(float(expected), rel=1e-5)
        scores = model.full_sort_predict(next(iter(test))[0])
        base.load_state_dict({k: v for k, v in model.state_dict().items() if k in base.state_dict()})
        assert not torch.allclose(scores, base.eval().full_sort_predict(next(iter(test))[0]))  # the text counts


def test_select_dimensions_by_rule():
    vectors = torch.zeros(10, 6)
    vectors[:2, 4] = torch.tensor([5.0, -5.0])   # varies over the two most popular items
    vectors[2:, 1] = torch.arange(8.0) * 10        # varies over unpopular items only
    vectors[:2, 2] = torch.tensor([1.0, -1.0])
    popularity = torch.tensor([9.0, 8.0, 1, 1, 1, 1, 1, 1, 1, 1])
    assert select_dimensions(vectors, popularity, 2, "var").tolist() == [2, 4]
    assert select_dimensions(vectors, popularity, 3, "uniform").tolist() == [0, 2, 4]
    picked = select_dimensions(vectors, popularity, 4, "random", torch.Generator().manual_seed(0))
    assert len(set(picked.tolist())) == 4 and picked.tolist() == sorted(picked.tolist())
    with pytest.raises(ValueError, match="hidden_size 7"):
        select_dimensions(vectors, popularity, 7, "var")


def test_llminit_starts_items_from_their_text_dimensions(text_cfg):
    torch.manual_seed(4)
    config, model, train, _ = model_and_data(text_cfg(), "LLMInit")
    torch.manual_seed(4)
    base = get_model("PackedSASRec")(config, train._dataset)
    tokens = list(train._dataset.field2id_token["item_id"][1:])
    vectors, _ = load_item_text(config["item_text_path"], "tiny", tokens)
    assert torch.equal(model.item_embedding.weight[1:], vectors[:, model.text_dims])
    assert torch.equal(model.item_embedding.weight[0], base.item_embedding.weight[0])  # padding row untouched
    others = {k: v for k, v in base.state_dict().items() if k != "item_embedding.weight"}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in others.items())


@pytest.mark.parametrize("name", ["SASRecTextFeat", "LLMInit"])
def test_one_epoch_through_the_entry_point(text_cfg, tmp_path, name):
    result = run(model=name, dataset="tiny", config_dict=text_cfg(checkpoint_dir=str(tmp_path)))
    assert set(result["test_result"]) >= {"hit@10", "ndcg@10"}


@pytest.mark.parametrize("name", ["SASRecTextFeat", "LLMInit"])
def test_text_keys_stay_those_of_saerec(name):
    def load(model):
        with open(os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"), encoding="utf-8") as f:
            return yaml.safe_load(f)
    ours, saerec = load(name), load("SAERec")
    assert {k: ours[k] for k in TEXT_KEYS} == {k: saerec[k] for k in TEXT_KEYS}
