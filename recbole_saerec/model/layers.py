"""Transformer blocks, token packing and the fused softmax CE shared by the plugin's models.

The sequence encoder built from these blocks (SASRec's): :mod:`recbole_saerec.model.encoder`.

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
* Attention by length groups (``Packer(..., group_attention=True)``): the attention itself
  runs per group of sequences of similar length ([b_g, W_g] with W_g the group's rounded
  longest length) instead of on the padded [B, L] layout. Real queries see the same keys
  (causal mask, right padding), so the outputs are the same; on Beauty a batch's longest
  sequence is ~always 50 while most are < 10, so the [B, heads, L, L] scores, their softmax
  and their dropout mask (the slowest part of a CPU step) shrink several times.
* Dropout masks on the CPU from ``torch.rand`` (``cpu_rand_dropout``; :class:`Dropout`, :func:`attention`): torch's
  CPU ``bernoulli_`` (what ``F.dropout`` and SDPA's dropout call) was 2.6x slower than drawing
  uniforms and comparing, and was a sixth of an ICSRec step. The same distribution; another
  random stream than ``nn.Dropout`` (so not the same trajectory for a given seed). On a GPU the
  fused kernels are kept.
"""
import torch
import torch.nn.functional as F
from torch import nn


def _cpu_dropout(x, p):
    """x with each element zeroed with probability p, the rest scaled by 1 / (1 - p)."""
    return x * (torch.rand_like(x) >= p) * (1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """nn.Dropout (same name, no state); with ``cpu_rand`` the CPU mask comes from torch.rand (module docstring)."""

    def __init__(self, p=0.5, cpu_rand=True):
        super().__init__(p)
        self.cpu_rand = cpu_rand

    def forward(self, x):
        if not self.cpu_rand or not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        return _cpu_dropout(x, self.p)


def attention(q, k, v, dropout_p=0.0, is_causal=False, cpu_rand=True):
    """softmax(q k^T / sqrt(d)) v over [..., heads, L, d], as F.scaled_dot_product_attention; with
    dropout on a CPU (and ``cpu_rand``) the probabilities are computed here so the dropout mask
    comes from torch.rand."""
    if dropout_p == 0.0 or q.device.type != "cpu" or not cpu_rand:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=is_causal)
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    if is_causal:
        future = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    return _cpu_dropout(torch.softmax(scores, dim=-1), dropout_p) @ v


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
    """Position-wise feed-forward (dense, GELU, dense) + dropout + residual + LayerNorm."""

    def __init__(self, hidden_size, inner_size, dropout, layer_norm_eps, cpu_rand_dropout=True):
        super().__init__()
        self.dense_1 = nn.Linear(hidden_size, inner_size)
        self.dense_2 = nn.Linear(inner_size, hidden_size)
        self.dropout = Dropout(dropout, cpu_rand_dropout)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, x):  # [..., d]: padded [B, L, d] or packed [N, d]
        return self.LayerNorm(x + self.dropout(self.dense_2(F.gelu(self.dense_1(x)))))


class Attention(nn.Module):
    """Multi-head attention + residual + LayerNorm. Self-attention when memory is None."""

    def __init__(self, n_heads, hidden_size, hidden_dropout, attn_dropout, layer_norm_eps, cpu_rand_dropout=True):
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of n_heads ({n_heads}).")
        self.n_heads = n_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.attn_dropout = attn_dropout
        self.cpu_rand_dropout = cpu_rand_dropout
        self.out_dropout = Dropout(hidden_dropout, cpu_rand_dropout)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def _heads(self, x):
        b, n, d = x.shape
        return x.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

    def _qkv(self, x):
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        return F.linear(x, weight, bias)  # [..., 3d]

    def _attend(self, q, k, v, causal):
        ctx = attention(self._heads(q), self._heads(k), self._heads(v),
                        dropout_p=self.attn_dropout if self.training else 0.0, is_causal=causal,
                        cpu_rand=self.cpu_rand_dropout)
        return ctx.transpose(1, 2).reshape(q.shape)

    def forward(self, x, memory=None, causal=False, packer=None):
        """x: [B, L, d] (or packed [N, d] with `packer`, self-attention only); memory: [B, M, d]."""
        if memory is not None:
            ctx = self._attend(self.query(x), self.key(memory), self.value(memory), causal)
        elif packer is not None and packer.groups is not None:  # per length group, on real tokens only
            qkv = F.pad(self._qkv(x), (0, 0, 0, 1))  # a zero row at the end for the groups' padding slots
            pieces = [self._attend(*qkv[index].chunk(3, dim=-1), causal)[valid] for index, valid in packer.groups]
            ctx = x.new_zeros(x.shape).index_copy(0, packer.group_targets, torch.cat(pieces))
        elif packer is not None:  # one scatter of the packed q|k|v into the padded layout, and back
            q, k, v = packer.unpack(self._qkv(x)).chunk(3, dim=-1)
            ctx = packer.pack(self._attend(q, k, v, causal))
        else:
            ctx = self._attend(*self._qkv(x).chunk(3, dim=-1), causal)
        return self.LayerNorm(x + self.out_dropout(self.dense(ctx)))


class Block(nn.Module):
    """Attention (self, causal; or cross to a memory) then feed-forward."""

    def __init__(self, n_heads, hidden_size, inner_size, hidden_dropout, attn_dropout, layer_norm_eps,
                 cpu_rand_dropout=True):
        super().__init__()
        self.attention = Attention(n_heads, hidden_size, hidden_dropout, attn_dropout, layer_norm_eps,
                                   cpu_rand_dropout)
        self.feed_forward = FeedForward(hidden_size, inner_size, hidden_dropout, layer_norm_eps, cpu_rand_dropout)

    def forward(self, x, memory=None, causal=False, packer=None):
        return self.feed_forward(self.attention(x, memory=memory, causal=causal, packer=packer))


class BlockStack(nn.Module):
    """``n_layers`` blocks in a row (``layers.N....`` in the state dict)."""

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

    def __init__(self, lengths, max_len, bucket=True, group_attention=False):
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
        self.groups = self.group_targets = None
        if group_attention:
            self._group_by_length(lengths, max_len, n_packed=self.index.numel())

    def _group_by_length(self, lengths, max_len, n_packed):
        """``groups``: per group of rows with the same rounded length W, ``(index [b, W], valid [b, W])``:
        the packed rows of their tokens (``n_packed`` = a zero row for the slots past a sequence's end)
        and which slots are real; ``group_targets`` [N]: the packed rows of the real slots, in the
        order the groups list them. Real tokens are packed row by row, so a sequence's tokens are
        the contiguous packed rows from ``cumsum(lengths) - lengths`` on."""
        start = lengths.cumsum(0) - lengths
        width = torch.tensor([min(bucketed_count(int(n), 4), max_len) for n in range(max_len + 1)],
                             device=lengths.device)[lengths]
        slots = torch.arange(max_len, device=lengths.device)
        self.groups, targets = [], []
        for w in torch.unique(width).tolist():
            rows = (width == w).nonzero().squeeze(1)
            valid = slots[:w].unsqueeze(0) < lengths[rows].unsqueeze(1)
            index = (start[rows].unsqueeze(1) + slots[:w]).masked_fill(~valid, n_packed)
            self.groups.append((index, valid))
            targets.append(index[valid])
        self.group_targets = torch.cat(targets)

    def pack(self, x):
        return x.reshape(-1, x.shape[-1]).index_select(0, self.index)

    def unpack(self, t):
        out = t.new_zeros(self.batch * self.max_len, t.shape[-1])
        return out.index_copy_(0, self.index, t).view(self.batch, self.max_len, -1)  # in place: no clone


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


class _LinearCrossEntropy(torch.autograd.Function):
    """mean_b CE(user_b . table^T, target_b), its gradients computed in the forward pass, in row chunks.

    With ``bf16`` the three matmuls take bf16 operands (the table cast ONCE per call, not per chunk)
    and accumulate in fp32; the softmax, the loss and the gradient sums stay fp32.
    """

    @staticmethod
    def forward(ctx, user, table, target, chunk, bf16):
        batch = user.shape[0]
        loss = user.new_zeros(())
        grad_user = torch.empty_like(user)
        grad_table = torch.zeros_like(table)
        weights = table.to(torch.bfloat16) if bf16 else table
        for start in range(0, batch, chunk):
            u, t = user[start:start + chunk], target[start:start + chunk]
            u_op = u.to(weights.dtype)
            probs = (u_op @ weights.T).float()  # [c, n_items], turned into softmax probabilities in place
            peak = probs.max(1, keepdim=True).values
            probs.sub_(peak).exp_()
            norm = probs.sum(1, keepdim=True)
            loss += (norm.log() + peak).sum() - (u * table[t]).sum()
            probs.div_(norm)
            probs[torch.arange(t.shape[0], device=t.device), t] -= 1.0  # d CE / d logits = softmax - one-hot
            probs_op = probs.to(weights.dtype)
            grad_user[start:start + chunk] = (probs_op @ weights).float()
            grad_table += (probs_op.T @ u_op).float()
        ctx.save_for_backward(grad_user, grad_table)
        ctx.batch = batch
        return loss / batch

    @staticmethod
    def backward(ctx, grad_output):
        grad_user, grad_table = ctx.saved_tensors
        scale = grad_output / ctx.batch
        return grad_user * scale, grad_table * scale, None, None, None


def linear_cross_entropy(user, table, target, fused=True, chunk=64, bf16=False):
    """Softmax cross-entropy of the scores ``user @ table.T`` [B, n_items] against ``target``, averaged.

    ``fused=False``: ``F.cross_entropy(user @ table.T, target)``. ``fused=True``: the same loss and
    gradients (tests/test_speed_equivalence.py) without the [B, n_items] logits ever being stored
    for backward: per chunk of ``chunk`` rows the softmax and the two gradient matmuls are done in
    the forward pass, while the chunk's scores are still in cache. On a CPU the log-softmax and its
    backward over Beauty's 12,101 items were a quarter of a training step. Only for a loss that is
    differentiated once (training); the gradient w.r.t. ``target`` is not defined.

    ``bf16`` (with ``fused``): the three [B x d x n_items] matmuls in bf16 with fp32 accumulation,
    the rest in fp32 (loss within ~1e-3 relative of fp32, tested); where bf16 is native (GPU, Intel
    AMX) they were 5-7x faster than fp32; on a CPU without native bf16 they are much slower
    (hardware.py decides ``auto``).
    """
    if not fused:
        return F.cross_entropy(user @ table.T, target)
    return _LinearCrossEntropy.apply(user, table, target, chunk, bool(bf16))
