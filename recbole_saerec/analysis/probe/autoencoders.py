"""The probe's autoencoders: the shared TopK SAE as a representation transform, and the dense baseline."""
import time

import numpy as np
import torch
from torch import nn


def sae_transform(sae, latent=None, scale=1.0):
    """Representation -> SAE reconstruction, with one latent's activation scaled where it is active."""

    def transform(x):
        acts, idx = sae.encode(x)
        if latent is not None:
            acts = torch.where(idx == latent, acts * scale, acts)
        return sae.decode(acts, idx)

    return transform

class DenseAE(nn.Module):
    """The dense baseline: ReLU(W_enc (x - b) + c) -> W_dec z + b, every latent active."""

    def __init__(self, d, n_latents):
        super().__init__()
        self.enc = nn.Linear(d, n_latents)
        self.dec = nn.Linear(n_latents, d)

    def forward(self, x):
        return self.dec(torch.relu(self.enc(x)))


def fvu(x, x_hat):
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12))


def train_dense_ae(x, n_latents, steps, batch_size=1024, lr=1e-3, seed=0):
    """Same data, steps and batch size as the SAE; Adam on the FVU; returns (model, metrics)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n, d = x.shape
    model = DenseAE(d, n_latents)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s < 0.8 * steps else (steps - s) / (0.2 * steps))
    var = (x - x.mean(0)).pow(2).sum(1).mean()
    batch = min(batch_size, n)
    start = time.time()
    for _ in range(steps):
        xb = x[torch.randint(0, n, (batch,), generator=gen)]
        loss = (model(xb) - xb).pow(2).sum(1).mean() / var
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        x_hat = torch.cat([model(x[s:s + 4096]) for s in range(0, n, 4096)])
    return model, {"fvu": round(fvu(x, x_hat), 4), "steps": steps, "lr": lr, "n_latents": n_latents,
                   "train_seconds": round(time.time() - start, 2)}




def fit_autoencoders(reps, m, k, tied=False, batch_size=1024, steps=None, seed=0, progress=False):
    """The probe's SAE (shared trainer) and the dense AE on the same data, steps and batch size.

    Returns (sae, sae_metrics, frequency [m], dense, dense_metrics); both models frozen/eval.
    """
    from recbole_saerec.intents.sae_trainer import SAETrainer

    trainer = SAETrainer(m, k, tied=tied, batch_size=batch_size, steps=steps, seed=seed, device="cpu",
                         progress=progress)
    sae, sae_metrics = trainer.fit(reps)
    sae.eval()
    for p in sae.parameters():
        p.requires_grad_(False)
    frequency = np.asarray(sae_metrics.pop("frequency"))
    history = sae_metrics.pop("history")
    sae_metrics["history_last"] = history[-1] if history else None
    dense, dense_metrics = train_dense_ae(reps, m, sae_metrics["steps"], sae_metrics["batch_size"], seed=seed)
    return sae, sae_metrics, frequency, dense, dense_metrics
