r"""SASRecTextFeat: SASRec-CE plus a learned projection of each item's dense text embedding.

The control that separates "the SAE's intents" from "any text embedding added to the items".
SAERec's item-side intent feature (``SASRec+IntentFeat``: SAERec with both intent branches off)
adds to each item embedding the mix of its intents, sum_j a_ij W_map p_j (a_i = the item's
L1-normalised SAE activations, p_j = intent directions). This model adds W t_i instead, where
t_i is the item's frozen text embedding (``intents/item_text.py``: the same corpus, encoder and
cache as SAERec's intents) and W a learned [d_t -> d] map, initialised as W_map is. Everything
else is PackedSASRec: the same encoder, CE over all items, and the same table for the input
sequence and the output scores (as in SAERec). Items without text get no feature.
"""
import torch
from torch import nn

from recbole_saerec.artefacts import load_dataset_item_text
from recbole_saerec.model.layers import init_weights
from recbole_saerec.model.packed_sasrec import PackedSASRec


class SASRecTextFeat(PackedSASRec):
    """PackedSASRec whose item vectors add W t_i, a learned map of each item's frozen text embedding."""

    needs_item_text = True  # quick_start builds (or finds) the item-text vectors and sets item_text_path first

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        vectors, _ = load_dataset_item_text(config, dataset)
        self.register_buffer("item_text", torch.cat([torch.zeros(1, vectors.shape[1]), vectors]))  # row 0: padding
        self.text_map = nn.Linear(vectors.shape[1], self.item_embedding.embedding_dim, bias=False)
        init_weights(self.text_map, self.initializer_range)  # drawn after PackedSASRec's own parameters

    def item_table(self):
        """Input and output item vectors: the learned embedding plus the projected text (SequenceEncoder
        reads the sequence with it, and the loss and the scores use it)."""
        return self.item_embedding.weight + self.text_map(self.item_text)
