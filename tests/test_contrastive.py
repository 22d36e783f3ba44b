"""The contrastive baselines' pieces against hand computations, and each model through one epoch."""
import math

import pytest
import torch
import torch.nn.functional as F
from recbole.data import create_dataset, data_preparation

from conftest import base_config
from recbole_saerec.config import Config
from recbole_saerec.model import contrastive as C
from recbole_saerec.utils import get_model

CONTRASTIVE = ["CL4SRec", "DuoRec", "ICLRec", "ICSRec"]


# ----------------------------------------------------------------------------- InfoNCE by hand
def test_info_nce_matches_a_hand_computation():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[0.5, 0.5], [1.0, -1.0]])
    z = [z1[0], z1[1], z2[0], z2[1]]
    total = 0.0
    for i in range(4):
        partner = (i + 2) % 4
        logits = {j: float(z[i] @ z[j]) / 0.5 for j in range(4) if j != i}
        total += -logits[partner] + math.log(sum(math.exp(v) for v in logits.values()))
    assert C.info_nce(z1, z2, temperature=0.5) == pytest.approx(total / 4, rel=1e-6)


def test_false_negative_mask_removes_rows_with_the_anchors_label():
    z1, z2 = torch.randn(3, 4), torch.randn(3, 4)
    labels = torch.tensor([7, 7, 9])
    z = torch.cat([z1, z2])
    both = torch.cat([labels, labels])
    total = 0.0
    for i in range(6):
        partner = (i + 3) % 6
        keep = [j for j in range(6) if j != i and (j == partner or both[j] != both[i])]
        logits = torch.stack([z[i] @ z[j] for j in keep])
        total += -logits[keep.index(partner)] + torch.logsumexp(logits, 0)
    assert C.info_nce(z1, z2, labels=labels) == pytest.approx(float(total / 6), rel=1e-5)
    assert C.info_nce(z1, z2, labels=labels) != pytest.approx(float(C.info_nce(z1, z2)), rel=1e-3)


def test_cosine_similarity_ignores_the_norm():
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    assert C.info_nce(z1 * 5, z2 * 0.1, sim="cos") == pytest.approx(float(C.info_nce(z1, z2, sim="cos")), rel=1e-5)


# ----------------------------------------------------------------------------- augmentations
SEQ = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0],
                    [11, 12, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    [21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
LEN = torch.tensor([10, 3, 1])


def test_crop_keeps_a_contiguous_run_of_floor_ratio_items():
    before = SEQ.clone()
    for seed in range(20):
        out, n = C.crop(SEQ, LEN, 0.6, torch.Generator().manual_seed(seed))
        assert n.tolist() == [6, 1, 1]  # floor(0.6 L), at least one item
        for row in range(3):
            kept = out[row, : n[row]].tolist()
            real = SEQ[row, : LEN[row]].tolist()
            start = real.index(kept[0])
            assert real[start:start + len(kept)] == kept
            assert (out[row, n[row]:] == 0).all()
    assert torch.equal(SEQ, before)  # the input is never written


def test_mask_replaces_exactly_floor_ratio_real_items():
    for seed in range(20):
        out, n = C.mask(SEQ, LEN, 0.3, mask_id=99, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(n, LEN)
        assert ((out == 99).sum(1)).tolist() == [3, 0, 0]
        assert (out[SEQ == 0] == 0).all()  # padding stays padding
        assert torch.equal(out[out != 99], SEQ[out != 99])


def test_reorder_permutes_one_window_only():
    moved_somewhere = False
    for seed in range(20):
        out, n = C.reorder(SEQ, LEN, 0.6, torch.Generator().manual_seed(seed))
        assert torch.equal(n, LEN)
        assert torch.equal(out[1:], SEQ[1:])  # floor(0.6 * 3) = 1 and floor(0.6 * 1) = 0: nothing to shuffle
        changed = (out[0] != SEQ[0]).nonzero().flatten().tolist()
        if changed:
            moved_somewhere = True
            assert changed[-1] - changed[0] < 6  # inside one window of 6
        assert sorted(out[0].tolist()) == sorted(SEQ[0].tolist())
    assert moved_somewhere


def test_augment_applies_each_rows_operator():
    ops = torch.tensor([C.CROP, C.MASK, -1])
    out, n = C.augment(SEQ, LEN, ops, {"crop": 0.5, "mask": 0.7, "reorder": 0.2}, mask_id=99,
                       generator=torch.Generator().manual_seed(0))
    assert n.tolist() == [5, 3, 1]
    assert (out[1] == 99).sum() == 2  # floor(0.7 * 3)
    assert torch.equal(out[2], SEQ[2])  # -1: left as it is


# ----------------------------------------------------------------------------- same-target sampler
def test_same_target_sampler_draws_another_sequence_with_that_target():
    seqs = torch.tensor([[1, 2, 0], [3, 0, 0], [4, 5, 6], [7, 0, 0], [8, 9, 0]])
    lens = torch.tensor([2, 1, 3, 1, 2])
    targets = torch.tensor([5, 5, 5, 6, 7])
    sampler = C.SameTargetSampler(seqs, lens, targets, n_items=10)
    seen = set()
    torch.manual_seed(0)
    for _ in range(200):
        out, n = sampler.sample(seqs, lens, targets)
        for row in range(3):  # target 5: one of the two OTHER sequences, never itself
            got = tuple(out[row, : n[row]].tolist())
            assert got != tuple(seqs[row, : lens[row]].tolist())
            assert got in {(1, 2), (3,), (4, 5, 6)}
            seen.add((row, got))
        assert torch.equal(out[3:], seqs[3:])  # targets 6 and 7 have one sequence: itself
    assert len(seen) == 6  # every other candidate of every row was drawn: uniform among the others


# ----------------------------------------------------------------------------- clustering
def test_epoch_clustering_recovers_known_clusters_and_repeats_on_resume():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
    truth = torch.arange(3).repeat_interleave(40)
    points = centres[truth] + 0.3 * torch.randn(120, 2, generator=g)
    clustering = C.EpochClustering(3, seed=1)
    clustering.fit(points, epoch=0)
    ids = clustering.assign(points)
    for c in range(3):  # one cluster per true group, and no group split
        assert ids[truth == c].unique().numel() == 1
    assert ids.unique().numel() == 3
    assert torch.allclose(clustering.centroids(ids).norm(dim=1), torch.ones(120))
    again = C.EpochClustering(3, seed=1)
    again.fit(points, epoch=0)
    assert torch.equal(again.raw, clustering.raw)


def test_last_sample_per_user_picks_the_longest():
    users = [3, 3, 1, 1, 1, 2]
    lengths = [1, 2, 1, 3, 2, 1]
    assert sorted(C.last_sample_per_user(users, lengths).tolist()) == [1, 3, 5]


# ----------------------------------------------------------------------------- the models
def model_and_data(root, name, **overrides):
    config = Config(model=name, dataset="tiny", config_dict=base_config(root, n_layers=2, cluster_k=4, **overrides))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    return get_model(name)(config, train._dataset), train, test


@pytest.mark.parametrize("name", CONTRASTIVE)
def test_same_initialisation_and_scores_as_packed_sasrec(tiny_root, name):
    torch.manual_seed(3)
    ours, _, test = model_and_data(tiny_root, name)
    torch.manual_seed(3)
    base, _, _ = model_and_data(tiny_root, "PackedSASRec")
    shared = base.state_dict()
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in shared.items())
    batch = next(iter(test))[0]
    with torch.no_grad():
        assert torch.equal(ours.eval().full_sort_predict(batch), base.eval().full_sort_predict(batch))


def test_encode_many_equals_separate_calls(tiny_root):
    model, train, _ = model_and_data(tiny_root, "CL4SRec")
    model.eval()
    batch = next(iter(train))
    seq, length = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    short, short_len = seq[:, :3], length.clamp_max(3)
    with torch.no_grad():
        a, b = model.encode_many((seq, length), (short, short_len))
        assert torch.allclose(a, model.forward(seq, length, model.input_table()), atol=1e-6)
        assert torch.allclose(b, model.forward(short, short_len, model.input_table()), atol=1e-6)


def test_duorec_loss_is_ce_plus_weighted_info_nce(tiny_root):
    model, train, _ = model_and_data(tiny_root, "DuoRec", cl_weight=0.25)
    model.eval()  # no dropout: the second pass equals the first
    batch = next(iter(train))
    seq, length, target = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], batch[model.POS_ITEM_ID]
    with torch.no_grad():
        torch.manual_seed(11)
        loss = model.calculate_loss(batch)
        torch.manual_seed(11)
        positive = model.same_target.sample(seq, length, target)
        h = model.forward(seq, length)
        expected = F.cross_entropy(h @ model.item_embedding.weight.T, target) + 0.25 * C.info_nce(h, model.forward(*positive))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_icsrec_loss_adds_the_intent_term_once_clusters_exist(tiny_root):
    model, train, _ = model_and_data(tiny_root, "ICSRec")
    model.eval()
    batch = next(iter(train))
    seq, length, target = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], batch[model.POS_ITEM_ID]
    with torch.no_grad():
        torch.manual_seed(5)
        before = model.calculate_loss(batch)
        model.before_train_epoch(train, 0)
        assert model.clustering.ready and model.clustering.raw.shape[0] == 4
        torch.manual_seed(5)
        after = model.calculate_loss(batch)
        torch.manual_seed(5)
        other = model.same_target.sample(seq, length, target)
        h1, h2 = model.forward(seq, length), model.forward(*other)
        ce = F.cross_entropy(h1 @ model.item_embedding.weight.T, target)
        cicl = C.info_nce(h1, h2, labels=target)
        ficl = sum(C.info_nce(h, model.clustering.centroids(model.clustering.assign(h)),
                              labels=model.clustering.assign(h)) for h in (h1, h2))
    assert float(before) == pytest.approx(float(ce + 0.3 * cicl), rel=1e-5)
    assert float(after) == pytest.approx(float(ce + 0.3 * cicl + 0.1 * ficl), rel=1e-5)


@pytest.mark.parametrize("name", CONTRASTIVE)
def test_one_epoch_through_the_entry_point(tiny_root, tmp_path, name):
    from recbole_saerec.quick_start import run

    result = run(model=name, dataset="tiny", config_dict=base_config(tiny_root, tmp_path, cluster_k=4))
    assert set(result["test_result"]) >= {"hit@10", "ndcg@10"}
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())


def test_clustering_hook_runs_before_every_epoch(tiny_root, tmp_path, monkeypatch):
    from recbole_saerec.model.icsrec import ICSRec
    from recbole_saerec.quick_start import run

    calls = []
    original = ICSRec.before_train_epoch

    def spy(self, train_data, epoch):
        calls.append(epoch)
        return original(self, train_data, epoch)

    monkeypatch.setattr(ICSRec, "before_train_epoch", spy)
    run(model="ICSRec", dataset="tiny", config_dict=base_config(tiny_root, tmp_path, cluster_k=4, epochs=3))
    assert calls == [0, 1, 2]
