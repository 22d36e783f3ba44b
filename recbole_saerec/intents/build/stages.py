"""The build's numeric stages: SAE / KMeans codes (cached), the sparse code matrix, per-item activations."""
import hashlib
import json
import os
from logging import getLogger

import numpy as np
import scipy.sparse as sp
import torch

from recbole_saerec.fileio import save_tensor_file_atomic
from recbole_saerec.settings import setting


class IntentBuildError(ValueError):
    """Settings that only turn out not to fit once the corpus is known (k above the latents the rule gives,
    more clusters than texts, an empty vocabulary, no latent kept): one line naming the fix."""


def _sha(obj):
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sae_seed(config):
    """The SAE / KMeans seed: ``sae_seed``, whose yaml default ``~`` means the run's ``seed``."""
    seed = setting(config, "sae_seed")
    return int(setting(config, "seed") if seed is None else seed)


def say(msg, progress):
    """To RecBole's logger when one is set up (console + log file), else to stdout."""
    if getLogger().handlers:
        getLogger().info(msg)
    elif progress:
        print(msg, flush=True)


# ----------------------------------------------------------------------------- stages
def fit_codes(config, x, emb_key, source, cache_dir, progress=True):
    """SAE (or KMeans) on the embeddings -> (method, directions [M, d], center [d], codes, metrics).

    ``codes`` = (acts [n, k], indices [n, k]); ``directions`` are what the words
    are matched against and what becomes the intent vectors (SAE: encoder rows;
    KMeans: centroids); ``center`` is subtracted from word embeddings before
    matching (SAE: b_dec, which the encoder subtracts from its inputs; KMeans:
    the data mean).
    """
    from recbole_saerec.intents.sae_trainer import (SAETrainer, default_k, default_n_latents, load_sae,
                                                    save_sae)

    method = str(setting(config, "intent_method")).lower()
    seed = sae_seed(config)
    n_latents = int(setting(config, "sae_n_latents") or default_n_latents(len(x)))
    if method == "kmeans":
        from recbole_saerec.intents.kmeans import fit_kmeans

        n_clusters = int(setting(config, "kmeans_n_clusters") or n_latents)
        if n_clusters > len(x):
            raise IntentBuildError(f"KMeans-Intent: {n_clusters} clusters for {len(x)} texts: set kmeans_n_clusters "
                                   f"(or sae_n_latents, which it follows when ~) to at most {len(x)}.")
        path = os.path.join(cache_dir, f"kmeans-{_sha([emb_key, n_clusters, seed])}.pt")
        if os.path.isfile(path):
            saved = torch.load(path, weights_only=True)
            centroids, codes = saved["centroids"], (saved["acts"], saved["indices"])
            metrics = json.loads(saved["metrics"])
        else:
            say(f"[intents] KMeans-Intent: {n_clusters} clusters on {len(x)} texts", progress)
            centroids, codes, metrics = fit_kmeans(x, n_clusters, seed=seed)
            save_tensor_file_atomic(path, {"centroids": centroids, "acts": codes[0], "indices": codes[1],
                                           "metrics": json.dumps(metrics)})
        center = torch.as_tensor(np.asarray(x).mean(0))
        return method, centroids, center, codes, metrics
    if method != "sae":
        raise ValueError(f"intent_method={method!r}: choose 'sae' or 'kmeans'.")
    settings = {
        "n_latents": n_latents, "k": int(setting(config, "sae_k") or default_k(source)),
        "tied": bool(setting(config, "sae_tied")), "lr": setting(config, "sae_lr"),
        "batch_size": int(setting(config, "sae_batch_size")), "steps": setting(config, "sae_steps"),
        "auxk_coef": float(setting(config, "sae_auxk_coef")), "auxk_k": setting(config, "sae_auxk_k"),
        "auxk_scale": bool(setting(config, "sae_auxk_scale")), "dead_steps": setting(config, "sae_dead_steps"),
        "b_dec_init": str(setting(config, "sae_b_dec_init")), "seed": seed,
    }
    if settings["k"] > n_latents:  # sae_k or sae_n_latents left at ~: only known now (config_check has the rest)
        raise IntentBuildError(
            f"the TopK SAE would keep k={settings['k']} of M={n_latents} latents per text (sae_k="
            f"{setting(config, 'sae_k')}, sae_n_latents={setting(config, 'sae_n_latents')}; ~ = the rule for "
            f"{len(x)} {source} texts): set sae_n_latents >= {settings['k']} or sae_k <= {n_latents}.")
    path = os.path.join(cache_dir, f"sae-{_sha([emb_key, settings])}.pt")
    loaded = load_sae(path)
    if loaded is None:
        say(f"[intents] TopK SAE: M={settings['n_latents']} latents, k={settings['k']}, "
             f"tied={settings['tied']}, on {len(x)} texts", progress)
        use_gpu = bool(setting(config, "use_gpu")) and torch.cuda.is_available()
        sae, metrics = SAETrainer(**settings, device="cuda" if use_gpu else "cpu", progress=progress).fit(x)
        save_sae(path, sae, metrics)
    else:
        sae, metrics = loaded
        say(f"[intents] SAE loaded from cache {path}", progress)
    codes = sae.codes(torch.as_tensor(x))
    return method, sae.W_enc.detach().clone(), sae.b_dec.detach().clone(), codes, metrics


def codes_matrix(codes, n_latents):
    """Sparse [n_texts, M] matrix of the per-text codes (zeros dropped)."""
    acts, idx = (t.numpy() for t in codes)
    rows = np.repeat(np.arange(len(acts)), acts.shape[1])
    mat = sp.csr_matrix((acts.ravel(), (rows, idx.ravel())), shape=(len(acts), n_latents))
    mat.eliminate_zeros()
    return mat


def item_activations(corpus, item_tokens, text_codes, kept, top_r):
    """Per-item mean code over the item's entries, restricted to ``kept`` latents, top-r per item.

    Returns (indices [n_items, r] into the kept rows, -1 = empty; values [n_items, r]).
    """
    pos = {t: i for i, t in enumerate(item_tokens)}
    rows = np.array([pos[t] for t in corpus.entry_item], dtype=np.int64)
    counts = np.bincount(rows, minlength=len(item_tokens)).astype(np.float64)
    avg = sp.csr_matrix((1.0 / counts[rows], (rows, corpus.entry_text)), shape=(len(item_tokens), len(corpus.texts)))
    item_mat = (avg @ text_codes)[:, kept].tocsr()  # columns = intent rows
    indices = np.full((len(item_tokens), top_r), -1, dtype=np.int64)
    values = np.zeros((len(item_tokens), top_r), dtype=np.float32)
    for i in range(len(item_tokens)):
        lo, hi = item_mat.indptr[i], item_mat.indptr[i + 1]
        cols, vals = item_mat.indices[lo:hi], item_mat.data[lo:hi]
        keep = vals > 0
        cols, vals = cols[keep], vals[keep]
        order = np.argsort(-vals, kind="stable")[:top_r]
        indices[i, :len(order)] = cols[order]
        values[i, :len(order)] = vals[order]
    return torch.as_tensor(indices), torch.as_tensor(values)


def top_examples(text_codes, texts, latents, n=3):
    """latent -> its ``n`` most strongly activating texts (for reading the catalogue)."""
    csc = text_codes.tocsc()
    out = {}
    for j in latents:
        lo, hi = csc.indptr[j], csc.indptr[j + 1]
        order = np.argsort(-csc.data[lo:hi], kind="stable")[:n]
        out[j] = [texts[csc.indices[lo:hi][o]] for o in order]
    return out
