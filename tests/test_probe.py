"""The RecSAE probe on tiny trained models: exact capture, identity/scale invariances, verification arithmetic."""
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from conftest import base_config
from recbole_saerec.analysis import probe as P
from recbole_saerec.quick_start import run

MODELS = {
    "SASRec": {"epochs": 1},
    "BPR": {"epochs": 1, "embedding_size": 16},
}


@pytest.fixture(scope="module")
def checkpoints(tiny_root, tmp_path_factory):
    """One short-trained checkpoint per family (SASRec: sequential, BPR: general)."""
    out = {}
    for name, extra in MODELS.items():
        cfg = base_config(tiny_root, str(tmp_path_factory.mktemp(name)), intent_item_text_fields=["title"], **extra)
        out[name] = run(name, "tiny", config_dict=cfg, saved=True)["saved_model_file"]
    return out


@pytest.fixture(scope="module")
def loaded(checkpoints):
    cache = {}

    def get(name):
        if name not in cache:
            config, dataset, train_data, test_data, model, _ = P.load_probed(checkpoints[name], trust=True)
            cache[name] = (config, dataset, train_data, test_data, model, P.make_adapter(model))
        return cache[name]

    return get


def _identity_sae(d):
    """A TopKSAE that reconstructs exactly: 2d latents, rows +e_i and -e_i, k = 2d (ReLU keeps both signs)."""
    from recbole_saerec.intents.sae import TopKSAE

    sae = TopKSAE(d, 2 * d, 2 * d, tied=True)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([torch.eye(d), -torch.eye(d)]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.mark.parametrize("name", list(MODELS))
def test_adapter_captures_exactly_the_scored_vector(loaded, name):
    _config, _dataset, _train, test_data, model, adapter = loaded(name)
    interaction, _hist, _pu, _pi = next(iter(test_data))
    with torch.no_grad():
        expected = model.full_sort_predict(interaction).view(len(interaction), -1)
    scores, rep = adapter.run(interaction)
    assert torch.equal(scores, expected)  # the wrapper itself changes nothing
    # the captured vector is the one the model scores with: rep @ items^T = the model's scores
    torch.testing.assert_close(rep @ adapter.item_matrix(interaction).T, expected, rtol=1e-5, atol=1e-5)
    # an identity SAE (rows +e_i / -e_i, k = 2d) in place of the representation reproduces the scores exactly
    sae = _identity_sae(rep.shape[1])
    recon, _ = adapter.run(interaction, P.sae_transform(sae))
    assert torch.equal(recon, expected)
    # and the wrapper is gone afterwards
    assert "forward" not in model.__dict__ and "get_user_embedding" not in model.__dict__


@pytest.mark.parametrize("name", list(MODELS))
def test_evaluate_matches_recbole(loaded, name):
    from recbole_saerec.utils import get_trainer

    config, _dataset, _train, test_data, model, adapter = loaded(name)
    batches, _ = P.test_batches(adapter, test_data)
    ours = P.evaluate(adapter, batches)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    theirs = trainer.evaluate(test_data, load_best_model=False)
    for key in ("hit@10", "ndcg@10", "hit@20", "ndcg@20"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-4)


@pytest.mark.parametrize("name", list(MODELS))
def test_scaling_a_latent_by_one_changes_nothing(loaded, name):
    from recbole_saerec.intents.sae_trainer import SAETrainer

    _config, _dataset, train_data, test_data, _model, adapter = loaded(name)
    reps, _users, _tops = P.collect_cases(adapter, train_data)
    sae, _ = SAETrainer(4 * reps.shape[1], 4, tied=False, steps=20, device="cpu", progress=False).fit(reps)
    interaction, _hist, _pu, _pi = next(iter(test_data))
    base, rep = adapter.run(interaction, P.sae_transform(sae))
    acts, idx = sae.encode(rep)
    latent = int(idx[0][acts[0].argmax()])  # a latent active for the first case
    same, _ = adapter.run(interaction, P.sae_transform(sae, latent, 1.0))
    assert torch.equal(same, base)
    changed, _ = adapter.run(interaction, P.sae_transform(sae, latent, 0.0))
    assert not torch.allclose(changed[0], base[0])


def test_verification_arithmetic_on_a_hand_built_case():
    # 6 items; items 1 and 2 hold the concept's terms
    mask = np.array([False, True, True, False, False, False])
    pos = np.array([[1, 2, 3], [1, 4, 5], [3, 4, 5]])  # presence 2/3, 1/3, 0
    neg = np.array([[3, 4, 5], [2, 3, 4], [1, 2, 5]])  # presence 0, 1/3, 2/3
    out = P.verify_concept(mask, pos, neg, base_rate=0.2)
    # predicted activating iff presence > 0.2: pos -> T, T, F (tp 2); neg -> F, T, T (tn 1)
    assert (out["tp"], out["tn"], out["n_pos"], out["n_neg"]) == (2, 1, 3, 3)
    assert out["confidence"] == pytest.approx(3 / 6)
    out = P.verify_concept(mask, pos, neg, base_rate=0.5)  # only 2/3 clears it: tp 1, tn 2
    assert out["confidence"] == pytest.approx(3 / 6) and (out["tp"], out["tn"]) == (1, 2)
    out = P.verify_concept(mask, pos[:2], neg[:1], base_rate=0.2)
    assert out["confidence"] == 1.0


def test_term_concepts_and_masks():
    docs = ["skincare cream skincare lotion", "makeup lipstick makeup", "haircare shampoo haircare"]
    terms, vec = P.term_concepts(docs, n_terms=1)
    assert terms == [["skincare"], ["makeup"], ["haircare"]]
    texts = np.array(["", "Skincare cream 50ml", "Red lipstick", "makeup remover"], dtype=object)
    masks = P.concept_masks(texts, vec, terms)
    assert masks.tolist() == [[False, True, False, False], [False, False, False, True],
                              [False, False, False, False]]


def test_similarity_on_hand_built_embeddings():
    emb = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 0], [0, 3.0, 0], [0, 0, 1.0]])
    intra, inter, per_unit = P.similarity(emb, [[0, 1], [2, 3]])
    assert intra == pytest.approx(1.0) and inter == pytest.approx(0.0)
    intra, inter, per_unit = P.similarity(emb, [[0, 2], [1, 3]])  # each unit spans two orthogonal items
    assert intra == pytest.approx(0.0) and inter == pytest.approx(0.5)


def test_top_unique_users_and_top_items():
    users = np.array([7, 7, 8, 9, 8])
    assert P.top_unique_users(np.array([0, 1, 2, 4, 3]), users, 2).tolist() == [0, 2]
    lists = np.array([[3, 1], [3, 2], [1, 3]])
    assert P.top_items(lists, 2).tolist() == [3, 1]


def test_unsupported_model_is_a_clear_error():
    from recbole.utils import ModelType

    class Odd(nn.Module):
        type = ModelType.GENERAL

    with pytest.raises(P.UnsupportedModelError, match="supports"):
        P.make_adapter(Odd())


@pytest.mark.parametrize("name", list(MODELS))
def test_probe_end_to_end(checkpoints, tmp_path, name):
    out = str(tmp_path / "probe")
    P.main(["--checkpoint", checkpoints[name], "--trust_checkpoint", "--latents_mult", "2", "--k", "2",
            "--sae_steps", "30", "--n_top", "4", "--min_verify", "1", "--n_verify", "4", "--tune_latents", "2", "--scales", "0,1,5",
            "--out", out, "--heldout", "0.3"])
    for f in ("concepts.csv", "concepts.md", "concepts.json", "metrics.json", "tuning.csv",
              "confidence_hist.png", "tuning_curves.png"):
        assert os.path.isfile(os.path.join(out, f)), f
    with open(os.path.join(out, "metrics.json")) as fh:
        m = json.load(fh)
    assert m["scoring_check"] is True
    assert m["options"]["n_latents"] == 2 * m["representation_dim"]
    assert set(m["quality"]) >= {"original", "sae_reconstruction", "dense_ae_reconstruction"}
    assert {"sae_intra", "base_intra", "sae_inter", "base_inter"} <= set(m["similarity"])
    assert m["versions"]["torch"] == torch.__version__ and m["options"]["seed"] == 2020
    with open(os.path.join(out, "concepts.json")) as fh:
        concepts = json.load(fh)
    assert concepts and any(c["terms"] for c in concepts)


def test_lm_concepts_go_through_the_judge_backends():
    from recbole_saerec.intents.judge import VERDICTS, OfflineJudge

    class StubEncoder:  # deterministic vectors: words sharing a first letter are close
        name = "stub"

        def encode(self, texts):
            out = np.zeros((len(texts), 27), dtype=np.float32)
            for r, t in enumerate(texts):
                out[r, (ord(t[0].lower()) - 97) % 26] = 1.0
                out[r, 26] = 0.2
            return out

    words = [["skincare", "serum", "sunscreen"], ["the", "and", "12"]]
    res = P.lm_concepts({}, words, judge=OfflineJudge(encoder=StubEncoder()))
    assert len(res) == 2 and all(r["lm_verdict"] in VERDICTS for r in res)
    assert res[0]["lm_verdict"] == "Yes" and res[1]["lm_verdict"] == "No"
    assert res[0]["lm_concept"] and res[0]["judge"].startswith("offline")
