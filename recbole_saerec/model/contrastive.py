r"""The pieces the contrastive baselines share (CL4SRec, DuoRec, ICLRec, ICSRec).

Each is written from the papers and read against the official code (DuoRec and CL4SRec:
RuihongQiu/DuoRec and RUCAIBox/RecBole-DA; ICLRec: salesforce/ICLRec; ICSRec: QinHsiu/ICSRec);
where the code and the paper differ, the docstring says which one is followed.

* :func:`info_nce`: NT-Xent / InfoNCE over a batch of positive pairs, with the in-batch
  negatives of both views and an optional false-negative mask (ICSRec's ``f_neg``: entries
  sharing the anchor's label are not negatives).
* :func:`augment`: CL4SRec's / ICLRec's crop, mask and reorder on right-padded RecBole
  batches, vectorised (one operator per row).
* :class:`SameTargetSampler`: another training sample with the same target item (DuoRec's
  supervised positive, ICSRec's second subsequence), vectorised.
* :class:`EpochClustering`: k-means over the sequence representations of the training
  samples at the start of every training epoch (ICLRec, ICSRec); the plugin's trainer calls
  ``model.before_train_epoch(train_data, epoch)`` for any model that defines it.
* :class:`ContrastiveSASRec`: the base class (PackedSASRec's encoder, CE loss and scoring,
  plus a mask token and one encoder call for several views).
"""
import numpy as np
import torch
import torch.nn.functional as F

from recbole_saerec.model.layers import linear_cross_entropy
from recbole_saerec.model.packed_sasrec import PackedSASRec

CROP, MASK, REORDER = 0, 1, 2
OPERATORS = {"crop": CROP, "mask": MASK, "reorder": REORDER}


# ----------------------------------------------------------------------------- the loss
def info_nce(z1, z2, temperature=1.0, sim="dot", labels=None):
    """Mean InfoNCE over the 2B anchors of B positive pairs (z1[i], z2[i]).

    Each anchor's logits: its partner (the positive) and the 2B - 2 other rows of both views
    (negatives), scaled by 1 / temperature; ``sim`` 'dot' (the official codes' default) or 'cos'.
    ``labels`` [B] (optional): any other row whose label equals the anchor's is removed from
    the negatives (a false negative: ICSRec masks samples with the same target item, or the
    same intent cluster), the partner stays the positive.
    """
    b = z1.shape[0]
    z = torch.cat([z1, z2], dim=0)
    if sim == "cos":
        z = F.normalize(z, dim=-1)
    elif sim != "dot":
        raise ValueError(f"info_nce: sim='{sim}' is not 'dot' or 'cos'.")
    logits = (z @ z.T) / temperature  # [2B, 2B]
    idx = torch.arange(2 * b, device=z.device)
    partner = (idx + b) % (2 * b)
    excluded = torch.eye(2 * b, dtype=torch.bool, device=z.device)
    if labels is not None:
        both = torch.cat([labels, labels])
        excluded = excluded | (both.unsqueeze(0) == both.unsqueeze(1))
        excluded[idx, partner] = False
    logits = logits.masked_fill(excluded, float("-inf"))
    return F.cross_entropy(logits, partner)


# ----------------------------------------------------------------------------- augmentations
def _random_start(lengths, span, generator):
    """A start in [0, length - span] per row (uniform)."""
    room = (lengths - span + 1).clamp_min(1).float()
    return (torch.rand(lengths.shape, generator=generator, device=lengths.device) * room).long()


def crop(seq, lengths, ratio, generator=None):
    """A contiguous sub-sequence of max(1, floor(ratio * L)) items from a uniform start, left-aligned."""
    span = torch.clamp((ratio * lengths.float()).floor().long(), min=1)
    start = _random_start(lengths, span, generator)
    pos = torch.arange(seq.shape[1], device=seq.device).unsqueeze(0)
    src = (start.unsqueeze(1) + pos).clamp_max(seq.shape[1] - 1)
    out = seq.gather(1, src).masked_fill(pos >= span.unsqueeze(1), 0)
    return out, span


def mask(seq, lengths, ratio, mask_id, generator=None):
    """floor(ratio * L) positions, uniformly without replacement, replaced by `mask_id`."""
    pos = torch.arange(seq.shape[1], device=seq.device).unsqueeze(0)
    keys = torch.rand(seq.shape, generator=generator, device=seq.device).masked_fill(pos >= lengths.unsqueeze(1), 2.0)
    rank = keys.argsort(1).argsort(1)  # each position's rank among the row's random keys (padding last)
    chosen = rank < (ratio * lengths.float()).floor().long().unsqueeze(1)
    return seq.masked_fill(chosen, mask_id), lengths


def reorder(seq, lengths, ratio, generator=None):
    """The items of a contiguous window of floor(ratio * L) items, shuffled in place."""
    span = (ratio * lengths.float()).floor().long()
    start = _random_start(lengths, span, generator)
    pos = torch.arange(seq.shape[1], device=seq.device).unsqueeze(0)
    inside = (pos >= start.unsqueeze(1)) & (pos < (start + span).unsqueeze(1))
    # sort key: outside the window a position keeps its own index; inside, the window's start plus a
    # random key in [0, 1), so the window's items are permuted among the window's positions only
    keys = torch.where(inside, start.unsqueeze(1) + torch.rand(seq.shape, generator=generator, device=seq.device),
                       pos.float())
    return seq.gather(1, keys.argsort(1)), lengths


def augment(seq, lengths, operators, ratios, mask_id, generator=None):
    """Row i gets operator ``operators[i]`` (CROP, MASK or REORDER) with its ratio from ``ratios``
    (dict 'crop'/'mask'/'reorder'). Returns (seq', lengths'); the inputs are not modified."""
    out_seq, out_len = seq.clone(), lengths.clone()
    for name, code in OPERATORS.items():
        rows = (operators == code).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        if code == CROP:
            s, n = crop(seq[rows], lengths[rows], ratios["crop"], generator)
        elif code == MASK:
            s, n = mask(seq[rows], lengths[rows], ratios["mask"], mask_id, generator)
        else:
            s, n = reorder(seq[rows], lengths[rows], ratios["reorder"], generator)
        out_seq[rows], out_len[rows] = s, n
    return out_seq, out_len


# ----------------------------------------------------------------------------- same-target samples
_HASH_MULTIPLIERS = None


def sequence_hash(seq, lengths):
    """An int64 hash per row of a right-padded [B, L] item batch (wrapping arithmetic); the padding
    does not count, so batches of different widths hash alike."""
    global _HASH_MULTIPLIERS
    width = seq.shape[1]
    if _HASH_MULTIPLIERS is None or _HASH_MULTIPLIERS.shape[0] < width + 1:
        g = torch.Generator().manual_seed(0x5EED)
        _HASH_MULTIPLIERS = torch.randint(1, 2 ** 62, (max(width + 1, 65),), generator=g, dtype=torch.int64) | 1
    mult = _HASH_MULTIPLIERS[:width].to(seq.device)
    real = torch.arange(width, device=seq.device).unsqueeze(0) < lengths.unsqueeze(1)
    return (seq.long() * real * mult).sum(1) + lengths.long() * _HASH_MULTIPLIERS[width].to(seq.device)


class SameTargetSampler:
    """Another training sample with the same target item, uniformly, for each row of a batch.

    Built once from the training samples (RecBole's augmented ``inter_feat``: one row per
    prefix). For a row with target t, a sample is drawn uniformly among the OTHER training
    samples whose target is t (the sample itself is recognised by its sequence hash and
    swapped for the last candidate, the usual draw-without-one trick); when t has no other
    sample, the row's own sequence is returned (DuoRec's fallback).
    """

    def __init__(self, item_seq, item_seq_len, targets, n_items):
        order = torch.argsort(targets, stable=True)
        self.seq, self.len = item_seq[order].clone(), item_seq_len[order].clone()
        self.hash = sequence_hash(self.seq, self.len)
        counts = torch.bincount(targets, minlength=n_items)
        self.counts = counts
        self.offsets = torch.cumsum(counts, 0) - counts

    def sample(self, item_seq, item_seq_len, targets, generator=None):
        device = item_seq.device
        targets = targets.cpu()
        count, offset = self.counts[targets], self.offsets[targets]
        others = (count - 1).clamp_min(1)
        draw = (torch.rand(targets.shape, generator=generator) * others.float()).long()
        pick = (offset + draw).clamp_max(len(self.seq) - 1)
        own = sequence_hash(item_seq.cpu(), item_seq_len.cpu())
        is_self = self.hash[pick] == own
        pick = torch.where(is_self, (offset + count - 1).clamp(0, len(self.seq) - 1), pick)  # the last candidate instead of itself
        lonely = count <= 1
        seq, length = self.seq[pick], self.len[pick]
        width = min(seq.shape[1], item_seq.shape[1])
        out_seq = torch.zeros_like(item_seq.cpu())
        out_seq[:, :width] = seq[:, :width]
        out_seq = torch.where(lonely.unsqueeze(1), item_seq.cpu(), out_seq)
        out_len = torch.where(lonely, item_seq_len.cpu(), length)
        return out_seq.to(device), out_len.to(device)


# ----------------------------------------------------------------------------- per-epoch clustering
class EpochClustering:
    """k-means (scikit-learn) of the training samples' sequence representations, once per epoch.

    ``fit(vectors, epoch)`` clusters [N, d] vectors into ``n_clusters`` (seeded by ``seed + epoch``,
    so a resumed run clusters exactly as an uninterrupted one); ``assign(h)`` gives each row its
    nearest centroid (squared L2, as faiss's flat index) and ``centroids(ids)`` the L2-normalised
    centroids the intent losses contrast against (ICLRec / ICSRec normalise them for the loss).
    """

    def __init__(self, n_clusters, seed, max_iter=20, n_init=1):
        self.n_clusters, self.seed, self.max_iter, self.n_init = int(n_clusters), int(seed), int(max_iter), int(n_init)
        self.raw = None  # [K, d] centroids as fitted
        self.normalised = None

    @property
    def ready(self):
        return self.raw is not None

    def fit(self, vectors, epoch):
        from sklearn.cluster import KMeans

        x = vectors.detach().float().cpu().numpy()
        k = min(self.n_clusters, len(x))
        km = KMeans(n_clusters=k, n_init=self.n_init, max_iter=self.max_iter,
                    random_state=(self.seed + int(epoch)) % (2 ** 32)).fit(x)
        self.raw = torch.as_tensor(km.cluster_centers_, dtype=torch.float32)
        self.normalised = F.normalize(self.raw, dim=-1)
        return float(km.inertia_)

    def assign(self, h):
        raw = self.raw.to(h.device)
        distance = (h.detach().float().pow(2).sum(1, keepdim=True) - 2 * h.detach().float() @ raw.T
                    + raw.pow(2).sum(1))
        return distance.argmin(1)

    def centroids(self, ids):
        return self.normalised.to(ids.device)[ids]


@torch.no_grad()
def encode_training_samples(model, train_data, rows=None, batch_size=4096):
    """The model's last-position representation of every training sample (eval mode, no dropout).

    ``rows``: indices into the training samples (default all). The model's ``forward(item_seq,
    item_seq_len)`` is used as for scoring; the model's mode is restored afterwards.
    """
    feat = train_data._dataset.inter_feat
    seq, length = feat[model.ITEM_SEQ], feat[model.ITEM_SEQ_LEN]
    if rows is not None:
        seq, length = seq[rows], length[rows]
    was_training = model.training
    model.eval()
    out = []
    device = next(model.parameters()).device
    for s in range(0, len(seq), batch_size):
        out.append(model.forward(seq[s:s + batch_size].to(device), length[s:s + batch_size].to(device)).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def last_sample_per_user(user_ids, lengths):
    """Index of each user's longest training sample (the whole training sequence, last 50 items)."""
    users, lengths = np.asarray(user_ids), np.asarray(lengths)
    order = np.lexsort((np.arange(len(users)), lengths, users))  # by user, then length, then position
    last = np.r_[users[order][1:] != users[order][:-1], True]
    return torch.as_tensor(order[last])


# ----------------------------------------------------------------------------- the shared base
class ContrastiveSASRec(PackedSASRec):
    """PackedSASRec (CE over all items) plus what the contrastive baselines share.

    Same parameters and initialisation as PackedSASRec for the same seed (the extra mask-token
    embedding is drawn after them), the same scoring (``forward`` / ``full_sort_predict`` never
    see the mask token). ``encode_many`` runs several batches through ONE encoder call (each row
    gets its own dropout mask, as separate calls would), so a step with three views costs one
    larger forward, not three.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.cl_weight = config["cl_weight"]
        self.cl_temperature = config["cl_temperature"]
        self.cl_similarity = config["cl_similarity"]
        # a learned [MASK] input embedding (id n_items), used only by the mask augmentation
        self.mask_embedding = torch.nn.Parameter(torch.empty(self.item_embedding.embedding_dim))
        self.mask_embedding.data.normal_(mean=0.0, std=self.initializer_range)
        self.mask_id = self.n_items

    def input_table(self):
        return torch.cat([self.item_embedding.weight, self.mask_embedding.unsqueeze(0)])

    def encode_many(self, *batches):
        """[(item_seq, item_seq_len), ...] -> one [B_i, d] state per batch (one encoder call)."""
        width = max(seq.shape[1] for seq, _ in batches)
        seqs = [F.pad(seq, (0, width - seq.shape[1])) for seq, _ in batches]
        states = self.forward(torch.cat(seqs), torch.cat([length for _, length in batches]), table=self.input_table())
        return states.split([seq.shape[0] for seq, _ in batches])

    def rec_loss(self, user, interaction):
        return linear_cross_entropy(user, self.item_embedding.weight, interaction[self.POS_ITEM_ID], self.fused_ce, bf16=self.bf16_ce)

    def contrast(self, z1, z2, labels=None):
        return info_nce(z1, z2, self.cl_temperature, self.cl_similarity, labels)

    def augment_views(self, seq, lengths, ratios, distinct):
        """Two augmented views per row: CROP / MASK / REORDER drawn uniformly per view; ``distinct``
        (CL4SRec) draws two different operators, and leaves length-1 sequences as they are."""
        b = seq.shape[0]
        first = torch.randint(0, 3, (b,), device=seq.device)
        if distinct:
            second = (first + torch.randint(1, 3, (b,), device=seq.device)) % 3
            single = lengths <= 1
            first, second = first.masked_fill(single, -1), second.masked_fill(single, -1)
        else:
            second = torch.randint(0, 3, (b,), device=seq.device)
        return (augment(seq, lengths, first, ratios, self.mask_id),
                augment(seq, lengths, second, ratios, self.mask_id))


class EpochClusteringMixin:
    """Per-epoch k-means of the training samples (ICLRec, ICSRec): ``before_train_epoch`` fits
    ``self.clustering`` on the rows ``self.cluster_rows(train_data)`` (None = every sample)."""

    def init_clustering(self, config):
        self.intent_cl_weight = config["intent_cl_weight"]
        self.clustering = EpochClustering(config["cluster_k"], config["seed"], max_iter=config["cluster_max_iter"])

    def cluster_rows(self, train_data):
        return None

    def before_train_epoch(self, train_data, epoch):
        vectors = encode_training_samples(self, train_data, self.cluster_rows(train_data))
        self.clustering.fit(vectors, epoch)
