r"""ICSRec: intent contrastive learning with cross subsequences.

Reference: Qin, Yuan, Zhao, Zhou. "Intent Contrastive Learning with Cross Subsequences for
Sequential Recommendation" (WSDM 2024); official code QinHsiu/ICSRec (read, not copied).

Every prefix of a user's training sequence is a sample (RecBole's sequential augmentation, as
ICSRec's own data file). For a sample s with target t, s2 is another training subsequence with
the same target (drawn uniformly each step; the official code fixes one per target), and

loss = CE(h(s) E^T, t)
       + cl_weight        * InfoNCE(h1, h2;   false negatives = rows with the same target)   [CICL]
       + intent_cl_weight * sum_v InfoNCE(h_v, c(h_v); false negatives = rows of the same cluster) [FICL]

h1, h2: fresh forward passes of s and s2 (own dropout); c(h) the L2-normalised k-means centroid
nearest to h, from a k-means (K = cluster_k) of every training sample's representation refitted
at the start of each epoch (eval mode; the centroids carry no gradient). The false-negative
mask is the official ``--f_neg`` (on in its Beauty script, whose help text says the opposite);
``false_negative_mask: False`` turns it off. Dot product, temperature 1. Every view's state is
the last position's, as the official code.
"""
from recbole_saerec.model.contrastive import ContrastiveSASRec, EpochClusteringMixin, SameTargetSampler


class ICSRec(EpochClusteringMixin, ContrastiveSASRec):
    """SASRec-CE plus InfoNCE across subsequences with the same target, and against their k-means intent
    centroids, refitted every epoch (module docstring)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.false_negative_mask = config["false_negative_mask"]
        self.init_clustering(config)
        feat = dataset.inter_feat
        self.same_target = SameTargetSampler(feat[self.ITEM_SEQ], feat[self.ITEM_SEQ_LEN], feat[self.POS_ITEM_ID],
                                             self.n_items)

    def calculate_loss(self, interaction):
        seq, length, target = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], interaction[self.POS_ITEM_ID]
        other = self.same_target.sample(seq, length, target)
        user, h1, h2 = self.encode_many((seq, length), (seq, length), other)
        loss = self.rec_loss(user, interaction)
        loss = loss + self.cl_weight * self.contrast(h1, h2, target if self.false_negative_mask else None)
        if self.clustering.ready and self.intent_cl_weight:
            for view in (h1, h2):
                cluster = self.clustering.assign(view)
                labels = cluster if self.false_negative_mask else None
                loss = loss + self.intent_cl_weight * self.contrast(view, self.clustering.centroids(cluster), labels)
        return loss
