"""Explanations report what the model used; steering is the identity at weight 1 and moves top-K as asked."""
import json
import os
import subprocess
import sys

import pytest
import torch
from recbole.data import create_dataset

from conftest import GENRES, N_ITEMS, base_config, seed_all, write_fake_intents, write_tiny_dataset
from recbole_saerec.analysis import explain, labels, steer
from recbole_saerec.analysis.checkpoints import Bundle, ItemText, load_model
from recbole_saerec.analysis.explain import explain_users
from recbole_saerec.analysis.steer import rank_all, select_intents, steer_report, steered
from recbole_saerec.cli import UsageError
from recbole_saerec.config import Config
from recbole_saerec.data import split_with_protocol
from recbole_saerec.quick_start import run
from recbole_saerec.utils import get_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_categories(root, name="tiny"):
    """Add a multi-valued category column ('Beauty | <genre>') to the tiny .item file."""
    path = os.path.join(root, name, f"{name}.item")
    with open(path, "w") as f:
        f.write("item_id:token\ttitle:token_seq\tcategories:token_seq\n")
        for i in range(1, N_ITEMS + 1):
            genre = GENRES[(i - 1) % 3]
            f.write(f"i{i}\t{genre} product number {i}\tBeauty | {genre.title()}\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SAERec trained for 2 epochs through quick_start.run, its checkpoint and the loaded bundle."""
    root = str(tmp_path_factory.mktemp("explain"))
    write_tiny_dataset(root)
    write_categories(root)
    write_fake_intents(os.path.join(root, "intents"))
    result = run("SAERec", "tiny", config_dict=base_config(root, os.path.join(root, "saved"), epochs=2), saved=True)
    return root, result, load_model(result["saved_model_file"], trust=True)


def all_test_batch(bundle):
    rows = explain.test_rows(bundle)
    (_, inter), = list(explain.batches(bundle, rows, batch_size=len(rows)))
    return inter


# ------------------------------------------------------------------ explanations
def test_reported_intents_are_the_ones_the_forward_pass_used(trained):
    _, _, bundle = trained
    model = bundle.model
    inter = all_test_batch(bundle)
    seen = {}
    original = model.retrieve_personal

    def spy_retrieve(query, intents):
        scores, idx = original(query, intents)
        seen.update(query=query.detach().clone(), intents=intents.detach().clone(), idx=idx.clone())
        return scores, idx

    def spy_branch(name):
        def hook(module, args, kwargs, output):
            seen[name] = kwargs["memory"].detach().clone()
        return hook

    handles = [model.personal_branch.register_forward_hook(spy_branch("personal_memory"), with_kwargs=True),
               model.public_branch.register_forward_hook(spy_branch("public_memory"), with_kwargs=True)]
    model.retrieve_personal = spy_retrieve
    try:
        with torch.no_grad():
            reference = model.full_sort_predict(inter)  # RecBole's own scoring path
    finally:
        del model.retrieve_personal
        for h in handles:
            h.remove()

    explained = explain_users(bundle, topk=5)
    assert [e["user"] for e in explained] == list(bundle.test_data._dataset.id2token(
        bundle.test_data._dataset.uid_field, inter[bundle.test_data._dataset.uid_field].numpy()))
    rows = torch.tensor([[p["row"] for p in e["personal_intents"]] for e in explained])
    cos = torch.tensor([[p["score"] for p in e["personal_intents"]] for e in explained])
    public_rows = torch.tensor([p["row"] for p in explained[0]["public_intents"]])

    # the same intents as the model's retrieval, and the model's branch memories are exactly them
    assert torch.equal(rows, seen["idx"])
    projected = seen["intents"]
    assert torch.allclose(seen["personal_memory"], projected[rows])
    assert torch.allclose(seen["public_memory"][0], projected[public_rows])
    assert all([p["row"] for p in e["public_intents"]] == public_rows.tolist() for e in explained)
    # recompute the reported retrieval scores from the query and the reported intents
    recomputed = torch.nn.functional.cosine_similarity(seen["query"].unsqueeze(1), projected[rows], dim=-1)
    assert torch.allclose(cos, recomputed, atol=1e-5)
    # the reported recommendations are full_sort_predict's top-K; fusion weights are a distribution
    reference[:, 0] = -torch.inf
    top_scores, top_ids = reference.topk(5, dim=-1)
    ds = bundle.test_data._dataset
    for b, e in enumerate(explained):
        assert [r["item"] for r in e["recommendations"]] == list(ds.id2token(ds.iid_field, top_ids[b].numpy()))
        assert torch.allclose(torch.tensor([r["score"] for r in e["recommendations"]]), top_scores[b], atol=1e-5)
        assert set(e["fusion"]) == {"self", "personal", "public"}
        if model.fusion == "residual":  # the self state counts once; the intent branches share a softmax
            assert e["fusion"]["self"] == 1.0 and abs(e["fusion"]["personal"] + e["fusion"]["public"] - 1) < 1e-5
        else:
            assert abs(sum(e["fusion"].values()) - 1) < 1e-5
        target_score = reference[b, ds.token2id(ds.iid_field, e["target"]["item"])]
        assert e["target"]["rank"] == int((reference[b] > target_score).sum()) + 1
        entry = model.intent_catalogue[e["personal_intents"][0]["row"]]
        assert e["personal_intents"][0]["words"] == entry["words"] and e["personal_intents"][0]["summary"] == entry[
            "summary"]


def test_single_and_batched_explanations_agree_and_text_is_readable(trained):
    _, _, bundle = trained
    everyone = {e["user"]: e for e in explain_users(bundle, topk=5, batch_size=7)}
    one, = explain_users(bundle, ["u4"], topk=5)
    assert one["personal_intents"] == everyone["u4"]["personal_intents"] or all(
        a["row"] == b["row"] and abs(a["score"] - b["score"]) < 1e-5
        for a, b in zip(one["personal_intents"], everyone["u4"]["personal_intents"]))
    assert [r["item"] for r in one["recommendations"]] == [r["item"] for r in everyone["u4"]["recommendations"]]
    last = one["history"][-1]
    assert last["title"] == f"{GENRES[(int(last['item'][1:]) - 1) % 3]} product number {last['item'][1:]}"  # .item
    text = explain.format_explanation(one)
    for piece in ("User u4", "Top-5 recommendations", "Personal intents", "Public intents"):
        assert piece in text
    # the default 'mean' fusion gives every user 1/3 per branch: no line repeating that constant
    assert one["fusion_rule"] == "mean" and "Fusion weights" not in text
    assert "Fusion weights (adaptive gate" in explain.format_explanation(dict(one, fusion_rule="adaptive"))
    with pytest.raises(KeyError, match="Unknown user"):
        explain_users(bundle, ["nobody"])


def test_unsteered_metrics_are_the_checkpoints_test_metrics(trained):
    _, result, bundle = trained
    for k in (10, 20):
        ranked = rank_all(bundle, topk=k)
        assert ranked["hr"] == pytest.approx(result["test_result"][f"hit@{k}"], abs=1e-4)
        assert ranked["ndcg"] == pytest.approx(result["test_result"][f"ndcg@{k}"], abs=1e-4)


def test_unsteered_metrics_match_under_the_seen_item_mask(trained, tmp_path):
    """mask_history (the paper's protocol): explanations and steering rank as the evaluation does."""
    root, _, _ = trained
    result = run("SAERec", "tiny", config_dict=base_config(root, str(tmp_path), epochs=1, mask_history=True))
    bundle = load_model(result["saved_model_file"])
    ranked = rank_all(bundle, topk=10)
    assert ranked["hr"] == pytest.approx(result["test_result"]["hit@10"], abs=1e-4)
    assert ranked["ndcg"] == pytest.approx(result["test_result"]["ndcg@10"], abs=1e-4)
    for e in explain.explain_users(bundle, topk=5):  # history shown = the whole input sequence here (<= 10)
        assert not {h["item"] for h in e["history"]} & {r["item"] for r in e["recommendations"]}


# ------------------------------------------------------------------ steering
def test_select_intents_by_words_or_summary():
    cat = [{"row": 0, "words": ["skin", "cream"], "summary": "Skincare"},
           {"row": 1, "words": ["lipstick"], "summary": "Lip makeup"},
           {"row": 2, "words": ["moisturizer"], "summary": "Hydration"}]
    assert select_intents(cat, "skin,moistur*", "words") == [0, 2]  # a prefix only when asked with '*'
    assert select_intents(cat, "skin,moistur", "words") == [0]
    assert select_intents(cat, "MAKEUP", "summary") == [1]
    assert select_intents(cat, "skin", "both") == [0]
    assert select_intents(cat, "nothing") == []


def test_whole_words_never_substrings_and_the_label_decides():
    """'nail' once selected a 'snail' intent (substring) whose items are ancient-history books; by whole
    words and by the label of what each intent fires on, it selects only the nail intents."""
    cat = [{"row": 0, "words": ["egyptian", "snail", "aztec"], "summary": "egyptian, ancient, aztec"},
           {"row": 1, "words": ["lacquer", "nails", "shatter"], "summary": "lacquer, nails"},
           {"row": 2, "words": ["nail", "salon"], "summary": "nail salon"}]
    labels = [{"category": "Skin Care", "words": ["snail", "mucin"]},
              {"category": "Nail Polish", "words": ["crackle"]},
              {"category": "Hair Care", "words": ["salon"]}]  # MI words say 'nail', its items are hair care
    assert select_intents(cat, "nail", "words") == [1, 2]  # 'nails' is 'nail'; 'snail' is not
    assert select_intents(cat, "nail", "label", labels) == [1]
    assert select_intents(cat, "nail,polish", "all", labels) == [1, 2]
    assert steer.matches("nail", "Nail Art") and steer.matches("nail", "Hands & Nails")
    assert not steer.matches("nail", "snail") and not steer.matches("polish", "polished furniture")
    assert steer.matches("nail art", "Nail Art Equipment") and not steer.matches("nail art", "Art of Nails")


@pytest.mark.parametrize("mode", ["model", "score"])
def test_weight_one_changes_nothing(trained, mode):
    _, _, bundle = trained
    rows = list(range(bundle.model.n_intents))
    base = rank_all(bundle, topk=10)
    same = rank_all(bundle, topk=10, rows=rows, weight=1.0, mode=mode)
    assert torch.equal(base["top_ids"], same["top_ids"])
    assert (base["hr"], base["ndcg"]) == (same["hr"], same["ndcg"])
    rep = steer_report(bundle, "w1,w2", [1.0], category_field="categories", mode=mode)
    run_ = rep["runs"][0]
    assert run_["users_with_changed_topk"] == 0 and run_["other_drift"]["total_abs_change"] == 0
    assert run_["counts_after"] == rep["counts_before"]
    assert torch.equal(bundle.model.steer_weights, torch.ones(bundle.model.n_intents))


def test_steered_restores_weights_and_moves_rankings(trained):
    _, _, bundle = trained
    model = bundle.model
    base = rank_all(bundle, topk=10)
    with steered(model, [0, 3], 4.0):
        assert model.steer_weights[[0, 3]].tolist() == [4.0, 4.0] and model.steer_weights[1] == 1
    assert torch.equal(model.steer_weights, torch.ones(model.n_intents))
    moved = rank_all(bundle, topk=10, rows=list(range(model.n_intents // 2)), weight=4.0)
    assert not torch.equal(base["top_ids"], moved["top_ids"])


def count_in_topk(top_ids, items):
    return int(torch.isin(top_ids, items).sum())


def test_score_mode_is_monotone_for_the_items_of_an_intent(trained):
    """Hand-built: the items that activate intent j gain (weight - 1) * spread * a_ij, the others nothing."""
    _, _, bundle = trained
    model = bundle.model
    act = model.item_intent_activations.to_dense()
    j = int((act > 0).sum(0).argmax())  # the intent that most items activate
    tied = (act[:, j] > 0).nonzero().squeeze(1)
    counts = [count_in_topk(rank_all(bundle, topk=5, rows=[j], weight=w, mode="score")["top_ids"], tied)
              for w in (0.0, 0.5, 1.0, 1.5, 2.0, 4.0, 8.0, 32.0)]
    assert counts == sorted(counts), counts
    assert counts[-1] > counts[2]  # and it does move


def hand_built_bundle(root, j=2, tied=(1, 2, 3, 4, 5)):
    """A SAERec whose user vector is the same vector b for everyone and whose intent j projects onto b.

    Self branch only (no intent branches), the last LayerNorm outputs its bias b, intent j is active
    on `tied` items only: score_i = b.e_i + w_j * a_ij * |b|^2, so raising w_j can only lift the tied items.
    """
    config = Config(model="SAERec", dataset="tiny", config_dict=base_config(
        root, use_personal=False, use_public=False, hidden_dropout_prob=0.0, attn_dropout_prob=0.0))
    dataset = create_dataset(config)
    train, valid, test = split_with_protocol(config, dataset)
    seed_all(0)
    model = get_model("SAERec")(config, train._dataset)
    d = model.hidden_size
    with torch.no_grad():
        b = torch.randn(d, generator=torch.Generator().manual_seed(1))
        final_norm = model.self_branch.layers[-1].feed_forward.LayerNorm
        final_norm.weight.zero_()
        final_norm.bias.copy_(b)
        model.intent_map.weight.zero_()
        model.intent_vectors.zero_()
        model.intent_vectors[j, 0] = 1.0
        model.intent_map.weight[:, 0] = b / b.norm() ** 2 * 2.0  # q_j = 2 b / |b|^2, so b.q_j = 2
        act = torch.zeros(model.n_items, model.n_intents)
        act[list(tied), j] = 1.0
        model.item_intent_activations = act.to_sparse()
    model.eval()
    return Bundle(config, dataset, train, valid, test, model, ItemText.from_config(config, dataset), "hand-built")


def test_model_mode_is_monotone_on_a_hand_built_case(trained):
    root, _, _ = trained
    bundle = hand_built_bundle(root)
    tied = torch.tensor([1, 2, 3, 4, 5])
    counts = []
    for w in (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0):
        counts.append(count_in_topk(rank_all(bundle, topk=5, rows=[2], weight=w)["top_ids"], tied))
    assert counts == sorted(counts), counts
    assert counts[0] < counts[-1] == 5 * len(bundle.test_data._dataset)


# ------------------------------------------------------------------ CLIs
def test_explain_and_steer_clis_on_the_tiny_checkpoint(trained, tmp_path, capsys):
    _, result, _ = trained
    ckpt = result["saved_model_file"]
    out = explain.main([f"--checkpoint={ckpt}", "--trust_checkpoint", "--users=u1,u2", "--topk", "5",
                        "--json", str(tmp_path / "e.json"), "--png", str(tmp_path / "e.png")])
    text = capsys.readouterr().out
    assert "User u1" in text and "User u2" in text and len(out) == 2
    saved = json.loads((tmp_path / "e.json").read_text())
    assert [u["user"] for u in saved["users"]] == ["u1", "u2"]
    assert (tmp_path / "e_u1.png").stat().st_size > 0 and (tmp_path / "e_u2.png").stat().st_size > 0

    rep = steer.main([f"--checkpoint={ckpt}", "--trust_checkpoint", "--match=w1a,theme 2", "--weight", "1,3",
                      "--field", "both", "--label_min_readability=0",
                      "--category_field", "categories", "--target_category", "Skincare",
                      "--json", str(tmp_path / "s.json"), "--png", str(tmp_path / "s.png")])
    text = capsys.readouterr().out
    assert "Skincare" in text and "other categories" in text and "cost: HR@10" in text
    assert rep["selected_intents"] and [r["weight"] for r in rep["runs"]] == [1.0, 3.0]
    assert rep["counts_before"]["Beauty"] == 10 * rep["users"]  # every item carries 'Beauty'
    assert (tmp_path / "s.png").stat().st_size > 0
    with pytest.raises(UsageError, match="No column"):
        steer.main([f"--checkpoint={ckpt}", "--trust_checkpoint", "--match=w1a", "--category_field", "genre"])

    # the module entry point itself (a fresh interpreter), from another working folder, given the run
    # folder (as the benchmark keeps it) instead of the .pth
    proc = subprocess.run([sys.executable, "-m", "recbole_saerec.analysis.explain",
                           f"--checkpoint={os.path.dirname(ckpt)}", "--user=u3", "--topk=3"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "User u3" in proc.stdout and "Personal intents" in proc.stdout
    assert "FutureWarning" not in proc.stderr
    # a user mistake: one line and the fix, no traceback
    proc = subprocess.run([sys.executable, "-m", "recbole_saerec.analysis.explain", f"--checkpoint={ckpt}",
                           "--trust_checkpoint", "--user=nobody"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: Unknown user 'nobody'" in proc.stderr


def _expl(personal, public, fusion=(0.5, 0.3, 0.2)):
    entry = lambda r: {"row": r, "summary": f"intent {r}", "words": [f"w{r}"]}  # noqa: E731
    return {"personal_intents": [entry(r) for r in personal], "public_intents": [entry(r) for r in public],
            "fusion": dict(zip(["self", "personal", "public"], fusion))}


def test_retrieval_summary_counts_hand_built_cases():
    """3 users, S = 2: two share the set {1, 2}; public = {1, 3}."""
    es = [_expl([1, 2], [1, 3]), _expl([2, 1], [1, 3], (0.1, 0.8, 0.1)), _expl([4, 5], [1, 3])]
    s = explain.retrieval_summary(es, top=2)
    assert s["users"] == 3 and s["distinct_personal_intents"] == 4 and s["distinct_personal_sets"] == 2
    assert s["most_common_set_share"] == pytest.approx(2 / 3)
    assert s["personal_also_public"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert [(m["row"], m["share_of_users"]) for m in s["most_retrieved"]] == [(1, 2 / 3), (2, 2 / 3)]
    assert s["mean_fusion"]["personal"] == pytest.approx((0.3 + 0.8 + 0.3) / 3)
    assert "2 distinct sets" in explain.format_retrieval_summary(s)


def test_retrieval_summary_of_a_trained_model_matches_its_explanations(trained):
    bundle = trained[2]
    es = explain_users(bundle)
    s = explain.retrieval_summary(es)
    assert s["users"] == len(es)
    rows = {p["row"] for e in es for p in e["personal_intents"]}
    assert s["distinct_personal_intents"] == len(rows)
    assert 0 < s["most_common_set_share"] <= 1 and 0 <= s["personal_also_public"] <= 1


# ------------------------------------------------------------------ steering by what intents fire on
def test_intent_category_shares_and_selection_hand_built():
    from types import SimpleNamespace

    import numpy as np

    # items 1-4 (0 = padding); categories: A = items 1, 2; B = items 3, 4; 'Root' = all
    cats = np.array([[0, 0, 0], [1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 1, 1]], dtype=np.float32)
    # intent 0 fires on items 1, 2 (all A); intent 1 on 1 and 3 equally; intent 2 mostly on B
    act = torch.tensor([[0, 0, 0], [1.0, 0.5, 0], [1.0, 0, 0.1], [0, 0.5, 0.9], [0, 0, 1.0]])
    shares = steer.intent_category_shares(SimpleNamespace(item_intent_activations=act.to_sparse()), cats)
    assert np.allclose(shares[:, 0], [1.0, 0.5, 0.1 / 2.0]) and np.allclose(shares[:, 2], 1.0)
    base = cats[1:].mean(0)  # 0.5, 0.5, 1.0
    assert steer.select_by_category(shares, 0, base[0], min_share=0.5, min_lift=1.0) == [0, 1]
    assert steer.select_by_category(shares, 0, base[0], min_share=0.6, min_lift=1.0) == [0]
    assert steer.select_by_category(shares, 1, base[1], min_share=0.6, min_lift=1.0) == [2]
    assert steer.select_by_category(shares, 2, base[2], min_share=0.5, min_lift=2.0) == []  # carried by all


def test_category_sweep_on_the_tiny_checkpoint(trained):
    _, _, bundle = trained
    everything = labels.model_labels(bundle, labels.label_settings({"label_min_readability": 0}))
    rep = steer.category_sweep(bundle, n_categories=10, weight=50.0, category_field="categories", mode="score",
                               min_share=0.4, min_lift=1.0, labels=everything)
    assert rep["skipped_categories"] == ["Beauty"]  # every item carries it
    assert sorted(r["category"] for r in rep["categories"]) == ["Haircare", "Makeup", "Skincare"]
    assert rep["n_expected_sign"] == sum(r["expected_sign"] for r in rep["categories"])
    moved = [r for r in rep["categories"] if r["intents"]]
    assert moved and all(r["expected_sign"] and r["change"] > 0 for r in moved)
    for r in rep["categories"]:
        if not r["intents"]:
            assert r["change"] == 0 and not r["expected_sign"]
    assert "Expected sign for" in steer.format_sweep(rep)
    assert torch.equal(bundle.model.steer_weights, torch.ones(bundle.model.n_intents))
    with pytest.raises(ValueError, match="weight 1"):
        steer.category_sweep(bundle, weight=1.0)


def test_category_sweep_cli(trained, tmp_path, capsys):
    _, result, _ = trained
    out = str(tmp_path / "sweep.json")
    rep = steer.main(["--checkpoint", result["saved_model_file"], "--categories", "2", "--weight", "50",
                      "--mode", "score", "--min_share", "0.4", "--json", out])
    assert len(rep["categories"]) == 2 and "Expected sign for" in capsys.readouterr().out
    with open(out) as f:
        assert json.load(f)["n_categories"] == 2
    for argv in (["--weight", "2"], ["--categories", "2", "--match", "x"], ["--categories", "2", "--weight", "2,3"]):
        with pytest.raises(UsageError, match="--match|--weight"):
            steer.main(["--checkpoint", result["saved_model_file"]] + argv)


def test_steer_by_a_named_category_selects_what_fires_on_it(trained):
    import numpy as np

    _, _, bundle = trained
    everything = labels.model_labels(bundle, labels.label_settings({"label_min_readability": 0}))
    rep = steer_report(bundle, weights=[3.0], categories="skincare", category_field="categories", mode="score",
                       labels=everything, min_share=0.4, min_lift=1.0)
    cats, mat = steer.category_matrix(bundle, "categories")
    k = cats.index("Skincare")
    expected = steer.select_by_category(steer.intent_category_shares(bundle.model, mat), k, mat[1:].mean(0)[k],
                                        0.4, 1.0)
    assert [s["row"] for s in rep["selected_intents"]] == expected and expected
    assert rep["target_categories"] == ["Skincare"] and not np.isnan(rep["runs"][0]["metrics"]["hit@10"]["after"])
    assert rep["runs"][0]["targets"]["Skincare"]["change"] > 0  # score mode: monotone for what they fire on
    with pytest.raises(ValueError, match="no category 'Nails'"):
        steer_report(bundle, categories="Nails", labels=everything)
