r"""ICLRec: intent contrastive learning for sequential recommendation.

Reference: Chen, Liu, Li, McAuley, Xiong. "Intent Contrastive Learning for Sequential
Recommendation" (WWW 2022); official code salesforce/ICLRec (read, not copied).

loss = rec + cl_weight * InfoNCE(h(a1(s)), h(a2(s)))                         [instance]
           + intent_cl_weight * mean_v InfoNCE(h(a_v(s)), c(h(s)))            [intent]

a1, a2: each view draws crop / mask / reorder uniformly (possibly the same operator) with the
official Beauty ratios (crop 0.2, mask 0.7, reorder 0.2); c(h(s)) is the L2-normalised k-means
centroid nearest to the ORIGINAL sequence's state (detached), from a k-means (K = cluster_k) of
each user's full training sequence, refitted at the start of every epoch (eval mode). Dot
product, temperature 1.

Departures from the official code, the same for every model of the benchmark: the rec loss is
softmax CE over all items at the last position (the official code: binary CE with one sampled
negative at every position), and every state is the last position's (the official code
flattens the 50 x d output for the instance loss and mean-pools it, padding included, for the
intent loss); masked items become a learned [MASK] embedding (the official code uses the
padding id). The views are encoded once and serve both contrastive terms.
"""
from recbole_saerec.model.contrastive import ContrastiveSASRec, EpochClusteringMixin, last_sample_per_user


class ICLRec(EpochClusteringMixin, ContrastiveSASRec):
    """SASRec-CE plus an instance InfoNCE of two augmented views and an intent InfoNCE against each user's
    k-means centroid, refitted every epoch (module docstring)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.aug_ratios = {"crop": config["aug_crop_ratio"], "mask": config["aug_mask_ratio"],
                           "reorder": config["aug_reorder_ratio"]}
        self.init_clustering(config)
        self._user_rows = None

    def cluster_rows(self, train_data):
        """One row per user: the longest training sample (the user's whole training sequence, last 50)."""
        if self._user_rows is None:
            feat = train_data._dataset.inter_feat
            self._user_rows = last_sample_per_user(feat[self.USER_ID].numpy(), feat[self.ITEM_SEQ_LEN].numpy())
        return self._user_rows

    def calculate_loss(self, interaction):
        seq, length = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        view1, view2 = self.augment_views(seq, length, self.aug_ratios, distinct=False)
        user, z1, z2 = self.encode_many((seq, length), view1, view2)
        loss = self.rec_loss(user, interaction) + self.cl_weight * self.contrast(z1, z2)
        if self.clustering.ready and self.intent_cl_weight:
            intent = self.clustering.centroids(self.clustering.assign(user))
            loss = loss + self.intent_cl_weight * (self.contrast(z1, intent) + self.contrast(z2, intent)) / 2
        return loss
