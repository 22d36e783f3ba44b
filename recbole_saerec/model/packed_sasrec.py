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

from recbole_saerec.model.encoder import SequenceEncoder
from recbole_saerec.model.layers import init_weights


class PackedSASRec(SequenceEncoder, SequentialRecommender):
    """RecBole's SASRec (its parameters, losses and scores) on the plugin's faster encoder.

    The user vector is the last real position's state of :class:`SequenceEncoder`; items are scored
    by a dot product with ``item_embedding``; the loss is softmax CE over all items (``loss_type:
    CE``, ``layers.linear_cross_entropy``) or BPR with one sampled negative.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # --- load parameters -------------------------------------------------
        self.loss_type = config["loss_type"]
        self.initializer_range = config["initializer_range"]
        self.read_speed_switches(config)

        # --- define layers and loss ------------------------------------------
        self.init_sequence_encoder(config, config["hidden_size"])
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

    def calculate_loss(self, interaction):
        if self.loss_type == "CE":
            return super().calculate_loss(interaction)
        user = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        pos_score = (user * self.item_embedding(interaction[self.POS_ITEM_ID])).sum(-1)
        neg_score = (user * self.item_embedding(interaction[self.NEG_ITEM_ID])).sum(-1)
        return self.loss_fct(pos_score, neg_score)
