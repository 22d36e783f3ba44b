"""The TopK sparse autoencoder (docs/method.md, stage 1, step 3).

    z     = ReLU(TopK(W_enc (x - b_dec) + b_enc))       [M latents, k non-zero]
    x_hat = W_dec^T z + b_dec

following Gao et al. 2024 ("Scaling and evaluating sparse autoencoders") and
the habits of EleutherAI's sparsify (``sparse_coder.py``): the decoder starts
as the encoder's transpose (tied initialisation) and keeps unit-norm rows, the
decoder bias is subtracted before encoding and initialised from the data
(see ``geometric_median``), and the quality metrics carry the literature's
names: ``fvu`` (fraction of variance unexplained = normalised MSE), L0, dead
fraction. ``tied=True`` keeps W_dec = W_enc for the whole run, as the SAERec
paper does; then the intent direction and the decoder direction coincide.

The rows of ``W_enc`` are the intent directions v_j that the interpretation and
the model use (docs/method.md). The auxiliary loss (AuxK) against dead latents is
computed here from a ``dead_mask`` the trainer supplies.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class SAEOutput(NamedTuple):
    x_hat: torch.Tensor          # [B, d] reconstruction
    acts: torch.Tensor           # [B, k] ReLU'd top-k pre-activations (zeros possible)
    indices: torch.Tensor        # [B, k] their latent ids
    fvu: torch.Tensor            # scalar: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2
    auxk_loss: torch.Tensor      # scalar: FVU of the dead latents' reconstruction of the residual (0 if none)


def geometric_median(x, iters=100, tol=1e-6):
    """Weiszfeld's algorithm: the point minimising the summed Euclidean distance to the rows of x.

    A robust centre for b_dec (dictionary_learning's TopK trainer does this); the
    mean is the quick alternative.
    """
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(1e-8)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if (y_new - y).norm() < tol * (1 + y.norm()):
            return y_new
        y = y_new
    return y


def _fvu(x, x_hat):
    return (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)


class TopKSAE(nn.Module):
    """TopK SAE with M = ``n_latents`` latents and ``k`` active per input.

    Args:
        d_in: input dimension d_t (the text encoder's).
        n_latents: M.
        k: active latents per input.
        tied: keep W_dec = W_enc throughout (the paper); False unties them after
            the tied initialisation (usually a lower FVU).
    """

    def __init__(self, d_in, n_latents, k, tied=True):
        super().__init__()
        if not 0 < k <= n_latents:
            raise ValueError(f"SAE: need 0 < k <= n_latents, got k={k}, n_latents={n_latents}.")
        self.d_in, self.n_latents, self.k, self.tied = int(d_in), int(n_latents), int(k), bool(tied)
        w = F.normalize(torch.randn(self.n_latents, self.d_in), dim=1)
        self.W_enc = nn.Parameter(w.clone())       # [M, d]: row j = intent direction v_j
        self.b_enc = nn.Parameter(torch.zeros(self.n_latents))
        self.W_dec = None if self.tied else nn.Parameter(w.clone())  # tied initialisation
        self.b_dec = nn.Parameter(torch.zeros(self.d_in))

    @property
    def decoder(self):
        """[M, d]: row j is what latent j adds to the reconstruction per unit of activation."""
        return self.W_enc if self.tied else self.W_dec

    def config(self):
        return {"d_in": self.d_in, "n_latents": self.n_latents, "k": self.k, "tied": self.tied}

    def pre_acts(self, x):
        return F.linear(x - self.b_dec, self.W_enc, self.b_enc)

    def encode(self, x, pre=None):
        """(acts [B, k], indices [B, k]): the k largest pre-activations, then ReLU.
        ``pre``: the pre-activations when the caller already has them (forward's AuxK needs them)."""
        top = (self.pre_acts(x) if pre is None else pre).topk(self.k, dim=-1, sorted=False)
        return F.relu(top.values), top.indices

    def decode(self, acts, indices):
        return F.embedding_bag(indices, self.decoder, per_sample_weights=acts, mode="sum") + self.b_dec

    def forward(self, x, dead_mask=None, auxk_k=None, auxk_scale=True):
        pre = self.pre_acts(x)
        acts, indices = self.encode(x, pre)
        x_hat = self.decode(acts, indices)
        fvu = _fvu(x, x_hat)
        auxk = x.new_zeros(())
        n_dead = int(dead_mask.sum()) if dead_mask is not None else 0
        if n_dead:
            # AuxK (Gao et al. 2024): the top-k_aux DEAD latents reconstruct the part
            # of x the live ones missed; this gives dead latents a gradient again.
            k_aux = min(auxk_k or self.d_in // 2, n_dead)
            aux_top = pre.masked_fill(~dead_mask, float("-inf")).topk(k_aux, dim=-1, sorted=False)
            residual = (x - x_hat).detach()
            e_hat = F.embedding_bag(aux_top.indices, self.decoder, per_sample_weights=F.relu(aux_top.values),
                                    mode="sum")
            if auxk_scale:
                # Least-squares scale (no gradient): only WHAT the dead latents add is judged,
                # not how much. Unscaled, the sum of k_aux dead latents overshoots a small
                # residual and the loss pushes them all further down: on toy data that
                # produced MORE dead latents than no AuxK at all (tests/test_intents_sae.py).
                scale = ((residual * e_hat).sum() / e_hat.pow(2).sum().clamp_min(1e-12)).detach().clamp_min(0)
                e_hat = e_hat * scale
            auxk = _fvu(residual, e_hat).nan_to_num(0.0)
        return SAEOutput(x_hat, acts, indices, fvu, auxk)

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self):
        w = self.decoder
        w.div_(w.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self):
        """Adam must not grow decoder rows that are renormalised after every step."""
        w = self.decoder
        if w.grad is None:
            return
        w.grad -= (w.grad * w).sum(1, keepdim=True) * w

    @torch.no_grad()
    def codes(self, x, batch_size=4096):
        """(acts [n, k], indices [n, k]) for a whole matrix, in batches."""
        parts = [self.encode(x[s:s + batch_size]) for s in range(0, len(x), batch_size)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    @classmethod
    def from_state(cls, state):
        sae = cls(**state["config"])
        sae.load_state_dict(state["state_dict"])
        return sae

    def state(self):
        """Plain tensors/dicts only, so it loads with torch.load(weights_only=True)."""
        return {"config": self.config(), "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()}}
