"""Transformer blocks shared by the plugin's models.

Same math as RecBole's ``TransformerEncoder`` (post-LayerNorm BERT blocks, exact
erf GELU, dropout on attention probabilities and on each sub-layer output), but
written for speed on CPU and GPU:

* ``F.scaled_dot_product_attention`` with ``is_causal=True`` instead of an
  explicit [B, 1, L, L] additive mask. RecBole sequences are right-padded
  (items at 0..len-1), so for every REAL query position the causal mask already
  hides all padding keys; only padded query positions differ, and they are
  never read (models gather position len-1).
* ``F.gelu`` (same exact-erf GELU as RecBole's hand-written one, fused).
* Q, K and V in ONE matmul (the three Linear modules keep their names and
  weights; their weights are concatenated per call).
* Real tokens only (``packer=Packer(lengths, L)``): every position-wise
  operation (Q/K/V and output projections, feed-forward, LayerNorms, dropout)
  runs on the packed [N_real, d] tokens; only the attention itself sees the
  padded [B, L, d] layout. Padded positions are never read by real ones (causal
  mask, right padding), so real outputs are the same; on Beauty (~8 real of up
  to 50 positions per sample) this removes most of a step's element-wise work.
  The token count is rounded up to a few sizes per power of two (``bucketed_count``):
  a new shape every batch made oneDNN's per-shape cache grow resident memory.
"""
import torch
import torch.nn.functional as F
from torch import nn


def init_weights(module, std):
    """BERT/RecBole initialisation (as SASRec's): N(0, std) weights, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=std)
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()


class FeedForward(nn.Module):
    def __init__(self, hidden_size, inner_size, dropout, layer_norm_eps):
        super().__init__()
        self.dense_1 = nn.Linear(hidden_size, inner_size)
        self.dense_2 = nn.Linear(inner_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, x):  # [..., d]: padded [B, L, d] or packed [N, d]
        return self.LayerNorm(x + self.dropout(self.dense_2(F.gelu(self.dense_1(x)))))


class Attention(nn.Module):
    """Multi-head attention + residual + LayerNorm. Self-attention when memory is None."""

    def __init__(self, n_heads, hidden_size, hidden_dropout, attn_dropout, layer_norm_eps):
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of n_heads ({n_heads}).")
        self.n_heads = n_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.attn_dropout = attn_dropout
        self.out_dropout = nn.Dropout(hidden_dropout)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def _heads(self, x):
        b, n, d = x.shape
        return x.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

    def _qkv(self, x):
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        return F.linear(x, weight, bias)  # [..., 3d]

    def forward(self, x, memory=None, causal=False, packer=None):
        """x: [B, L, d] (or packed [N, d] with `packer`, self-attention only); memory: [B, M, d]."""
        if memory is None:
            qkv = self._qkv(x)
            if packer is not None:  # one scatter of the packed q|k|v into the padded layout
                qkv = packer.unpack(qkv)
            q, k, v = qkv.chunk(3, dim=-1)
        else:
            q, k, v = self.query(x), self.key(memory), self.value(memory)
        ctx = F.scaled_dot_product_attention(
            self._heads(q), self._heads(k), self._heads(v),
            dropout_p=self.attn_dropout if self.training else 0.0, is_causal=causal,
        )
        ctx = ctx.transpose(1, 2).reshape(q.shape)
        if packer is not None:
            ctx = packer.pack(ctx)
        return self.LayerNorm(x + self.out_dropout(self.dense(ctx)))


class Block(nn.Module):
    """Attention (self, causal; or cross to a memory) then feed-forward."""

    def __init__(self, n_heads, hidden_size, inner_size, hidden_dropout, attn_dropout, layer_norm_eps):
        super().__init__()
        self.attention = Attention(n_heads, hidden_size, hidden_dropout, attn_dropout, layer_norm_eps)
        self.feed_forward = FeedForward(hidden_size, inner_size, hidden_dropout, layer_norm_eps)

    def forward(self, x, memory=None, causal=False, packer=None):
        return self.feed_forward(self.attention(x, memory=memory, causal=causal, packer=packer))


class BlockStack(nn.Module):
    def __init__(self, n_layers, *block_args):
        super().__init__()
        self.layers = nn.ModuleList([Block(*block_args) for _ in range(n_layers)])

    def forward(self, x, memory=None, causal=False, packer=None):
        for layer in self.layers:
            x = layer(x, memory=memory, causal=causal, packer=packer)
        return x


def bucketed_count(n, per_octave=16):
    """Round n up to one of `per_octave` sizes per power of two (at most 1/per_octave more).

    Why: oneDNN (torch's CPU matmul backend) caches one primitive per input shape, and
    resident memory grew ~5 MB per step when every batch had a new token count (1,024
    cached shapes by default). Bucketing bounds the shapes seen in a run to a few dozen.
    """
    if n <= per_octave:
        return n
    step = (1 << (n.bit_length() - 1)) // per_octave
    return -(-n // step) * step


class Packer:
    """The real positions of a right-padded [B, L] batch, flattened to [N] (N = sum of lengths).

    ``pack`` [B, L, d] -> [N', d]; ``unpack`` [N', d] -> [B, L, d]; ``positions`` [N'] position
    of each token; ``last`` [B] packed index of each sequence's last real token. A length of 0
    counts as 1 (position 0 is read, as the padded path does).

    With ``bucket=True`` (the default) N' = ``bucketed_count(N)``: the first N' - N PADDING
    positions are packed too, after the real ones. They are keys no real query can attend
    to (causal mask, right padding) and are never read, so real outputs are unchanged; the
    point is a bounded set of shapes (see ``bucketed_count``).
    """

    def __init__(self, lengths, max_len, bucket=True):
        lengths = lengths.clamp(1, max_len)
        self.batch, self.max_len = lengths.shape[0], max_len
        mask = (torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)).reshape(-1)
        self.index = mask.nonzero().squeeze(1)  # [N] into B * L, real tokens in row-major order
        n_real = self.index.numel()
        extra = min(bucketed_count(n_real), mask.numel()) - n_real if bucket else 0
        if extra > 0:
            self.index = torch.cat([self.index, (~mask).nonzero().squeeze(1)[:extra]])
        self.positions = self.index % max_len
        self.last = lengths.cumsum(0) - 1

    def pack(self, x):
        return x.reshape(-1, x.shape[-1]).index_select(0, self.index)

    def unpack(self, t):
        out = t.new_zeros(self.batch * self.max_len, t.shape[-1])
        return out.index_copy_(0, self.index, t).view(self.batch, self.max_len, -1)  # in place: no clone


def trim_to_longest(item_seq, item_seq_len):
    """Drop the all-padding tail columns of a right-padded batch.

    A causal model's outputs at real positions do not depend on later columns,
    so this is exact; it saves (50 - longest) / 50 of the work per batch.
    """
    longest = int(item_seq_len.max())
    return item_seq[:, : max(longest, 1)]


def encode_last(table, item_seq, item_seq_len, position_embedding, norm, dropout, stack, pack):
    """SASRec's sequence encoder, read at each sequence's last real position.

    x = dropout(LayerNorm(table[items] + positions)); h = causal block stack over x.
    Returns (h_last [B, d], x_last [B, d], last_item [B]). With ``pack`` the position-wise work
    runs on the real tokens only (Packer); without it, on the padded [B, L, d] layout. Both give
    the same values (tests/test_speed_equivalence.py). Shared by SASRecP, SAERec and GuidedRec.
    """
    item_seq = trim_to_longest(item_seq, item_seq_len)
    if pack:
        packer = Packer(item_seq_len, item_seq.shape[1])
        items = item_seq.reshape(-1).index_select(0, packer.index)  # [N]
        x = dropout(norm(table[items] + position_embedding(packer.positions)))
        h = stack(x, causal=True, packer=packer)
        return h[packer.last], x[packer.last], items[packer.last]
    positions = torch.arange(item_seq.shape[1], device=item_seq.device)
    x = dropout(norm(table[item_seq] + position_embedding(positions).unsqueeze(0)))
    h = stack(x, causal=True)
    last = (item_seq_len - 1).clamp(0, item_seq.shape[1] - 1)
    rows = torch.arange(item_seq.shape[0], device=item_seq.device)
    return h[rows, last], x[rows, last], item_seq[rows, last]


def pca_reduce(x, n_components=None, variance=None):
    """PCA of the rows of ``x`` [n, d] via SVD of the centred matrix (as sklearn's full-SVD PCA).

    ``variance`` (0 < v <= 1) picks the smallest k whose explained variance ratio sums to
    at least v; otherwise ``n_components``. Returns (coords [n, k], ratios [k], components [k, d], mean [d]).
    """
    x = x.double()
    mean = x.mean(0)
    u, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
    ratio = s ** 2 / (s ** 2).sum()
    if variance is not None:
        k = int(torch.searchsorted(ratio.cumsum(0), torch.tensor(float(variance), dtype=ratio.dtype) - 1e-12)) + 1
        k = min(k, ratio.numel())
    else:
        k = min(int(n_components), ratio.numel())
    return ((x - mean) @ vt[:k].T).float(), ratio[:k].float(), vt[:k].float(), mean.float()
