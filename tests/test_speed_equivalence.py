"""The speed paths compute the same model: packing, trimming, fused Q/K/V, bf16 autocast, the eval cache.

(tests/test_saerec.py already checks trimming on the forward output and our
transformer against RecBole's; these extend that to the whole model's scores.)
"""
import pytest
import torch
from recbole.data import create_dataset, data_preparation

from conftest import base_config, seed_all
from recbole_saerec.config import Config
from recbole_saerec.model.layers import BlockStack, Packer, bucketed_count
from recbole_saerec.utils import get_model


def make(root, **overrides):
    config = Config(model="SAERec", dataset="tiny", config_dict=base_config(root, **overrides))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    seed_all(0)
    return config, get_model("SAERec")(config, train._dataset), train, test


def first_batch(loader):
    batch = next(iter(loader))
    return batch[0] if isinstance(batch, tuple) else batch


def all_batches(loader):
    return [b[0] if isinstance(b, tuple) else b for b in loader]


def test_packer_roundtrip_and_last_index():
    lengths = torch.tensor([3, 1, 5, 0])
    p = Packer(lengths, 5)
    x = torch.randn(4, 5, 2)
    packed = p.pack(x)
    assert packed.shape == (3 + 1 + 5 + 1, 2)
    back = p.unpack(packed)
    real = torch.arange(5).unsqueeze(0) < lengths.clamp_min(1).unsqueeze(1)
    assert torch.equal(back[real], x[real]) and (back[~real] == 0).all()
    assert torch.equal(packed[p.last], x[torch.arange(4), lengths.clamp_min(1) - 1])
    assert p.positions.tolist() == [0, 1, 2, 0, 0, 1, 2, 3, 4, 0]


def test_packed_blockstack_equals_padded_at_real_positions():
    torch.manual_seed(0)
    stack = BlockStack(2, 2, 16, 32, 0.0, 0.0, 1e-12).eval()
    lengths = torch.tensor([4, 1, 7, 2])
    x = torch.randn(4, 7, 16)
    p = Packer(lengths, 7)
    with torch.no_grad():
        padded = stack(x, causal=True)
        packed = stack(p.pack(x), causal=True, packer=p)
    assert torch.allclose(p.pack(padded), packed, atol=1e-6)


def test_bucketed_count_bounds_overhead_and_distinct_shapes():
    sizes = [bucketed_count(n) for n in range(1, 256 * 50 + 1)]
    assert all(n <= b <= n * (1 + 1 / 16) for n, b in zip(range(1, 256 * 50 + 1), sizes))
    # a Beauty training batch packs ~1,500-3,500 real tokens: a handful of shapes, not thousands
    assert len({bucketed_count(n) for n in range(1500, 3500)}) <= 24
    assert len(set(sizes)) <= 16 * 14


def test_bucketed_packer_adds_only_padding_and_keeps_real_outputs():
    """Bucketing packs extra PADDING positions after the real ones; real outputs do not change."""
    torch.manual_seed(0)
    lengths = torch.tensor([9, 1, 13, 4, 0, 7])  # 35 real tokens -> bucket 36
    p, plain = Packer(lengths, 13), Packer(lengths, 13, bucket=False)
    assert plain.index.numel() == 35 and p.index.numel() == bucketed_count(35) == 36
    assert torch.equal(p.index[:35], plain.index) and torch.equal(p.last, plain.last)
    real = (torch.arange(13).unsqueeze(0) < lengths.clamp_min(1).unsqueeze(1)).reshape(-1)
    assert not real[p.index[35:]].any() and p.index.unique().numel() == p.index.numel()
    stack = BlockStack(2, 2, 16, 32, 0.0, 0.0, 1e-12).eval()
    x = torch.randn(6, 13, 16)
    with torch.no_grad():
        a = stack(p.pack(x), causal=True, packer=p)[:35]
        b = stack(plain.pack(x), causal=True, packer=plain)
        padded = stack(x, causal=True)
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(plain.pack(padded), b, atol=1e-6)


@pytest.mark.parametrize("switch", [{}, {"intent_query": "last_item", "intent_query_source": "embedding"}])
def test_packed_model_scores_equal_padded_model_scores(tiny_root, switch):
    """Whole model, full-sort scores and training loss/gradients: pack_tokens on == off."""
    _, packed, train, test = make(tiny_root, **switch)
    _, padded, _, _ = make(tiny_root, pack_tokens=False, **switch)
    padded.load_state_dict(packed.state_dict())
    packed.eval(), padded.eval()
    for batch in all_batches(test):
        with torch.no_grad():
            a, b = packed.full_sort_predict(batch), padded.full_sort_predict(batch)
        assert torch.allclose(a, b, atol=1e-5)
        assert torch.equal(a.topk(5).indices, b.topk(5).indices) or torch.allclose(a, b, atol=1e-6)
    # gradients agree too (dropout off: eval-mode dropout, but EMA off so training state is not touched)
    batch = first_batch(train)
    for model in (packed, padded):
        model.zero_grad()
        model.calculate_loss(batch).backward()
    for (name, ga), (_, gb) in zip(packed.named_parameters(), padded.named_parameters()):
        if ga.grad is not None or gb.grad is not None:
            assert torch.allclose(ga.grad, gb.grad, atol=1e-5), name


def test_whole_model_scores_do_not_depend_on_padding_width(tiny_root):
    """Full-sort scores of every test user are identical with extra padding columns (trimming is exact)."""
    _, model, _, test = make(tiny_root)
    model.eval()
    extra = 5
    model.position_embedding = torch.nn.Embedding.from_pretrained(
        torch.cat([model.position_embedding.weight, torch.randn(extra, model.hidden_size)]))
    for batch in all_batches(test):
        seq, lens = batch["item_id_list"], batch["item_length"]
        with torch.no_grad():
            a = model.full_sort_predict(batch)
            batch["item_id_list"] = torch.cat([seq, torch.zeros(seq.shape[0], extra, dtype=seq.dtype)], dim=1)
            b = model.full_sort_predict(batch)
            batch["item_id_list"] = seq
        assert torch.equal(a, b)
        assert lens.max() <= seq.shape[1]


def _train(model, train, epochs, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(epochs):
        for batch in all_batches(train):
            opt.zero_grad()
            model.calculate_loss(batch).backward()
            opt.step()
    model.eval()
    return model


def _hits(model, test, k=10):
    hits, total = 0, 0
    with torch.no_grad():
        for batch in all_batches(test):
            scores = model.full_sort_predict(batch)
            scores[:, 0] = -float("inf")
            top = scores.topk(k).indices
            hits += (top == batch["item_id"].unsqueeze(1)).any(1).sum().item()
            total += scores.shape[0]
    return hits / total


@pytest.fixture(scope="module")
def trained_pairs(tiny_root):
    """fp32 and bf16-autocast SAERec trained from the same init, two seeds each (one thread: tiny tensors)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for bf16 in (False, True):
            for seed in (0, 1):
                _, model, train, test = make(tiny_root, autocast_bf16=bf16, hidden_dropout_prob=0.1,
                                             attn_dropout_prob=0.1)
                out[(bf16, seed)] = (_train(model, train, epochs=10, seed=seed), test)
        return out
    finally:
        torch.set_num_threads(threads)


def test_bf16_autocast_scores_agree_with_fp32(trained_pairs):
    """Same trained weights: bf16 scores close to fp32 and the top of the ranking mostly the same."""
    model, test = trained_pairs[(False, 0)]
    batch = first_batch(test)
    with torch.no_grad():
        fp32 = model.full_sort_predict(batch)
        model.autocast_bf16 = True
        try:
            bf16 = model.full_sort_predict(batch)
        finally:
            model.autocast_bf16 = False
    assert bf16.dtype == torch.float32
    rel = (bf16 - fp32).abs().max() / fp32.abs().max()
    assert rel < 0.05, rel
    overlap = [len(set(a.tolist()) & set(b.tolist())) / 10
               for a, b in zip(fp32[:, 1:].topk(10).indices, bf16[:, 1:].topk(10).indices)]
    assert sum(overlap) / len(overlap) >= 0.7
    top1 = (fp32[:, 1:].argmax(1) == bf16[:, 1:].argmax(1)).float().mean()
    assert top1 >= 0.8


def test_bf16_training_metrics_within_noise_of_fp32(trained_pairs):
    """Trained in bf16 vs fp32 (same inits): HR@10 differs by no more than seed-to-seed noise."""
    hr = {key: _hits(model, test) for key, (model, test) in trained_pairs.items()}
    fp32 = [hr[(False, s)] for s in (0, 1)]
    bf16 = [hr[(True, s)] for s in (0, 1)]
    noise = max(abs(fp32[0] - fp32[1]), abs(bf16[0] - bf16[1]), 0.1)  # 40 users: one user = 0.025
    assert abs(sum(fp32) / 2 - sum(bf16) / 2) <= noise, (fp32, bf16)
    assert min(bf16) > 0.15, bf16  # it learnt something


def test_compile_flag_routes_the_forward_through_torch_compile_with_the_same_scores(tiny_root, monkeypatch):
    """compile: True runs every forward through torch.compile (eager backend here: no C compiler
    needed) and scores exactly as the eager model; the default never calls torch.compile."""
    real_compile, calls = torch.compile, []

    def spy(fn, **kwargs):
        compiled = real_compile(fn, **{**kwargs, "backend": "eager"})

        def run(*args, **kw):
            calls.append(kwargs)
            return compiled(*args, **kw)
        return run

    monkeypatch.setattr(torch, "compile", spy)
    _, eager, _, test = make(tiny_root)
    _, compiled, _, _ = make(tiny_root, compile=True)
    compiled.load_state_dict(eager.state_dict())
    eager.eval(), compiled.eval()
    batch = first_batch(test)
    with torch.no_grad():
        want = eager.full_sort_predict(batch)
        assert not calls  # the default model never went through torch.compile
        got = compiled.full_sort_predict(batch)
    assert calls and calls[0].get("dynamic") is True
    assert torch.allclose(got, want, atol=1e-5)


def test_grouped_attention_equals_padded_at_real_positions():
    torch.manual_seed(0)
    stack = BlockStack(2, 2, 16, 32, 0.0, 0.0, 1e-12).eval()
    lengths = torch.tensor([4, 1, 7, 2, 5, 13, 9, 3])  # groups of rounded width 1, 2, 3, 4, 5, 7, 10, 13
    x = torch.randn(8, 13, 16)
    grouped = Packer(lengths, 13, group_attention=True)
    assert len(grouped.groups) > 3 and grouped.group_targets.numel() == int(lengths.sum())
    with torch.no_grad():
        padded = stack(x, causal=True)
        out = stack(grouped.pack(x), causal=True, packer=grouped)
    real = grouped.index[: int(lengths.sum())]
    assert torch.allclose(padded.reshape(-1, 16)[real], out[: int(lengths.sum())], atol=1e-5)


@pytest.mark.parametrize("name", ["PackedSASRec", "SAERec", "ICSRec"])
def test_grouped_attention_gives_the_models_scores(tiny_root, name):
    def scores(group):
        config = Config(model=name, dataset="tiny", config_dict=base_config(tiny_root, pack_attention=group,
                                                                            cluster_k=4))
        train, _, test = data_preparation(config, create_dataset(config))
        seed_all(0)
        model = get_model(name)(config, train._dataset).eval()
        with torch.no_grad():
            return torch.cat([model.full_sort_predict(b) for b in all_batches(test)])
    assert torch.allclose(scores(True), scores(False), atol=1e-5)


def test_fused_cross_entropy_gives_the_same_loss_and_gradients():
    from recbole_saerec.model.layers import linear_cross_entropy

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 50, (37,), generator=g)  # 37 rows: chunks of 16 leave a short last one
    results = []
    for fused in (False, True):
        user = (torch.randn(37, 8, generator=torch.Generator().manual_seed(1)) * 2).requires_grad_()
        table = torch.randn(50, 8, generator=torch.Generator().manual_seed(2)).requires_grad_()
        loss = linear_cross_entropy(user, table, target, fused=fused, chunk=16)
        (3.0 * loss).backward()  # a scale on the way back reaches both gradients
        results.append((loss.detach(), user.grad, table.grad))
    (l0, u0, t0), (l1, u1, t1) = results
    assert torch.allclose(l0, l1, atol=1e-6) and torch.allclose(u0, u1, atol=1e-6) and torch.allclose(t0, t1, atol=1e-6)


@pytest.mark.parametrize("name", ["PackedSASRec", "SAERec"])
def test_fused_cross_entropy_trains_the_model_identically(tiny_root, name):
    def one_step(fused):
        config = Config(model=name, dataset="tiny", config_dict=base_config(tiny_root, fused_ce=fused))
        train, _, _ = data_preparation(config, create_dataset(config))
        seed_all(0)
        model = get_model(name)(config, train._dataset).eval()  # eval: no dropout, one deterministic step
        batch = first_batch(train)
        loss = model.calculate_loss(batch)
        loss.backward()
        return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    (l0, g0), (l1, g1) = one_step(False), one_step(True)
    assert torch.allclose(l0, l1, atol=1e-6) and set(g0) == set(g1)
    assert all(torch.allclose(g0[k], g1[k], atol=1e-6) for k in g0)


def test_cpu_dropout_keeps_the_distribution_and_eval_is_untouched():
    from recbole_saerec.model.layers import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.3)
    x = torch.ones(200_000)
    y = drop(x)
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.01  # the share zeroed is p
    values = torch.unique(y)
    assert values.numel() == 2 and values[0] == 0 and abs(float(values[1]) - 1 / 0.7) < 1e-6  # the rest x 1 / (1 - p)
    assert abs(float(y.mean()) - 1.0) < 0.01
    assert torch.equal(drop.eval()(x), x)


def test_attention_with_cpu_dropout_is_sdpa_when_nothing_is_dropped():
    from recbole_saerec.model import layers

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 7, 4, generator=g) for _ in range(3))
    for causal in (True, False):
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        assert torch.allclose(layers.attention(q, k, v, dropout_p=1e-12, is_causal=causal), expected, atol=1e-6)
    torch.manual_seed(1)
    dropped = layers.attention(q, k, v, dropout_p=0.5, is_causal=True)
    assert dropped.shape == q.shape and not torch.allclose(dropped, layers.attention(q, k, v, is_causal=True))


def test_bf16_cross_entropy_stays_close_to_fp32():
    from recbole_saerec.model.layers import linear_cross_entropy

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 300, (40,), generator=g)
    out = []
    for bf16 in (False, True):
        user = (torch.randn(40, 16, generator=torch.Generator().manual_seed(1))).requires_grad_()
        table = (0.3 * torch.randn(300, 16, generator=torch.Generator().manual_seed(2))).requires_grad_()
        loss = linear_cross_entropy(user, table, target, fused=True, chunk=16, bf16=bf16)
        loss.backward()
        out.append((loss.detach(), user.grad, table.grad))
    (l0, u0, t0), (l1, u1, t1) = out
    assert abs(float(l1 / l0) - 1) < 2e-3
    cos = torch.nn.functional.cosine_similarity
    assert cos(u0.flatten(), u1.flatten(), dim=0) > 0.999 and cos(t0.flatten(), t1.flatten(), dim=0) > 0.999
    assert u1.dtype == torch.float32 and t1.dtype == torch.float32


def test_item_feature_by_embedding_bag_equals_the_dense_mix(tiny_root):
    from recbole_saerec.artefacts import load_artefacts

    config, model, train, _ = make(tiny_root)
    arte = load_artefacts(config["intent_dir"], "tiny")
    dense = arte.item_activation_matrix(train._dataset.field2token_id["item_id"], model.n_items)
    dense = dense / dense.abs().sum(1, keepdim=True).clamp_min(1e-12)
    with torch.no_grad():
        intents = model.projected_intents()
        expected = model.item_embedding.weight + dense @ intents
        assert torch.allclose(model.item_table(intents), expected, atol=1e-6)
        assert torch.allclose(model.item_intent_activations.to_dense(), dense, atol=1e-7)


def test_item_feature_gradient_equals_the_dense_mix(tiny_root):
    config, model, train, _ = make(tiny_root)
    dense = model.item_intent_activations.to_dense()
    g = torch.randn(model.n_items, model.hidden_size, generator=torch.Generator().manual_seed(0))
    intents = model.projected_intents().detach().requires_grad_()
    (model.item_table(intents) * g).sum().backward()
    assert torch.allclose(intents.grad, dense.T @ g, atol=1e-5)
