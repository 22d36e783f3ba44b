"""KMeans-Intent: the paper's baseline (Table 3) with cluster centroids instead of SAE latents.

The text embeddings are clustered (scikit-learn KMeans); each centroid is an
"intent", each text's code is its cluster (one-hot, value 1), so an item's
activation is the share of its texts in each cluster. Everything downstream
(words, judge, artefacts) is the same as for the SAE, so the comparison
isolates what sparse coding adds over plain clustering.
"""
import time

import numpy as np
import torch


def fit_kmeans(x, n_clusters, seed=0, max_iter=100):
    """(centroids [C, d], codes (acts [n, 1], indices [n, 1]), metrics) with the SAE's metric names.

    ``fvu`` = within-cluster sum of squares / total sum of squares (the
    reconstruction of a text by its centroid), ``l0`` = 1, ``dead_fraction`` =
    share of empty clusters, ``frequency`` = cluster sizes / n.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(x, dtype=np.float32)
    n_clusters = int(min(n_clusters, len(x)))
    start = time.time()
    km = KMeans(n_clusters=n_clusters, n_init=1, max_iter=int(max_iter), random_state=int(seed)).fit(x)
    labels = km.labels_.astype(np.int64)
    total = float(((x - x.mean(0)) ** 2).sum())
    counts = np.bincount(labels, minlength=n_clusters)
    metrics = {"fvu": float(km.inertia_) / max(total, 1e-12), "l0": 1.0,
               "dead_fraction": float((counts == 0).mean()), "frequency": (counts / len(x)).tolist(),
               "n_latents": n_clusters, "k": None, "n_texts": len(x), "train_seconds": round(time.time() - start, 2),
               "seed": int(seed), "max_iter": int(max_iter)}
    codes = (torch.ones(len(x), 1), torch.as_tensor(labels)[:, None])
    return torch.as_tensor(km.cluster_centers_, dtype=torch.float32), codes, metrics
