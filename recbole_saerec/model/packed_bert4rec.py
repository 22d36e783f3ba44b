r"""PackedBERT4Rec: RecBole's BERT4Rec, the same training loss computed faster.

Reference: Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
Representations from Transformer" (CIKM 2019), as RecBole implements it
(``recbole.model.sequential_recommender.BERT4Rec``).

Why it exists: converged baseline runs on a CPU. RecBole's BERT4Rec scores every item at every
mask slot of a batch: ``mask_ratio`` x max length slots per sequence (0.2 x 50 = 10 here), padded
slots included, and multiplies the padded slots' losses by zero afterwards. On Beauty (mean
training sequence 8.6 items) about 1.3 of the 10 slots are real, so ~87% of the 256 x 10 x 12,101
logits, and their softmax and backward, are thrown away; a Beauty epoch took 7-8 min on one
thread beside a second run. This model computes the logits of the real slots only.

Everything else is RecBole's class, inherited unchanged: the parameters (so a RecBole BERT4Rec
state dict loads as it is), the encoder, the masking transform in the data loader, ``predict``
and ``full_sort_predict``. The CE loss is the same number with the same gradients on the same
weights and batch (tests/test_packed_bert4rec.py). BPR is RecBole's code path.
"""
from recbole.model.sequential_recommender.bert4rec import BERT4Rec
from torch import nn


class PackedBERT4Rec(BERT4Rec):
    """RecBole's BERT4Rec with its CE loss computed on the real mask slots only (same loss and gradients)."""

    def calculate_loss(self, interaction):
        if self.loss_type != "CE":
            return super().calculate_loss(interaction)
        masked_index = interaction[self.MASK_INDEX]  # [B mask_len], positions; padded with 0
        seq_output = self.forward(interaction[self.MASK_ITEM_SEQ])  # [B L H]
        # RecBole's rule for a real slot is `masked_index > 0` (so a mask at position 0 never
        # counts); kept as it is, since the point is the same loss.
        rows, slots = (masked_index > 0).nonzero(as_tuple=True)
        hidden = seq_output[rows, masked_index[rows, slots]]  # [n_real H]
        logits = hidden @ self.item_embedding.weight[: self.n_items].T + self.output_bias  # [n_real n_items]
        # mean over the real slots = RecBole's sum(loss * targets) / sum(targets)
        return nn.functional.cross_entropy(logits, interaction[self.POS_ITEMS][rows, slots])
