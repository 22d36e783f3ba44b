r"""CL4SRec: contrastive learning for sequential recommendation.

Reference: Xie, Sun, Liu, Wu, Gao, Ding, Cui. "Contrastive Learning for Sequential
Recommendation" (ICDE 2022). No official code exists; RecBole-DA / RuihongQiu/DuoRec carry the
form the field runs (read, not copied), whose defaults this file's yaml takes.

loss = CE(h(s) E^T, target) + cl_weight * InfoNCE(h(a1(s)), h(a2(s)))

a1, a2 are two DIFFERENT operators drawn per sequence among crop (keep floor(eta L) contiguous
items), mask (floor(gamma L) items -> a learned [MASK] embedding) and reorder (shuffle a window of
floor(beta L) items); a length-1 sequence is its own two views. InfoNCE: the other 2B - 2 rows of
the batch are the negatives, dot product, temperature 1 (the codes' defaults).

Departures from the RecBole-DA code, on purpose: the views are built from a copy of each
sequence (that code's dataloader writes mask/reorder into the stored training sequences, which
corrupts them across epochs and makes the two views alias), the backbone is the plugin's
PackedSASRec (RecBole's SASRec computed faster), and everything else is as every model of the
benchmark has it (CE over all items, weight decay, the protocol).
"""
from recbole_saerec.model.contrastive import ContrastiveSASRec


class CL4SRec(ContrastiveSASRec):
    """SASRec-CE plus InfoNCE between two differently augmented views of each sequence (module docstring)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.aug_ratios = {"crop": config["aug_crop_ratio"], "mask": config["aug_mask_ratio"],
                           "reorder": config["aug_reorder_ratio"]}

    def calculate_loss(self, interaction):
        seq, length = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        view1, view2 = self.augment_views(seq, length, self.aug_ratios, distinct=True)
        user, z1, z2 = self.encode_many((seq, length), view1, view2)
        return self.rec_loss(user, interaction) + self.cl_weight * self.contrast(z1, z2)
