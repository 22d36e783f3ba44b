r"""SAERec: sequential recommendation guided by sparse-autoencoder intents.

Reference: Xia, Wu, Yang, Wang, Liu. "SAERec" (arXiv 2606.18897, 2026); the
method as this project builds it is restated in docs/method.md (stages 2-3).

Intents are built offline (``python -m recbole_saerec.intents build``) and read
here through the artefact contract (:mod:`recbole_saerec.artefacts`).

Choices where the paper is vague (all config keys in properties/model/SAERec.yaml):

* Retrieval query (``intent_query``): the self-attention branch's last state
  (``sequence``, docs/method.md) or the last item's embedding (``last_item``, the
  authors' code). Score = cosine to W_map p_j; top-S are the personal intents.
* Public intents: f_j(t) = share of the batch's users whose top-S holds j; an
  EMA a_j <- beta a_j + (1 - beta) f_j(t) is updated in training mode only, is
  a buffer (saved in the checkpoint) and frozen in eval mode. Without EMA
  (``use_ema: False``) the public intents are those of the last training batch
  (frozen at evaluation the same way, so results never depend on eval order).
* Intent branches: only the last position is scored and the retrieved intents
  are the same for every position of a user, so each intent branch is a
  cross-attention block stack whose query is the self-attention branch's last
  state (``intent_query_source: sequence``; ``embedding`` uses the last input
  embedding, the authors' parallel form). This costs O(B) instead of O(B x L).
* Fusion (``fusion``): ``adaptive`` = the paper's softmax gate over the branches (a convex
  mix); ``sum`` (noFus) and ``mean`` (sum / n_branches, the scale control: a sum makes the
  user vector ~n times larger than the gate's mix); ``residual`` = the authors' code: the
  self branch plus a parameter-free attention of it over the intent branches,
  h = h_self + sum_b softmax_b(<h_self, h_b> / sqrt(d)) h_b. Per-branch weights, their
  entropy and the share of users with one branch > 0.9 are collected in evaluation and
  returned by ``epoch_stats()`` (the benchmark records them per epoch).
* Item-side intent feature (``item_intent_feature``, NOT in the paper nor the authors' code): each item embedding adds
  the L1-normalised mix of its intents' projected vectors
  (sum_j a_ij W_map p_j), so item text reaches items that have few
  interactions; the same table scores the output.
* Steering: ``steer_weights`` (one per intent, default 1, not saved) scale the
  projected intent vectors everywhere they are used; weight 1 changes nothing.
"""
import warnings

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_saerec.artefacts import load_artefacts, resolve_intent_dir
from recbole_saerec.model.encoder import SequenceEncoder
from recbole_saerec.model.layers import BlockStack, init_weights


class _ItemMix(torch.autograd.Function):
    """out[i] = sum_r weight[i, r] * intents[index[i, r]]: an embedding bag forward, a CSR product back.

    Why not torch.sparse.mm (COO): on a CPU its forward and backward ran as two DENSE [n_items x m x d]
    matmuls, a third of a SAERec step on Beauty; and embedding_bag's own backward (w.r.t. the bag
    table, with per-sample weights) was 18 ms, against 2.6 ms for the transposed CSR product."""

    @staticmethod
    def forward(ctx, intents, index, weight, transposed):
        ctx.transposed = transposed
        return F.embedding_bag(index, intents, mode="sum", per_sample_weights=weight)

    @staticmethod
    def backward(ctx, grad):
        return ctx.transposed @ grad, None, None, None


class SAERec(SequenceEncoder, SequentialRecommender):
    """SASRec's encoder (the self branch) plus a personal and a public intent branch, fused per user.

    ``forward`` returns the user vector; ``item_table()`` the item vectors it is scored against (the
    embeddings plus the item-side intent feature); ``forward_details`` both, with the intents each
    user retrieved and the fusion weights (what explain and steer show). The choices where the paper
    is vague: the module docstring.
    """

    needs_intents = True  # quick_start builds the artefacts first when they are missing
    sequence_stack = "self_branch"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # --- load parameters -------------------------------------------------
        self.hidden_size = config["hidden_size"]
        self.initializer_range = config["initializer_range"]
        self.S = config["intents_retrieved"]
        self.ema_decay = config["ema_decay"]
        self.use_personal = config["use_personal"]
        self.use_public = config["use_public"]
        self.use_ema = config["use_ema"]
        self.fusion = config["fusion"]
        self.intent_query = config["intent_query"]
        self.intent_query_source = config["intent_query_source"]
        self.item_intent_feature = config["item_intent_feature"]
        self.autocast_bf16 = config["autocast_bf16"]
        self.compile = config["compile"]
        self.read_speed_switches(config)

        # --- intents (offline artefacts) -------------------------------------
        iid_field = dataset.iid_field
        item_tokens = list(dataset.field2id_token[iid_field][1:])
        self.intent_dir = resolve_intent_dir(config)
        arte = load_artefacts(self.intent_dir, config["dataset"], item_tokens=item_tokens,
                              encoder=config["intent_encoder"] if config["intent_check_encoder"] else None)
        self.n_intents = arte.n_intents
        if not 1 <= self.S <= self.n_intents:
            raise ValueError(
                f"SAERec: intents_retrieved (S) = {self.S}, but the intent set in {self.intent_dir} has "
                f"{self.n_intents} intents: choose 1 <= S <= {self.n_intents} (or keep more intents)."
            )
        self.intent_catalogue = arte.catalogue
        self.intent_fingerprint = arte.fingerprint
        self.register_buffer("intent_vectors", arte.vectors.clone())  # [m, d_t], saved with the model
        # each item's top-r intents and their L1-normalised activations, [n_items, r] (empty slot: weight 0)
        index, weight = arte.item_activation_rows(dataset.field2token_id[iid_field], self.n_items)
        weight = weight / weight.abs().sum(1, keepdim=True).clamp_min(1e-12)
        self.register_buffer("item_intent_index", index, persistent=False)
        self.register_buffer("item_intent_weight", weight, persistent=False)
        self._mix_transposed = None  # [m, n_items] CSR of the activations, built on first use
        # Public-intent state: EMA of retrieval frequency, and the last training batch's frequency.
        self.register_buffer("public_ema", torch.zeros(self.n_intents))
        self.register_buffer("last_batch_freq", torch.zeros(self.n_intents))
        self.register_buffer("steer_weights", torch.ones(self.n_intents), persistent=False)
        self._fusion_acc = None  # running sums of evaluation-time fusion weights (epoch_stats)

        # --- define layers and loss --------------------------------------------
        d = self.hidden_size
        self.init_sequence_encoder(config, d)  # item and position embeddings, LayerNorm, dropout, self_branch
        self.intent_map = nn.Linear(arte.dim, d, bias=False)  # W_map
        n_intent_layers = config["intent_layers"]
        block_args = self.block_args(config, d)
        self.personal_branch = BlockStack(n_intent_layers, *block_args) if self.use_personal else None
        self.public_branch = BlockStack(n_intent_layers, *block_args) if self.use_public else None
        self.branch_names = ["self"] + (["personal"] if self.use_personal else []) + (
            ["public"] if self.use_public else [])
        self.n_branches = len(self.branch_names)
        self.fusion_gate = nn.Linear(self.n_branches * d, self.n_branches) if self.fusion == "adaptive" else None

        # --- initialise parameters -----------------------------------------------
        self.apply(self._init_weights)
        # opt-in: dynamic shapes (the packed token count changes every batch)
        self._run = torch.compile(self._forward, dynamic=True) if self.compile else self._forward

    def _init_weights(self, module):
        init_weights(module, self.initializer_range)

    # ------------------------------------------------------------------ pieces
    def projected_intents(self):
        """Q = W_map P, computed once per forward (not per sample), scaled by steering weights."""
        return self.intent_map(self.intent_vectors) * self.steer_weights.unsqueeze(1)

    @property
    def item_intent_activations(self):
        """[n_items, m] sparse L1-normalised item activations (what the item-side feature mixes)."""
        rows = torch.arange(self.n_items, device=self.item_intent_index.device).repeat_interleave(
            self.item_intent_index.shape[1])
        return torch.sparse_coo_tensor(torch.stack([rows, self.item_intent_index.reshape(-1)]),
                                       self.item_intent_weight.reshape(-1), (self.n_items, self.n_intents),
                                       check_invariants=True).coalesce()

    @item_intent_activations.setter
    def item_intent_activations(self, matrix):
        """Replace the activations by an [n_items, m] matrix (sparse or dense), used as given."""
        dense = (matrix.to_dense() if matrix.is_sparse else matrix).to(self.item_intent_weight)
        r = max(1, int((dense != 0).sum(1).max()))
        top = dense.abs().topk(r, dim=1).indices
        self.item_intent_index = top
        self.item_intent_weight = dense.gather(1, top)
        self._mix_transposed = None

    def item_table(self, intents=None):
        """Item embeddings used for both the input sequence and the output scores.

        The feature is sum_r a_ir q_(j_ir) over each item's top-r intents (:class:`_ItemMix`), q the
        projected intents (``intents``; default :meth:`projected_intents`)."""
        table = self.item_embedding.weight
        if intents is None:
            intents = self.projected_intents()
        if self.item_intent_feature:
            index, weight = self.item_intent_index, self.item_intent_weight
            if self._mix_transposed is None or self._mix_transposed.device != index.device:
                rows = torch.arange(self.n_items, device=index.device).repeat_interleave(index.shape[1])
                with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta": the product is tested
                    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                    self._mix_transposed = torch.sparse_coo_tensor(
                        torch.stack([index.reshape(-1), rows]), weight.reshape(-1),
                        (self.n_intents, self.n_items), check_invariants=True).coalesce().to_sparse_csr()
            table = table + _ItemMix.apply(intents, index, weight, self._mix_transposed)
        return table

    def retrieve_personal(self, query, intents):
        """Cosine of each user's query to every intent (one matmul, O(B x m)); top-S."""
        scores = F.normalize(query, dim=-1) @ F.normalize(intents, dim=-1).T
        top_scores, top_idx = scores.topk(self.S, dim=-1)
        return top_scores, top_idx

    @torch.no_grad()
    def update_public_state(self, personal_idx):
        """f_j(t) = share of the batch's users whose personal top-S holds j; EMA in training only."""
        freq = torch.zeros_like(self.public_ema)
        freq.scatter_add_(0, personal_idx.reshape(-1), torch.ones(personal_idx.numel(), device=freq.device))
        freq /= personal_idx.shape[0]
        self.last_batch_freq.copy_(freq)
        self.public_ema.mul_(self.ema_decay).add_(freq, alpha=1.0 - self.ema_decay)

    def public_indices(self):
        source = self.public_ema if self.use_ema else self.last_batch_freq
        return source.topk(self.S).indices

    # ----------------------------------------------------------------- forward
    def intents_and_table(self):
        """(projected intents [m, d], item table [n_items, d]): once per pass, in fp32 (small; outside autocast)."""
        with torch.autocast(self.intent_vectors.device.type, enabled=False):
            intents = self.projected_intents()
            return intents, self.item_table(intents)

    def user_and_table(self, item_seq, item_seq_len):
        """(user vectors [B, d], item table [n_items, d]) of one pass: score = user @ table.T."""
        intents, table = self.intents_and_table()
        return self.forward(item_seq, item_seq_len, intents, table), table

    def forward(self, item_seq, item_seq_len, intents=None, table=None):
        """The user vectors [B, d]; ``intents`` and ``table``: this pass's :meth:`intents_and_table`."""
        if intents is None:
            intents, table = self.intents_and_table()
        return self._outputs(item_seq, item_seq_len, intents, table)[0]

    def forward_details(self, item_seq, item_seq_len):
        """(user [B, d], details) of one pass: ``item_table``, the retrieved ``personal_idx`` [B, S] and their
        cosine ``personal_scores``, the ``public_idx`` [S], the ``fusion_weights`` [B, n_branches] and the
        ``branch_names`` (what explain and steer read; the scores are ``user @ item_table.T``)."""
        intents, table = self.intents_and_table()
        user, details = self._outputs(item_seq, item_seq_len, intents, table)
        return user, dict(details, item_table=table)

    def _outputs(self, item_seq, item_seq_len, intents, table):
        with torch.autocast(item_seq.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            user, details = self._run(item_seq, item_seq_len, intents, table)
        return user.float(), details

    def _forward(self, item_seq, item_seq_len, intents, table):
        h_base, x_last, last_item = self.encode_sequence(table, item_seq, item_seq_len)
        query_in = (h_base if self.intent_query_source == "sequence" else x_last).unsqueeze(1)

        retrieval_query = h_base if self.intent_query == "sequence" else table[last_item]
        personal_scores, personal_idx = self.retrieve_personal(retrieval_query, intents)
        if self.training:
            self.update_public_state(personal_idx)
        public_idx = self.public_indices()

        branches = [h_base]
        if self.use_personal:
            branches.append(self.personal_branch(query_in, memory=intents[personal_idx]).squeeze(1))
        if self.use_public:
            memory = intents[public_idx].unsqueeze(0).expand(h_base.shape[0], -1, -1)
            branches.append(self.public_branch(query_in, memory=memory).squeeze(1))
        stacked = torch.stack(branches, dim=1)  # [B, n_branches, d]
        user, weights = self.fuse(stacked)
        if not self.training:
            self.log_fusion(weights.detach().float())
        return user, {"personal_idx": personal_idx, "personal_scores": personal_scores.float(),
                      "public_idx": public_idx, "fusion_weights": weights.float(), "branch_names": self.branch_names}

    def fuse(self, stacked):
        """[B, n_branches, d] -> (user [B, d], per-branch weights [B, n_branches]); see `fusion`."""
        if stacked.shape[1] == 1:  # no intent branch (SASRec+IntentFeat): nothing to fuse
            return stacked[:, 0], torch.ones_like(stacked[:, :, 0])
        if self.fusion == "adaptive":
            weights = torch.softmax(self.fusion_gate(stacked.flatten(1)), dim=-1)
        elif self.fusion == "residual":
            base, intent = stacked[:, 0], stacked[:, 1:]
            attn = torch.softmax((intent @ base.unsqueeze(-1)).squeeze(-1) / base.shape[-1] ** 0.5, dim=-1)
            weights = torch.cat([torch.ones_like(attn[:, :1]), attn], dim=1)
        else:
            scale = 1.0 if self.fusion == "sum" else 1.0 / stacked.shape[1]
            weights = torch.full(stacked.shape[:2], scale, device=stacked.device, dtype=stacked.dtype)
        return (weights.unsqueeze(-1) * stacked).sum(1), weights

    def log_fusion(self, weights):
        """Accumulate, per evaluated user, the branch weights, the entropy of the normalised weights
        (1 = uniform, 0 = one branch) and whether one branch holds > 0.9 of the weight."""
        share = weights / weights.sum(1, keepdim=True)
        n = share.shape[1]
        entropy = -(share * share.clamp_min(1e-12).log()).sum(1) / (torch.log(torch.tensor(float(n))) if n > 1 else 1.0)
        acc = torch.cat([weights.sum(0), entropy.sum().view(1), (share.max(1).values > 0.9).float().sum().view(1),
                         torch.tensor([float(weights.shape[0])], device=weights.device)]).cpu()
        self._fusion_acc = acc if self._fusion_acc is None else self._fusion_acc + acc

    def epoch_stats(self):
        """Fusion weights seen in evaluation since the last call (the collapse the benchmark watches
        for): mean weight per branch, mean normalised entropy, share of users with one branch > 0.9."""
        if self._fusion_acc is None:
            return {}
        acc, self._fusion_acc = self._fusion_acc, None
        n_users = acc[-1]
        stats = {f"fusion_{name}": float(acc[i] / n_users) for i, name in enumerate(self.branch_names)}
        if self.n_branches > 1:
            stats["fusion_entropy"] = float(acc[-3] / n_users)
            stats["fusion_collapsed_share"] = float(acc[-2] / n_users)
        return stats
