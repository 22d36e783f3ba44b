"""Per-user ranking metrics by RecBole's own metric classes: :func:`hit_ndcg_per_user`."""


def hit_ndcg_per_user(pos_index, pos_len, ks):
    """Per-user Hit@K and NDCG@K by RecBole's own metric classes (``metric_info`` is their per-user
    row before the mean): pos_index [U, >=max(ks)] bool hit flags of the ranked list, pos_len [U] the
    number of held-out items. The one implementation (benchmark, steering, the probe)."""
    import numpy as np
    from recbole.evaluator.metrics import NDCG, Hit

    from recbole_saerec.config import Config

    Config.compatibility_settings(None)  # RecBole's NDCG uses np.float: the numpy-2-safe aliases
    pos_index, pos_len = np.asarray(pos_index, dtype=bool), np.asarray(pos_len, dtype=np.int64)
    hit, ndcg = Hit.metric_info(None, pos_index), NDCG.metric_info(None, pos_index, pos_len)
    out = {}
    for k in ks:
        out[f"hit@{k}"] = hit[:, k - 1].astype(np.float64)
        out[f"ndcg@{k}"] = ndcg[:, k - 1].astype(np.float64)
    return out
