"""Training the TopK SAE on text embeddings (one trainer, after dictionary_learning's ``top_k.py``).

* Adam (betas 0.9/0.999, eps 6.25e-10 as Gao et al.), large batches, learning
  rate ``2e-4 / sqrt(M / 2^14)`` (dictionary_learning's scaling: 2e-4 at 16,384
  latents, larger for smaller dictionaries), constant then linearly decayed to 0
  over the last 20% of steps.
* b_dec starts at the geometric median (or mean) of the data.
* Dead latents: a count of steps since each latent last fired; a latent silent
  for ``dead_steps`` steps is dead and trains through the AuxK loss
  (weight 1/32; the dead latents' top-k_aux, k_aux = d/2, rebuild the residual;
  by default with a least-squares scale, see TopKSAE.forward and
  ``sae_auxk_scale``).
* Decoder rows are kept at unit norm (gradient parallel to them removed first).
* GPU when present, CPU otherwise; a progress bar; the state dict and a
  ``.json`` of metrics are saved side by side.

Size rules for corpora of item text / reviews (documented in SAERec.yaml):

* ``default_n_latents(n)``: M = 2^round(log2(n / 12)), clipped to [256, 32768].
  It reproduces the authors' choices (Beauty's ~200k reviews -> 16,384; Sports'
  ~300k -> 32,768) and gives item-text corpora a dictionary of a few hundred to
  about a thousand latents (ml-100k: 1,682 titles -> 256; Beauty's 12,101
  item texts -> 1,024): about one latent per dozen texts, so that a latent must
  generalise over several texts instead of memorising one.
* ``default_k(source)``: 15 for reviews (the paper's k), 8 for item text:
  a title plus a few categories/genres carries fewer separate concepts than a
  review (RecSAE uses k = 8 for the same reason).
"""
import json
import math
import os
import time

import numpy as np
import torch

from recbole_saerec.fileio import atomic_path, save_tensor_file_atomic
from recbole_saerec.intents.sae import TopKSAE, geometric_median
from recbole_saerec.settings import default_k  # noqa: F401 - config_check checks sae_k against it too


def default_n_latents(n_texts):
    """M = 2^round(log2(n_texts / 12)), clipped to [256, 32768] (see the module docstring)."""
    return int(2 ** min(15, max(8, round(math.log2(max(n_texts, 1) / 12)))))


def default_lr(n_latents):
    return 2e-4 / math.sqrt(n_latents / 2 ** 14)


def default_steps(n_texts, batch_size):
    """At least 1,000 steps, and at least 50 epochs (the authors trained ~50 epochs).

    On ml-100k titles (M = 256) FVU is 0.338 after 1,000 steps and 0.329 after 2,000.
    """
    return int(max(1000, 50 * math.ceil(n_texts / batch_size)))


class SAETrainer:
    """Fits a TopKSAE to a matrix of embeddings.

    ``fit(x)`` returns the trained SAE and a metrics dict (FVU, L0, dead
    fraction, per-latent activation frequency, training history).
    """

    def __init__(self, n_latents, k, tied=True, lr=None, batch_size=1024, steps=None, auxk_coef=1 / 32,
                 auxk_k=None, auxk_scale=True, dead_steps=None, b_dec_init="median", seed=0, device=None,
                 progress=True):
        self.n_latents, self.k, self.tied = int(n_latents), int(k), bool(tied)
        self.lr = float(lr) if lr else default_lr(self.n_latents)
        self.batch_size, self.steps = int(batch_size), steps
        self.auxk_coef, self.auxk_k, self.dead_steps = float(auxk_coef), auxk_k, dead_steps
        self.auxk_scale = bool(auxk_scale)
        if b_dec_init not in ("median", "mean", "zero"):
            raise ValueError(f"sae_b_dec_init={b_dec_init!r}: choose median, mean or zero.")
        self.b_dec_init, self.seed, self.progress = b_dec_init, int(seed), progress
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def fit(self, x):
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        n, d = x.shape
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        sae = TopKSAE(d, self.n_latents, self.k, tied=self.tied)
        with torch.no_grad():
            if self.b_dec_init != "zero":
                sample = x[torch.randperm(n, generator=gen)[:10000]]
                sae.b_dec.copy_(geometric_median(sample) if self.b_dec_init == "median" else sample.mean(0))
        sae.to(self.device)
        x = x.to(self.device)
        batch = min(self.batch_size, n)
        steps = int(self.steps) if self.steps else default_steps(n, batch)
        dead_steps = int(self.dead_steps) if self.dead_steps else max(1, math.ceil(2 * n / batch))
        decay_start = int(0.8 * steps)
        opt = torch.optim.Adam(sae.parameters(), lr=self.lr, betas=(0.9, 0.999), eps=6.25e-10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 1.0 if s < decay_start else max(0.0, (steps - s) / max(1, steps - decay_start)))
        since_fired = torch.zeros(self.n_latents, dtype=torch.long, device=self.device)
        history, perm, pos = [], torch.randperm(n, generator=gen), 0
        from tqdm.auto import tqdm

        start = time.time()
        bar = tqdm(range(steps), desc="SAE", unit="step", disable=not self.progress)
        for step in bar:
            if pos + batch > n:
                perm, pos = torch.randperm(n, generator=gen), 0
            xb = x[perm[pos:pos + batch].to(self.device)]
            pos += batch
            dead = since_fired > dead_steps
            out = sae(xb, dead_mask=dead if self.auxk_coef > 0 else None, auxk_k=self.auxk_k,
                      auxk_scale=self.auxk_scale)
            loss = out.fvu + self.auxk_coef * out.auxk_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            sched.step()
            sae.set_decoder_norm_to_unit_norm()
            with torch.no_grad():
                fired = torch.zeros(self.n_latents, dtype=torch.bool, device=self.device)
                fired[out.indices[out.acts > 0]] = True
                since_fired += 1
                since_fired[fired] = 0
            if step % 50 == 0 or step == steps - 1:
                rec = {"step": step, "fvu": float(out.fvu.detach()), "auxk": float(out.auxk_loss.detach()),
                       "dead_fraction": float(dead.float().mean())}
                history.append(rec)
                bar.set_postfix(fvu=f"{rec['fvu']:.3f}", dead=f"{rec['dead_fraction']:.2f}")
        bar.close()
        metrics = self.evaluate(sae, x)
        metrics.update(n_texts=n, d_in=d, n_latents=self.n_latents, k=self.k, tied=self.tied, lr=self.lr,
                       auxk_scale=self.auxk_scale,
                       batch_size=batch, steps=steps, auxk_coef=self.auxk_coef, dead_steps=dead_steps,
                       b_dec_init=self.b_dec_init, seed=self.seed, device=str(self.device),
                       train_seconds=round(time.time() - start, 2), history=history)
        return sae.cpu(), metrics

    @staticmethod
    @torch.no_grad()
    def evaluate(sae, x):
        """FVU, L0 (mean active latents per input), dead fraction (never fires on x), frequency per latent."""
        x = torch.as_tensor(x, dtype=torch.float32).to(next(sae.parameters()).device)
        acts, idx = sae.codes(x)
        x_hat = torch.cat([sae.decode(acts[s:s + 4096], idx[s:s + 4096]) for s in range(0, len(x), 4096)])
        fvu = (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        active = acts > 0
        counts = torch.zeros(sae.n_latents, device=x.device).index_add_(0, idx[active], torch.ones_like(acts[active]))
        freq = (counts / len(x)).cpu()
        return {"fvu": float(fvu), "l0": float(active.sum(1).float().mean()),
                "dead_fraction": float((freq == 0).float().mean()), "frequency": freq.tolist()}


def save_sae(path, sae, metrics):
    """``path`` (state dict + config, weights-only loadable) and ``path`` minus .pt + ``.json`` (metrics)."""
    save_tensor_file_atomic(path, sae.state())
    with atomic_path(os.path.splitext(path)[0] + ".json") as tmp, open(tmp, "w") as f:
        json.dump(metrics, f, indent=1)


def load_sae(path):
    """(TopKSAE, metrics) saved by save_sae, or None when either file is missing."""
    meta = os.path.splitext(path)[0] + ".json"
    if not (os.path.isfile(path) and os.path.isfile(meta)):
        return None
    with open(meta) as f:
        metrics = json.load(f)
    return TopKSAE.from_state(torch.load(path, weights_only=True)), metrics
