r"""DuoRec: contrastive regularisation by dropout and by sequences with the same target.

Reference: Qiu, Huang, Yin, Wang. "Contrastive Learning for Representation Degeneration
Problem in Sequential Recommendation" (WSDM 2022); official code RuihongQiu/DuoRec (read, not
copied). Its default contrast mode ``us_x``:

loss = CE(h(s) E^T, target) + cl_weight * InfoNCE(h'(s), h(s+))

h' is a second forward pass of the same sequence (another dropout mask: the unsupervised
augmentation) and s+ another training sequence with the same target item, drawn uniformly each
step (the supervised positive; a target with one training sequence falls back to the sequence
itself). InfoNCE: the other 2B - 2 rows are the negatives, dot product, temperature 1; samples
sharing a target are NOT masked (as the official code).
"""
from recbole_saerec.model.contrastive import ContrastiveSASRec, SameTargetSampler


class DuoRec(ContrastiveSASRec):
    """SASRec-CE plus InfoNCE between a second dropout pass and a sequence with the same target (module docstring)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        feat = dataset.inter_feat  # the training samples (RecBole's augmented prefixes)
        self.same_target = SameTargetSampler(feat[self.ITEM_SEQ], feat[self.ITEM_SEQ_LEN], feat[self.POS_ITEM_ID],
                                             self.n_items)

    def calculate_loss(self, interaction):
        seq, length = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        positive = self.same_target.sample(seq, length, interaction[self.POS_ITEM_ID])
        user, second_pass, supervised = self.encode_many((seq, length), (seq, length), positive)
        return self.rec_loss(user, interaction) + self.cl_weight * self.contrast(second_pass, supervised)
