"""GuidedRec: guided attribute vectors, PCA of a base table, the model, attributions."""
import os

import numpy as np
import pytest
import torch
import yaml
from recbole.data import create_dataset, data_preparation

from conftest import base_config, seed_all
from recbole_saerec.config import Config
from recbole_saerec.intents.guided import build_guided, derived_fields, fill_template
from recbole_saerec.model.layers import pca_reduce
from recbole_saerec.quick_start import ensure_guided, run
from recbole_saerec.settings import PROPERTIES_DIR as PROPERTIES
from recbole_saerec.utils import get_model

GUIDED = {"guided_encoder": "all-MiniLM-L6-v2", "guided_dim": 4, "hidden_size": 16,
          "guided_templates": {"kind": "kind: {use_words}", "name": "item: {title}", "price": "price: {price_band}"},
          "guided_use_words": ["skincare", "makeup", "haircare"], "guided_text_fields": ["title"]}


@pytest.fixture(scope="module")
def guided_cfg(tiny_root, tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("guided_cache"))
    return lambda **kw: base_config(tiny_root, **{**GUIDED, "guided_cache_dir": cache, **kw})


def make_model(cfg):
    config = Config(model="GuidedRec", dataset="tiny", config_dict=cfg)
    dataset = create_dataset(config)
    train, _, test = data_preparation(config, dataset)
    ensure_guided(config, train._dataset)  # the offline step quick_start runs before the model
    seed_all(0)
    return config, get_model("GuidedRec")(config, train._dataset), train, test


def first_batch(loader):
    batch = next(iter(loader))
    return batch[0] if isinstance(batch, tuple) else batch


def test_templates_and_derived_fields():
    assert fill_template("brand: {brand}", {"brand": "OPI"}) == "brand: OPI"
    assert fill_template("category: {categories|class}", {"class": "Comedy"}) == "category: Comedy"
    assert fill_template("brand: {brand}", {"brand": " "}) is None  # missing -> no attribute, nothing invented
    rows = {str(i): {"price": str(p), "categories": f"Beauty | Makeup | {c}", "title": t, "release_year": "1995"}
            for i, (p, c, t) in enumerate([(1, "Nails", "OPI nail polish for women"), (5, "Eyes", "travel mascara"),
                                           (50, "Nails", "gel"), (20, "Face", "oily skin SPF")])}
    # the yaml's defaults (the only ones: derived_fields reads every key with settings.setting) + the test's
    with open(os.path.join(PROPERTIES, "model", "GuidedRec.yaml"), encoding="utf-8") as f:
        defaults = yaml.safe_load(f)
    derived_fields({**defaults, "guided_price_bands": ["low", "high"], "guided_use_words": ["women", "travel", "oily"],
                    "guided_text_fields": ["title"]}, rows)
    assert [rows[k]["price_band"] for k in "0123"] == ["low", "low", "high", "high"]
    assert rows["0"]["categories"] == "Nails" and rows["1"]["categories"] == "Eyes"  # shared levels dropped
    assert rows["0"]["use_words"] == "women" and rows["3"]["use_words"] == "oily"
    assert rows["0"]["year_band"] == "1990s"


def test_guided_part_is_deterministic_for_fixed_text(guided_cfg, tmp_path):
    a = build_guided(Config(model="GuidedRec", dataset="tiny", config_dict=guided_cfg(guided_cache_dir=str(tmp_path / "a"))),
                     [f"i{i}" for i in range(1, 31)])
    b = build_guided(Config(model="GuidedRec", dataset="tiny", config_dict=guided_cfg(guided_cache_dir=str(tmp_path / "b"))),
                     [f"i{i}" for i in range(1, 31)])
    assert a["names"] == ["kind", "name"]  # no price column in the tiny dataset: dropped
    assert a["fingerprint"] == b["fingerprint"] and torch.equal(a["index"], b["index"])
    for va, vb in zip(a["vectors"], b["vectors"]):
        assert torch.equal(va, vb)  # two independent encodes, bit-identical
    assert a["vectors"][0].shape == (4, 384)  # 3 kinds + the zero row
    assert os.path.isfile(tmp_path / "a" / "tiny" / f"guided-{a['fingerprint']}.pt")


def test_pca_keeps_the_stated_variance_like_sklearn():
    from sklearn.decomposition import PCA

    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 24, generator=g) @ torch.randn(24, 24, generator=g)
    coords, ratio, comps, mean = pca_reduce(x, variance=0.9)
    k = ratio.numel()
    ref = PCA(n_components=k, svd_solver="full").fit(x.numpy().astype(np.float64))
    assert ratio.sum() >= 0.9 and ratio[:-1].sum() < 0.9  # the fewest components that keep 90%
    assert np.allclose(ratio.numpy(), ref.explained_variance_ratio_, atol=1e-5)
    assert np.allclose(np.abs(coords.numpy()), np.abs(ref.transform(x.numpy())), atol=1e-3)  # up to sign
    coords8, ratio8, _, _ = pca_reduce(x, n_components=8)
    assert coords8.shape == (200, 8) and torch.allclose(ratio8, ratio[:8]) if k >= 8 else coords8.shape == (200, 8)


def test_shapes_and_contributions_sum_to_the_score(guided_cfg):
    config, model, _, test = make_model(guided_cfg())
    assert model.block_names == ["kind", "name", "base"]
    assert model.hidden_size == 16 and model.base_dim == 16 - 2 * 4
    table = model.item_table()
    assert table.shape == (model.n_items, 16) and torch.all(table[0] == 0)
    model.eval()
    batch = first_batch(test)
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        user, table = model.user_and_table(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        items = torch.arange(1, model.n_items).unsqueeze(0).expand(user.shape[0], -1)
        contrib = model.contributions(user, table, items)
    assert scores.shape == (user.shape[0], model.n_items)
    assert contrib.shape == (user.shape[0], model.n_items - 1, 3)
    assert torch.allclose(contrib.sum(-1), scores[:, 1:], atol=1e-5)
    model.pack_tokens = True  # the packed path gives the same scores
    with torch.no_grad():
        assert torch.allclose(model.full_sort_predict(batch), scores, atol=1e-5)
    model.load_other_parameter(model.other_parameter())  # same attribute build: fine
    with pytest.raises(ValueError, match="guided attributes"):
        model.load_other_parameter({"guided_fingerprint": "another-build"})


def test_base_checkpoint_pca_matches_sklearn_and_trains(guided_cfg, tiny_root, tmp_path):
    from sklearn.decomposition import PCA

    from recbole_saerec.trainer import load_checkpoint

    base = run(model="SASRec", dataset="tiny", config_dict=base_config(tiny_root, tmp_path, loss_type="CE"), saved=True)
    cfg = guided_cfg(checkpoint_dir=str(tmp_path), base_checkpoint=base["saved_model_file"], base_variance=0.8)
    _, model, _, _ = make_model(cfg)
    table = load_checkpoint(base["saved_model_file"])["state_dict"]["item_embedding.weight"][1:].double().numpy()
    ref = PCA(svd_solver="full").fit(table).explained_variance_ratio_
    k = model.base_dim
    assert model.base_explained_variance.sum() >= 0.8 and (model.hidden_size % 2 == 0)
    assert ref[:k - 2].sum() < 0.8  # the fewest components for 80%, plus at most one so that n_heads divides d
    assert np.allclose(model.base_explained_variance.numpy(), ref[:k], atol=1e-5)
    result = run(model="GuidedRec", dataset="tiny", config_dict=cfg, saved=False)
    assert "ndcg@10" in result["test_result"]


def test_quick_start_gives_the_same_metrics_from_a_cold_and_a_warm_attribute_cache(guided_cfg, tmp_path):
    """The offline build runs before the model's seed: building (cold) or reusing (warm) the attribute
    vectors cannot change the model's initialisation, so one seed gives one set of metrics."""
    cfg = guided_cfg(guided_cache_dir=str(tmp_path / "cache"), epochs=2)
    cold = run(model="GuidedRec", dataset="tiny", config_dict=cfg, saved=False)
    assert len(list((tmp_path / "cache" / "tiny").glob("guided-*.pt"))) == 1
    warm = run(model="GuidedRec", dataset="tiny", config_dict=cfg, saved=False)
    assert cold["test_result"] == warm["test_result"]
    assert cold["best_valid_result"] == warm["best_valid_result"]
    other = run(model="GuidedRec", dataset="tiny", config_dict=dict(cfg, seed=8), saved=False)
    assert other["test_result"] != cold["test_result"]  # the comparison can fail: the seed matters


def test_the_model_reads_the_offline_build_and_refuses_a_foreign_one(guided_cfg, tmp_path):
    from recbole_saerec.artefacts import IntentArtefactError, load_guided

    config = Config(model="GuidedRec", dataset="tiny", config_dict=guided_cfg())
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    with pytest.raises(IntentArtefactError, match="guided_path is not set.*ensure_guided"):
        get_model("GuidedRec")(config, train._dataset)  # the model never builds: the offline stage does
    ensure_guided(config, train._dataset)
    tokens = list(train._dataset.field2id_token["item_id"][1:])
    guided = load_guided(config["guided_path"], "tiny", tokens[::-1])
    assert guided["item_tokens"] == tokens[::-1]  # rows follow the caller's item order
    built = torch.load(config["guided_path"], weights_only=True)
    assert torch.equal(guided["index"], built["index"].flip(0))
    with pytest.raises(IntentArtefactError, match="not in the build"):
        load_guided(config["guided_path"], "tiny", tokens + ["i999"])
    with pytest.raises(IntentArtefactError, match="built for dataset"):
        load_guided(config["guided_path"], "other", tokens)
    torn = tmp_path / "torn.pt"
    torn.write_bytes(open(config["guided_path"], "rb").read()[:100])
    with pytest.raises(IntentArtefactError, match="unreadable"):
        load_guided(str(torn), "tiny", tokens)


def test_attribution_cli_splits_every_score_into_its_blocks(guided_cfg, tmp_path, capsys):
    from recbole_saerec.analysis.attribution import block_summary, explain_users, main
    from recbole_saerec.analysis.checkpoints import load_model

    result = run(model="GuidedRec", dataset="tiny", config_dict=guided_cfg(checkpoint_dir=str(tmp_path)))
    bundle = load_model(result["saved_model_file"], quiet=True, needs="guided")
    [user] = explain_users(bundle, ["u3"], topk=4)
    scores = [r["score"] for r in user["recommendations"]]
    assert user["user"] == "u3" and scores == sorted(scores, reverse=True)
    for rec in user["recommendations"]:
        blocks = rec["blocks"]
        assert set(blocks) == {"kind", "name", "base"}
        assert sum(b["contribution"] for b in blocks.values()) == pytest.approx(rec["score"], abs=1e-4)
        assert blocks["name"]["value"].startswith("item: ") and "(collaborative" in blocks["base"]["value"]
    summary = block_summary(bundle, topk=3)
    assert sum(s["abs_share"] for s in summary.values()) == pytest.approx(1.0, abs=1e-5)
    main(["--checkpoint", result["saved_model_file"], "--users", "u3", "--topk", "2",
          "--json", str(tmp_path / "out.json")])
    assert "user u3" in capsys.readouterr().out
    import json

    assert json.load(open(tmp_path / "out.json"))[0]["recommendations"][0]["score"] == pytest.approx(scores[0])


def test_fill_missing_asks_the_lm_once_per_gap_and_caches_the_answer(guided_cfg, tmp_path, monkeypatch):
    from recbole_saerec.intents import judge as judge_module
    from recbole_saerec.intents.guided import fill_missing

    class FakeLM(judge_module.LMJudge):
        asked = []

        def complete(self, messages):
            FakeLM.asked.append(messages[0]["content"])
            return "unknown" if "gel" in messages[0]["content"] else "night cream.\nextra line"

    monkeypatch.setattr(judge_module, "make_judge", lambda config: FakeLM("fake-lm"))
    rows = {"a": {"title": "rich night cream"}, "b": {"title": "gel"}, "c": {"title": "mascara", "brand": "OPI"}}
    templates = {"brand": "brand: {brand}"}
    fresh = lambda: {"a": {"brand": None}, "b": {"brand": None}, "c": {"brand": "brand: OPI"}}  # noqa: E731
    config = {"guided_text_fields": ["title"]}
    texts, model = fill_missing(config, rows, fresh(), templates, str(tmp_path))
    assert model == "fake-lm" and len(FakeLM.asked) == 2  # only the gaps: a and b, never c
    assert texts == {"a": {"brand": "brand: night cream"}, "b": {"brand": None}, "c": {"brand": "brand: OPI"}}
    again, _ = fill_missing(config, rows, fresh(), templates, str(tmp_path))
    assert again == texts and len(FakeLM.asked) == 2  # answered from the JSONL cache

    # a cache line that is not UTF-8 follows on_bad_line (data/text.py): stop, or ask that gap again
    from recbole_saerec.data.text import BadTextError

    (cache,) = tmp_path.glob("fill-*.jsonl")
    lines = cache.read_bytes().splitlines(keepends=True)
    cache.write_bytes(lines[0].replace(b'"key"', b'"k\xff\xfeey"') + b"".join(lines[1:]))
    with pytest.raises(BadTextError, match=r"fill-.*\.jsonl:1: not valid utf-8"):
        fill_missing(config, rows, fresh(), templates, str(tmp_path))
    monkeypatch.setattr(FakeLM, "on_bad_line", "skip")
    assert fill_missing(config, rows, fresh(), templates, str(tmp_path))[0] == texts and len(FakeLM.asked) == 3


def test_fill_missing_without_an_lm_backend_invents_nothing(tmp_path):
    from recbole_saerec.intents.guided import fill_missing

    texts = {"a": {"brand": None}}
    out, model = fill_missing({"judge_backend": "offline"}, {"a": {"title": "cream"}}, texts,
                              {"brand": "brand: {brand}"}, str(tmp_path))
    assert model is None and out == {"a": {"brand": None}}
