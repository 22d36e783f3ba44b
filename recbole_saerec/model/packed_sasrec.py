r"""PackedSASRec: RecBole's SASRec, the same function computed faster.

Reference: Kang and McAuley, "Self-Attentive Sequential Recommendation" (ICDM 2018), as
RecBole implements it (``recbole.model.sequential_recommender.SASRec``).

Why it exists: converged baseline runs on a CPU. RecBole's SASRec took 155 s per Beauty epoch
on one thread where SAERec, whose sequence branch is this very encoder, took 71 s; the gap is
the encoder's implementation (the plugin's ``layers``: fused attention, real tokens only),
not the model. Same parameters under RecBole's names per block (``load_recbole_state`` maps a
RecBole SASRec state dict onto this one), same losses (CE over all items, or BPR with one
sampled negative), and the same scores on the same weights (tests/test_packed_sasrec.py).
"""
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.loss import BPRLoss
from torch import nn

from recbole_saerec.hardware import resolve_bf16
from recbole_saerec.model.layers import BlockStack, Dropout, encode_last, init_weights, linear_cross_entropy


class PackedSASRec(SequentialRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # --- load parameters -------------------------------------------------
        d = config["hidden_size"]
        self.loss_type = config["loss_type"]
        self.initializer_range = config["initializer_range"]
        self.pack_tokens = config["pack_tokens"]
        self.pack_attention = config["pack_attention"] if "pack_attention" in config else False
        self.fused_ce = config["fused_ce"] if "fused_ce" in config else False
        self.bf16_ce = resolve_bf16(config["bf16_ce"] if "bf16_ce" in config else False, config["device"])
        if self.loss_type not in ("CE", "BPR"):
            raise ValueError(f"PackedSASRec: loss_type='{self.loss_type}' is not one of ('CE', 'BPR').")

        # --- define layers and loss ------------------------------------------
        self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, d)
        self.LayerNorm = nn.LayerNorm(d, eps=config["layer_norm_eps"])
        rand = config["cpu_rand_dropout"] if "cpu_rand_dropout" in config else False
        self.dropout = Dropout(config["hidden_dropout_prob"], rand)
        self.blocks = BlockStack(config["n_layers"], config["n_heads"], d, config["inner_size"],
                                 config["hidden_dropout_prob"], config["attn_dropout_prob"], config["layer_norm_eps"],
                                 rand)
        self.loss_fct = BPRLoss() if self.loss_type == "BPR" else None  # CE: layers.linear_cross_entropy

        # --- initialise parameters -------------------------------------------
        self.apply(lambda module: init_weights(module, self.initializer_range))

    @staticmethod
    def load_recbole_state(state_dict):
        """A RecBole SASRec state dict under this model's parameter names."""
        out = {}
        for key, value in state_dict.items():
            key = key.replace("trm_encoder.layer.", "blocks.layers.").replace(".multi_head_attention.", ".attention.")
            out[key] = value
        return out

    def forward(self, item_seq, item_seq_len):
        return self.encode(item_seq, item_seq_len)

    def encode(self, item_seq, item_seq_len, table=None):
        """The last real position's state; ``table`` replaces the input item embeddings (the
        contrastive subclasses append a mask-token row; the text-feature ones add text)."""
        table = self.item_embedding.weight if table is None else table
        return encode_last(table, item_seq, item_seq_len, self.position_embedding,
                           self.LayerNorm, self.dropout, self.blocks, self.pack_tokens, self.pack_attention)[0]

    def calculate_loss(self, interaction):
        user = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        pos = interaction[self.POS_ITEM_ID]
        if self.loss_type == "CE":
            return linear_cross_entropy(user, self.item_embedding.weight, pos, self.fused_ce, bf16=self.bf16_ce)
        neg = interaction[self.NEG_ITEM_ID]
        pos_score = (user * self.item_embedding(pos)).sum(-1)
        neg_score = (user * self.item_embedding(neg)).sum(-1)
        return self.loss_fct(pos_score, neg_score)

    def predict(self, interaction):
        user = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (user * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        user = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return user @ self.item_embedding.weight.T
