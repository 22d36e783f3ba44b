"""The TopK SAE and its trainer on synthetic data whose answer is known."""
import torch

from recbole_saerec.intents.sae import TopKSAE, geometric_median
from recbole_saerec.intents.sae_trainer import SAETrainer, default_k, default_n_latents, load_sae, save_sae

torch.set_num_threads(1)  # tiny matrices: one thread is faster, and the machine is shared


def sparse_data(n, d, n_features, k, seed=0, noise=0.01):
    """x = sum of k random unit features (of an overcomplete set) with weights in [0.5, 1.5], plus noise."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.nn.functional.normalize(torch.randn(n_features, d, generator=g), dim=1)
    idx = torch.stack([torch.randperm(n_features, generator=g)[:k] for _ in range(n)])
    w = torch.rand(n, k, generator=g) + 0.5
    x = (w[:, :, None] * feats[idx]).sum(1)
    return x + noise * torch.randn(n, d, generator=g)


def test_sae_beats_rank_k_pca_on_sparse_data():
    # 4 of 64 features per sample in 32 dims: no 4-dim subspace holds the data,
    # but a 4-sparse code over the right dictionary does.
    x = sparse_data(3000, 32, 64, 4)
    xc = x - x.mean(0)
    _, _, v = torch.linalg.svd(xc, full_matrices=False)
    pca_fvu = float((xc - xc @ v[:4].T @ v[:4]).pow(2).sum() / xc.pow(2).sum())
    sae, m = SAETrainer(128, 4, tied=True, steps=400, batch_size=500, progress=False).fit(x)
    assert m["l0"] <= 4.0
    assert m["fvu"] < 0.5 * pca_fvu, (m["fvu"], pca_fvu)  # measured: ~0.14 vs ~0.71
    # decoder rows stay unit-norm; the metrics agree with a recomputation
    assert torch.allclose(sae.decoder.norm(dim=1), torch.ones(128), atol=1e-4)
    assert abs(SAETrainer.evaluate(sae, x)["fvu"] - m["fvu"]) < 1e-5


def test_auxk_revives_dead_latents():
    # 512 latents, k = 2, for 8-of-64-feature data: without AuxK some latents stop firing for good.
    x = sparse_data(3000, 32, 64, 8)
    kw = dict(n_latents=512, k=2, tied=False, steps=500, batch_size=500, dead_steps=12, progress=False)
    _, without = SAETrainer(auxk_coef=0.0, **kw).fit(x)
    _, with_aux = SAETrainer(auxk_coef=1 / 32, **kw).fit(x)
    assert without["dead_fraction"] >= 0.02, without["dead_fraction"]  # measured 0.035
    assert with_aux["dead_fraction"] <= 0.5 * without["dead_fraction"], (with_aux["dead_fraction"],
                                                                         without["dead_fraction"])
    assert with_aux["fvu"] <= without["fvu"] + 0.01


def test_topk_codes_and_tied_initialisation():
    torch.manual_seed(0)
    sae = TopKSAE(8, 16, 3, tied=False)
    assert torch.equal(sae.W_enc, sae.W_dec)  # tied initialisation, untied afterwards
    x = torch.randn(5, 8)
    acts, idx = sae.encode(x)
    assert acts.shape == idx.shape == (5, 3) and (acts >= 0).all()
    pre = sae.pre_acts(x)
    assert torch.allclose(acts, torch.relu(pre.gather(1, idx)))
    assert torch.equal(pre.topk(3).values.min(1).values <= pre.gather(1, idx).min(1).values, torch.ones(5, dtype=bool))
    dense = torch.zeros(5, 16).scatter(1, idx, acts)
    assert torch.allclose(sae.decode(acts, idx), dense @ sae.W_dec + sae.b_dec, atol=1e-6)
    tied = TopKSAE(8, 16, 3, tied=True)
    assert tied.decoder is tied.W_enc


def test_geometric_median_ignores_outliers():
    x = torch.cat([torch.randn(95, 4) * 0.1, torch.full((5, 4), 100.0)])
    assert geometric_median(x).norm() < 0.5 < x.mean(0).norm()


def test_save_load_and_size_rules(tmp_path):
    sae, m = SAETrainer(16, 2, steps=5, batch_size=8, progress=False).fit(torch.randn(32, 8))
    path = str(tmp_path / "sae.pt")
    save_sae(path, sae, m)
    sae2, m2 = load_sae(path)
    assert torch.equal(sae2.W_enc, sae.W_enc) and m2["fvu"] == m["fvu"]
    assert (tmp_path / "sae.json").is_file()
    assert default_n_latents(1682) == 256 and default_n_latents(12101) == 1024
    assert default_n_latents(198502) == 16384 and default_n_latents(296337) == 32768
    assert default_k("items") == 8 and default_k("reviews") == 15
