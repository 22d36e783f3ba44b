r"""LLMInit: SASRec-CE whose item embeddings start from the items' text embeddings.

Reference: Zhang et al., "LLMInit: A Free Lunch from Large Language Models for Selective
Initialization of Recommendation" (2025); official code DavidZWZ/LLMInit (read, not copied).
Each item's embedding is initialised with d of the d_t dimensions of its text embedding
(``intents/item_text.py``: the same corpus, encoder and cache as SAERec's intents) and then
trained freely, as any SASRec embedding. ``llminit_selection`` picks the dimensions as the
official code does: ``var`` = the d with the largest variance over the 20% most popular items
(by training interactions), ``uniform`` = evenly spaced, ``random`` = d drawn at random (the
official code draws with replacement; here without). No rescaling, as the official code.
Items without text and the padding row keep the normal initialisation.

The official code applies the idea to LightGCN / SGL (BPR); on a sequential backbone it is our
adaptation, as the SAERec paper's LLMInit row must also have been.
"""
import torch

from recbole_saerec.artefacts import load_dataset_item_text
from recbole_saerec.model.packed_sasrec import PackedSASRec

POPULAR_SHARE = 0.2  # the official 'var' rule's share of most popular items


def select_dimensions(vectors, popularity, d, rule, generator=None):
    """Indices (sorted) of ``d`` of the columns of ``vectors`` [n, d_t] by ``rule`` (module docstring)."""
    d_t = vectors.shape[1]
    if d > d_t:
        raise ValueError(f"LLMInit: hidden_size {d} > the text embedding's {d_t} dimensions; choose hidden_size <= {d_t}.")
    if rule == "uniform":
        return torch.arange(0, d_t, d_t // d)[:d]
    if rule == "random":
        return torch.randperm(d_t, generator=generator)[:d].sort().values
    if rule == "var":
        top = popularity.argsort(descending=True, stable=True)[: max(1, int(POPULAR_SHARE * len(popularity)))]
        return vectors[top].var(0).argsort(descending=True, stable=True)[:d].sort().values
    raise ValueError(f"LLMInit: llminit_selection='{rule}' is not one of ('var', 'uniform', 'random').")


class LLMInit(PackedSASRec):
    """PackedSASRec whose item embeddings start from d selected dimensions of the items' text embeddings."""

    needs_item_text = True  # quick_start builds (or finds) the item-text vectors and sets item_text_path first

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        vectors, has_text = load_dataset_item_text(config, dataset)
        targets = dataset.inter_feat[self.POS_ITEM_ID]  # training samples' targets: each item's interactions
        popularity = torch.bincount(targets, minlength=self.n_items)[1:].float()
        self.text_dims = select_dimensions(vectors, popularity, self.item_embedding.embedding_dim,
                                           config["llminit_selection"])
        with torch.no_grad():
            rows = has_text.nonzero().squeeze(1)
            self.item_embedding.weight[rows + 1] = vectors[rows][:, self.text_dims]
