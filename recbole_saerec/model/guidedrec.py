r"""GuidedRec: guided embedding refinement for sequential recommendation.

Reference: Jia et al. 2025, "guided embedding refinement" (docs/method.md, last section):
a language model writes "guided" item embeddings on interpretable attributes; they
are concatenated with a reduced-dimension copy of a base recommender's item
embeddings and the recommender is trained on this refined embedding (reported:
+10-50% MRR / Recall / NDCG over the base embedding).

Choices made here (config keys in properties/model/GuidedRec.yaml):

* Guided part: one text vector per attribute and item (templates ``guided_templates``),
  built offline by :mod:`recbole_saerec.intents.guided` with the plugin's text encoder before the
  model exists (``quick_start.ensure_guided`` sets ``guided_path``); the model only reads
  that file (:func:`recbole_saerec.artefacts.load_guided`, the contract),
  each mapped by its OWN linear map to ``guided_dim`` dimensions (``guided_projection:
  linear``; ``none`` keeps the raw d_t dims). The text vectors are fixed, the maps are
  learned, so block a of an item embedding depends only on attribute a. A missing
  attribute gives a zero block.
* Base part (``base_dim``; ``~`` = hidden_size - n_attributes x guided_dim, so the
  model is as wide as the SASRec it is compared with):
  ``base_checkpoint`` = a trained SASRec (or any model with ``item_embedding``) of the
  same dataset -> PCA of its item table (``base_reduction: pca``; ``base_variance``
  picks k by explained variance instead) initialises the block, fine-tuned unless
  ``base_finetune: False``; ``base_reduction: linear`` learns a map of the frozen
  table instead. Without a checkpoint the block is a learned item embedding.
* Sequence model: SASRec's (item + position embedding, LayerNorm, dropout, causal
  blocks from layers.BlockStack), last position = user vector h_u, CE over all items
  with the SAME refined table as output embedding. Hence score(u, i) = h_u . e_i
  splits exactly into one term per block (``contributions``): the attribution.
"""
import torch
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_saerec.artefacts import load_guided
from recbole_saerec.model.encoder import SequenceEncoder
from recbole_saerec.model.layers import init_weights, pca_reduce


class GuidedRec(SequenceEncoder, SequentialRecommender):
    """SASRec over [guided attribute blocks ; reduced base item embedding]: ``item_table()`` is that refined
    table (the sequence's input and the scores' output), and ``contributions`` splits each score by block."""

    needs_guided = True  # quick_start builds (or finds) the attribute vectors and sets guided_path first

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # --- load parameters -------------------------------------------------
        self.n_heads = config["n_heads"]
        self.initializer_range = config["initializer_range"]
        self.projection = config["guided_projection"]
        self.base_checkpoint = config["base_checkpoint"]
        self.base_reduction = config["base_reduction"]
        self.read_speed_switches(config)

        # --- guided attribute vectors (built offline, read from guided_path) ---
        tokens = list(dataset.field2id_token[dataset.iid_field][1:])
        guided = load_guided(config["guided_path"], config["dataset"], tokens,
                             encoder=config["guided_encoder"] or config["intent_encoder"])
        self.attr_names, self.attr_texts, self.guided_fingerprint = guided["names"], guided["texts"], guided["fingerprint"]
        n_attr, d_text = len(self.attr_names), guided["vectors"][0].shape[1]
        for a, vec in enumerate(guided["vectors"]):
            self.register_buffer(f"attr_vectors_{a}", vec, persistent=False)
        item_attr = torch.zeros(self.n_items, n_attr, dtype=torch.long)  # row 0 = [PAD]
        item_attr[1:] = guided["index"]
        self.register_buffer("item_attr", item_attr, persistent=False)
        self.guided_dim = config["guided_dim"] if self.projection == "linear" else d_text
        base_dim = config["base_dim"]
        if base_dim is None:
            base_dim = config["hidden_size"] - n_attr * self.guided_dim
        if base_dim < 1:
            raise ValueError(f"GuidedRec: base_dim = {base_dim}; raise hidden_size or lower guided_dim "
                             f"({n_attr} attributes x {self.guided_dim}).")

        # --- base item embedding (reduced) -------------------------------------
        base_table, self.base_explained_variance = None, None
        if self.base_checkpoint:
            base_table = self.load_base_table(config, self.base_checkpoint)
            if self.base_reduction == "pca":
                variance = config["base_variance"]
                coords, ratio, _, _ = pca_reduce(base_table[1:], None if variance else base_dim, variance)
                extra = -(n_attr * self.guided_dim + coords.shape[1]) % self.n_heads
                if variance and extra:  # a few more components, so that n_heads divides the model dimension
                    coords, ratio, _, _ = pca_reduce(base_table[1:], coords.shape[1] + extra)
                base_dim = coords.shape[1]
                self.base_explained_variance = ratio
                base_init = torch.cat([torch.zeros(1, base_dim), coords])
        self.base_dim = base_dim
        self.hidden_size = d = n_attr * self.guided_dim + base_dim
        if d % self.n_heads:
            raise ValueError(f"GuidedRec: model dimension {n_attr} x {self.guided_dim} + {base_dim} = {d} is not a "
                             f"multiple of n_heads={self.n_heads}; set base_dim (or hidden_size) accordingly.")
        self.block_names = self.attr_names + ["base"]
        self.block_slices = [(a * self.guided_dim, (a + 1) * self.guided_dim) for a in range(n_attr)] + \
                            [(n_attr * self.guided_dim, d)]

        # --- define layers and loss --------------------------------------------
        self.attr_maps = nn.ModuleList(nn.Linear(d_text, self.guided_dim, bias=False) for _ in range(n_attr)) \
            if self.projection == "linear" else None
        if base_table is not None and self.base_reduction == "linear":
            self.register_buffer("base_frozen", base_table, persistent=False)
            self.base_map = nn.Linear(base_table.shape[1], base_dim, bias=False)
            self.base_embedding = None
        else:
            self.base_map = None
            self.base_embedding = nn.Embedding(self.n_items, base_dim, padding_idx=0)
        self.init_sequence_encoder(config, d, item_embedding=False)  # the table is item_table()

        # --- initialise parameters -----------------------------------------------
        self.apply(self._init_weights)
        if self.base_embedding is not None and base_table is not None:  # PCA init (after apply)
            self.base_embedding.weight.data.copy_(base_init)
            self.base_embedding.weight.requires_grad_(bool(config["base_finetune"]))

    def _init_weights(self, module):
        init_weights(module, self.initializer_range)

    def load_base_table(self, config, path):
        from recbole_saerec.trainer import load_checkpoint

        saved = load_checkpoint(path)
        table = saved["state_dict"].get("item_embedding.weight")
        if table is None:
            raise ValueError(f"GuidedRec: base_checkpoint {path} has no item_embedding.weight (train SASRec first).")
        if saved["config"]["dataset"] != config["dataset"] or table.shape[0] != self.n_items:
            raise ValueError(f"GuidedRec: base_checkpoint {path} is for dataset {saved['config']['dataset']} with "
                             f"{table.shape[0]} items, not {config['dataset']} with {self.n_items}.")
        return table.float().cpu()

    def other_parameter(self):
        return {"guided_fingerprint": self.guided_fingerprint}

    def load_other_parameter(self, para):
        saved = (para or {}).get("guided_fingerprint")
        if saved is not None and saved != self.guided_fingerprint:
            raise ValueError(f"GuidedRec: this checkpoint was trained on guided attributes {saved}, but the current "
                             f"templates/text/encoder give {self.guided_fingerprint} (see guided_cache_dir).")

    # ------------------------------------------------------------------ pieces
    def item_table(self):
        """Refined item embeddings [n_items, d] = [guided block per attribute ; base block]."""
        parts = []
        for a in range(len(self.attr_names)):
            vec = getattr(self, f"attr_vectors_{a}")
            proj = self.attr_maps[a](vec) if self.attr_maps is not None else vec
            parts.append(proj[self.item_attr[:, a]])  # row 0 of vec is zeros: missing -> zero block
        parts.append(self.base_map(self.base_frozen) if self.base_map is not None else self.base_embedding.weight)
        table = torch.cat(parts, dim=1)
        return table * (torch.arange(self.n_items, device=table.device) > 0).unsqueeze(1)  # [PAD] = 0

    def contributions(self, user, table, items):
        """Score split by block: [B, K, n_blocks] for items [B, K]; sums to user . table[item]."""
        emb = table[items]  # [B, K, d]
        prod = user.unsqueeze(1) * emb
        return torch.stack([prod[..., s:e].sum(-1) for s, e in self.block_slices], dim=-1)
