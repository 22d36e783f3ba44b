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
"""
import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    def __init__(self, hidden_size, inner_size, dropout, layer_norm_eps):
        super().__init__()
        self.dense_1 = nn.Linear(hidden_size, inner_size)
        self.dense_2 = nn.Linear(inner_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, x):
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

    def forward(self, x, memory=None, causal=False):
        kv = x if memory is None else memory
        q, k, v = self._heads(self.query(x)), self._heads(self.key(kv)), self._heads(self.value(kv))
        ctx = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_dropout if self.training else 0.0, is_causal=causal
        )
        ctx = ctx.transpose(1, 2).reshape(x.shape)
        return self.LayerNorm(x + self.out_dropout(self.dense(ctx)))


class Block(nn.Module):
    """Attention (self, causal; or cross to a memory) then feed-forward."""

    def __init__(self, n_heads, hidden_size, inner_size, hidden_dropout, attn_dropout, layer_norm_eps):
        super().__init__()
        self.attention = Attention(n_heads, hidden_size, hidden_dropout, attn_dropout, layer_norm_eps)
        self.feed_forward = FeedForward(hidden_size, inner_size, hidden_dropout, layer_norm_eps)

    def forward(self, x, memory=None, causal=False):
        return self.feed_forward(self.attention(x, memory=memory, causal=causal))


class BlockStack(nn.Module):
    def __init__(self, n_layers, *block_args):
        super().__init__()
        self.layers = nn.ModuleList([Block(*block_args) for _ in range(n_layers)])

    def forward(self, x, memory=None, causal=False):
        for layer in self.layers:
            x = layer(x, memory=memory, causal=causal)
        return x


def trim_to_longest(item_seq, item_seq_len):
    """Drop the all-padding tail columns of a right-padded batch.

    A causal model's outputs at real positions do not depend on later columns,
    so this is exact; it saves (50 - longest) / 50 of the work per batch.
    """
    longest = int(item_seq_len.max())
    return item_seq[:, : max(longest, 1)]
