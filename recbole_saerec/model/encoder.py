"""SASRec's sequence encoder, one implementation for every plugin model built on it.

PackedSASRec (and its subclasses: the contrastive baselines, SASRecTextFeat, LLMInit), SAERec and
GuidedRec all read a user's sequence the same way: x = dropout(LayerNorm(table[items] + positions)),
then a causal block stack, read at the last real position. :class:`SequenceEncoder` is that encoder
as a mixin, put before RecBole's ``SequentialRecommender`` in a model's bases:

* ``read_speed_switches(config)``: ``pack_tokens``, ``pack_attention``, ``fused_ce``, ``bf16_ce`` and
  ``cpu_rand_dropout`` (properties/model/<Model>.yaml; none changes what is computed, only how fast).
  Called where the model reads its settings, before any parameter exists: ``bf16_ce: auto`` may time
  a matmul the first time it is resolved (hardware.py).
* ``init_sequence_encoder(config, d)``: registers ``item_embedding`` (unless the model builds its own
  table), ``position_embedding``, ``LayerNorm``, ``dropout`` and the block stack on the MODEL ITSELF,
  under the names RecBole's SASRec uses and the stack under the model's ``sequence_stack`` name
  (``blocks``; SAERec's ``self_branch``), in this order. Parameter names (checkpoints, run records)
  and the order of the random draws that initialise them (one seed, one model) are therefore those
  the models had when each declared these modules itself.
* ``encode_sequence(table, item_seq, item_seq_len)``: :func:`encode_last` with the model's modules.
* The RecBole API for a model scored by ``user @ table.T`` with softmax CE over all items:
  ``forward`` (the user vector, as RecBole's models return it), ``calculate_loss``, ``predict`` and
  ``full_sort_predict``, all through ``user_and_table(item_seq, item_seq_len)``, which computes the
  table once and calls ``forward`` with it (so that a wrapper of ``forward``, as the probe's, sees every
  user vector a score is made of). A model with its own item table overrides ``item_table()``; SAERec
  overrides ``forward`` and ``user_and_table`` (its intents and branches).
"""
import torch
from torch import nn

from recbole_saerec.hardware import resolve_bf16
from recbole_saerec.model.layers import BlockStack, Dropout, Packer, linear_cross_entropy
from recbole_saerec.settings import setting


def trim_to_longest(item_seq, item_seq_len):
    """Drop the all-padding tail columns of a right-padded batch.

    A causal model's outputs at real positions do not depend on later columns,
    so this is exact; it saves (50 - longest) / 50 of the work per batch.
    """
    longest = int(item_seq_len.max())
    return item_seq[:, : max(longest, 1)]


def encode_last(table, item_seq, item_seq_len, position_embedding, norm, dropout, stack, pack, group_attention=False):
    """SASRec's sequence encoder, read at each sequence's last real position.

    x = dropout(LayerNorm(table[items] + positions)); h = causal block stack over x.
    Returns (h_last [B, d], x_last [B, d], last_item [B]). With ``pack`` the position-wise work
    runs on the real tokens only (Packer), and with ``group_attention`` the attention too (per length
    group); without it, on the padded [B, L, d] layout. All give the same values
    (tests/test_speed_equivalence.py).
    """
    item_seq = trim_to_longest(item_seq, item_seq_len)
    if pack:
        packer = Packer(item_seq_len, item_seq.shape[1], group_attention=group_attention)
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


class SequenceEncoder:
    """Mixin: SASRec's encoder registered on the model, and the RecBole API over ``user_and_table``."""

    sequence_stack = "blocks"  # the block stack's attribute name: its prefix in the state dict

    def read_speed_switches(self, config):
        self.pack_tokens = setting(config, "pack_tokens")
        self.pack_attention = setting(config, "pack_attention")
        self.fused_ce = setting(config, "fused_ce")
        self.bf16_ce = resolve_bf16(setting(config, "bf16_ce"), config["device"])
        self.cpu_rand_dropout = setting(config, "cpu_rand_dropout")

    def block_args(self, config, hidden_size):
        """The arguments of one transformer block (layers.Block) of this model's width."""
        return (config["n_heads"], hidden_size, config["inner_size"], config["hidden_dropout_prob"],
                config["attn_dropout_prob"], config["layer_norm_eps"], self.cpu_rand_dropout)

    def init_sequence_encoder(self, config, hidden_size, item_embedding=True):
        """Register the encoder's modules on the model (module docstring: names and order)."""
        if item_embedding:
            self.item_embedding = nn.Embedding(self.n_items, hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=config["layer_norm_eps"])
        self.dropout = Dropout(config["hidden_dropout_prob"], self.cpu_rand_dropout)
        setattr(self, self.sequence_stack, BlockStack(config["n_layers"], *self.block_args(config, hidden_size)))

    def encode_sequence(self, table, item_seq, item_seq_len):
        """(h_last, x_last, last_item) of :func:`encode_last` over ``table``, with this model's modules."""
        return encode_last(table, item_seq, item_seq_len, self.position_embedding, self.LayerNorm, self.dropout,
                           getattr(self, self.sequence_stack), self.pack_tokens, self.pack_attention)

    def item_table(self):
        """[n_items, d]: the item vectors the sequence is read with and the scores are taken against."""
        return self.item_embedding.weight

    def user_and_table(self, item_seq, item_seq_len):
        """(user vectors [B, d], item table [n_items, d]) from one pass: score = user @ table.T."""
        table = self.item_table()
        return self.forward(item_seq, item_seq_len, table), table

    # ----------------------------------------------------------------- RecBole API
    def forward(self, item_seq, item_seq_len, table=None):
        """The user vectors [B, d]: the last real position's state, the sequence read with ``table``
        (default ``item_table()``; the contrastive models append a mask-token row)."""
        table = self.item_table() if table is None else table
        return self.encode_sequence(table, item_seq, item_seq_len)[0]

    def calculate_loss(self, interaction):
        user, table = self.user_and_table(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return linear_cross_entropy(user, table, interaction[self.POS_ITEM_ID], self.fused_ce, bf16=self.bf16_ce)

    def predict(self, interaction):
        user, table = self.user_and_table(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (user * table[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        user, table = self.user_and_table(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return user @ table.T
