"""RecSAE probe: interpret and steer any trained RecBole model with a TopK sparse autoencoder.

    python -m recbole_saerec.analysis.probe --checkpoint=saved/SASRec-....pth [--latents_mult 16] [--k 8] [--out dir]

After RecSAE (Wang et al., "RecSAE: interpreting sequential recommendation
models with sparse autoencoders"; METHOD.md, "RecSAE"). The recommender is
frozen; everything below reads the representation it scores items with.

1. **Representation.** The vector right before the prediction layer, taken
   from the model's own ``full_sort_predict`` through a per-family adapter
   that wraps one method of the model instance:
   sequential models -> ``forward(item_seq, item_seq_len)`` (the last
   position's state, scored as ``seq_output @ item_embedding.T``); BPR-like
   models -> ``get_user_embedding(user)``; LightGCN-like models -> the user
   table of ``forward()`` (the propagated embeddings). Cases = every training
   prefix (sequential models: RecBole's augmented training interactions) or
   every training user (general models).
2. **SAE.** The shared TopK SAE (``intents/sae.py``) trained by the shared
   trainer (``intents/sae_trainer.py``) on all training cases: latents =
   ``latents_mult`` x d (16 x d), k = 8.
3. **Concepts.** Users are split (seeded, 80/20) into a *fit* part and a
   *held-out* part. For each latent, its top ``n_top`` fit cases (highest
   activation, at most one case per user) and **the model's top-10
   recommended items for them** (computed with the untouched representation;
   general models mask the user's training items as RecBole's evaluation
   does). Recommended items rather than the items in the sequences: the
   representation is what scores items, the tuning metric counts concept
   items in top-10 lists, and the definition is the same for sequential and
   general models. TF-IDF (sklearn) over one document per latent (the text
   of all those items) gives the term concept: the ``n_terms`` strongest
   terms. Optional LM sentence concept: ``--lm_concept`` (judge backends).
4. **Verification.** An item *matches* a concept when its text contains at
   least one concept term; a case's presence = share of its top-10 items
   that match. Predict "activating" iff presence > the concept's base rate
   (mean presence over the fit cases). Positives = the latent's top held-out
   activating cases (one per user, at most ``n_verify``), negatives = as many
   random held-out cases where the latent is off. Confidence = accuracy;
   verified = confidence >= 0.8 (needs >= ``min_verify`` positives).
5. **Metrics.** Intra-/inter-latent cosine similarity of each unit's top
   items (the 10 items most frequent in its top cases' top-10 lists;
   cosine of the probed model's item embeddings), for the SAE latents and
   for the raw dimensions as units (the base). HR/NDCG@10,20 on the test split
   with the representation replaced by the SAE reconstruction, by a dense
   autoencoder (ReLU, same latent count, same data and steps), and untouched.
6. **Targeted tuning.** Scale one latent's activation by s in the
   reconstruction (only where the latent is active: s = 1 changes nothing,
   s = 0 removes it) for the test cases where it is active; presence of its
   concept in the top-10 vs. the mean presence of the other tuned concepts.

Outputs in ``--out``: concepts.{csv,md,json}, metrics.json (options, model,
versions, seed, machine, command), tuning.csv, confidence_hist.png,
tuning_curves.png.
"""
import argparse
import contextlib
import csv
import inspect
import json
import math
import os
import platform
import sys
import time
from logging import getLogger

import numpy as np
import torch
from torch import nn

from recbole_saerec.checkpoints import add_checkpoint_args
from recbole_saerec.cli import run_main

DEFAULT_SCALES = (-10, -5, -1, 0, 1, 2, 5, 10)


class UnsupportedModelError(ValueError):
    """The probe has no adapter for this model's representation."""


# ----------------------------------------------------------------------------- adapters
class Adapter:
    """Reads (and optionally replaces) the representation a model scores with.

    ``method`` names the model method whose output holds the representation;
    ``intercept`` shadows it on the instance (``self.forward(...)`` inside
    ``full_sort_predict`` then goes through the wrapper; module hooks would not
    fire there, since RecBole calls ``self.forward`` directly).
    """

    family = ""
    method = ""

    def __init__(self, model):
        self.model = model

    # the representation inside the method's output, and putting a new one back
    def split(self, out):
        return out[0] if isinstance(out, tuple) else out

    def join(self, out, rep):
        return (rep,) + tuple(out[1:]) if isinstance(out, tuple) else rep

    def case_rows(self, rep, interaction):
        """Rows of the captured representation that belong to the interaction's cases."""
        return rep

    def reset_cache(self):
        pass

    def check(self, rep, interaction):
        pass

    @contextlib.contextmanager
    def intercept(self, transform=None):
        """Within the block, ``full_sort_predict`` scores with ``transform(representation)``.

        Yields a list that receives every representation the method produced
        (before the transform).
        """
        model, captured = self.model, []
        original = getattr(model, self.method)

        def wrapped(*args, **kwargs):
            out = original(*args, **kwargs)
            rep = self.split(out)
            captured.append(rep.detach())
            if transform is not None:
                out = self.join(out, transform(rep))
            return out

        model.__dict__[self.method] = wrapped  # shadows the class method on this instance only
        self.reset_cache()
        try:
            yield captured
        finally:
            del model.__dict__[self.method]
            self.reset_cache()

    @torch.no_grad()
    def run(self, interaction, transform=None):
        """(scores [B, n_items], representation [B, d]) of the model's own full_sort_predict."""
        with self.intercept(transform) as captured:
            scores = self.model.full_sort_predict(interaction)
        if not captured:
            raise UnsupportedModelError(
                f"{type(self.model).__name__}.full_sort_predict never called {self.method}(); the probe reads "
                f"the representation there. Add an adapter for this model in recbole_saerec/analysis/probe.py.")
        rep = self.case_rows(captured[-1], interaction)
        self.check(rep, interaction)
        return scores.view(rep.shape[0], -1), rep

    def item_matrix(self, interaction):
        """[n_items, d]: the item vectors the representation is scored against."""
        weight = getattr(self.model, "item_embedding", None)
        if not isinstance(weight, nn.Embedding):
            raise UnsupportedModelError(f"{type(self.model).__name__} has no item_embedding table.")
        return weight.weight.detach()


class SequentialAdapter(Adapter):
    """``forward(item_seq, item_seq_len)`` -> [B, d] (or ``(rep, details)`` as SAERec returns)."""

    family, method = "sequential", "forward"

    def check(self, rep, interaction):
        if rep.dim() != 2 or rep.shape[0] != len(interaction):
            raise UnsupportedModelError(
                f"{type(self.model).__name__}.forward returns shape {tuple(rep.shape)}, not [batch, d]: the "
                f"probe needs the last position's state (models like BERT4Rec gather it inside "
                f"full_sort_predict; add an adapter in recbole_saerec/analysis/probe.py).")

    def item_matrix(self, interaction):
        forward = self.model.forward
        details = {"return_details": True} if "return_details" in inspect.signature(forward).parameters else {}
        with torch.no_grad():
            out = forward(interaction[self.model.ITEM_SEQ], interaction[self.model.ITEM_SEQ_LEN], **details)
        if isinstance(out, tuple) and isinstance(out[1], dict) and "item_table" in out[1]:
            return out[1]["item_table"].detach()  # SAERec scores against a computed item table
        return super().item_matrix(interaction)


class UserEmbeddingAdapter(Adapter):
    """BPR-like: ``get_user_embedding(user)`` -> [B, d], scored against ``item_embedding``."""

    family, method = "general (user embedding)", "get_user_embedding"


class PropagatedAdapter(Adapter):
    """LightGCN-like: ``forward()`` -> (user table, item table, ...), cached in ``restore_user_e``."""

    family, method = "general (propagated)", "forward"

    def reset_cache(self):
        self.model.restore_user_e = None
        self.model.restore_item_e = None

    def case_rows(self, rep, interaction):
        return rep[interaction[self.model.USER_ID]]

    def item_matrix(self, interaction):
        with torch.no_grad():
            out = self.model.forward()
        self.reset_cache()
        return out[1].detach()


def make_adapter(model):
    """The adapter for a model's family, or UnsupportedModelError saying what is missing."""
    from recbole.utils import ModelType

    name = type(model).__name__
    if model.type == ModelType.SEQUENTIAL:
        return SequentialAdapter(model)
    if model.type == ModelType.GENERAL:
        if hasattr(model, "restore_user_e"):
            return PropagatedAdapter(model)
        if callable(getattr(model, "get_user_embedding", None)):
            return UserEmbeddingAdapter(model)
    raise UnsupportedModelError(
        f"The probe supports sequential models whose forward() returns the [batch, d] state they score with "
        f"(SASRec, GRU4Rec, SAERec, ...), BPR-like models (get_user_embedding) and LightGCN-like models "
        f"(forward() -> user/item tables, restore_user_e); {name} ({model.type}) is none of these.")


# ----------------------------------------------------------------------------- loading
def load_probed(checkpoint, data_path=None, overrides=None, trust=False):
    """(config, dataset, train_data, test_data, frozen model) from a RecBole or plugin checkpoint.

    `checkpoint`: a .pth or a benchmark run folder holding one; `trust`: allow a full pickled
    checkpoint (see recbole_saerec.checkpoints).
    """
    from recbole.utils import init_seed

    from recbole_saerec.checkpoints import checkpoint_config, read_checkpoint
    from recbole_saerec.config import Config
    from recbole_saerec.data import split_with_protocol
    from recbole_saerec.quick_start import load_dataset
    from recbole_saerec.utils import get_model

    ckpt = read_checkpoint(checkpoint, trust=trust)
    checkpoint = ckpt["path"]
    config = checkpoint_config(ckpt)
    Config.compatibility_settings(config)  # numpy-2 aliases RecBole's dataset code still uses
    config["device"] = torch.device("cpu")
    config["use_gpu"] = False
    for key in ("save_dataset", "save_dataloaders", "show_progress"):
        config[key] = False
    if data_path:
        config["data_path"] = os.path.join(data_path, config["dataset"])
    for key, value in (overrides or {}).items():
        config[key] = value
    init_seed(config["seed"], config["reproducibility"])
    dataset = load_dataset(config)
    train_data, _valid, test_data = split_with_protocol(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset)
    model.load_state_dict(ckpt["state_dict"])
    model.load_other_parameter(ckpt.get("other_parameter"))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info = {"path": os.path.abspath(checkpoint), "epoch": ckpt.get("epoch"),
            "best_valid_score": _plain(ckpt.get("best_valid_score"))}
    return config, dataset, train_data, test_data, model, info


def _plain(v):
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def item_text_array(config, dataset, fields=None):
    """Text per internal item id ('' for padding and items without text), from the raw .item file."""
    from recbole_saerec.intents.corpus import item_texts

    if fields:
        config["intent_item_text_fields"] = list(fields)
    if not config["intent_item_text_fields"]:
        raise ValueError("No item text fields: pass --text_fields=title,genre (columns of the raw .item file) "
                         "or set intent_item_text_fields in the dataset yaml.")
    tokens = list(dataset.field2id_token[config["ITEM_ID_FIELD"]])
    by_token = item_texts(config, tokens[1:])
    return np.array([by_token.get(str(t), "") if i else "" for i, t in enumerate(tokens)], dtype=object)


# ----------------------------------------------------------------------------- cases
def _train_history(train_dataset, uid_field, iid_field):
    users = train_dataset.inter_feat[uid_field].numpy()
    items = train_dataset.inter_feat[iid_field].numpy()
    return users, items


@torch.no_grad()
def collect_cases(adapter, train_data, batch_size=1024, topk=10, max_cases=None, seed=0):
    """Training cases: representation [n, d], user id [n], top-k recommended items [n, topk]."""
    from recbole.data.interaction import Interaction

    model, ds = adapter.model, train_data._dataset
    uid, iid = model.USER_ID, model.ITEM_ID
    hist = None
    if isinstance(adapter, SequentialAdapter):
        inter = ds.inter_feat
        n = len(inter)
        order = np.arange(n)
        if max_cases and n > max_cases:
            order = np.sort(np.random.default_rng(seed).choice(n, max_cases, replace=False))
        batches = ((inter[torch.as_tensor(order[s:s + batch_size])]) for s in range(0, len(order), batch_size))
        users = inter[uid].numpy()[order]
    else:
        hu, hi = _train_history(ds, uid, iid)
        users = np.unique(hu)
        users = users[users > 0]
        if max_cases and len(users) > max_cases:
            users = np.sort(np.random.default_rng(seed).choice(users, max_cases, replace=False))
        hist = (hu, hi)
        batches = (Interaction({uid: torch.as_tensor(users[s:s + batch_size])})
                   for s in range(0, len(users), batch_size))
    reps, tops, start = [], [], 0
    for batch in batches:
        scores, rep = adapter.run(batch)
        scores = scores.clone()
        scores[:, 0] = -math.inf
        if hist is not None:  # mask training items, as RecBole's full-sort evaluation does
            ids = users[start:start + len(rep)]
            pos = {u: r for r, u in enumerate(ids.tolist())}
            sel = np.isin(hist[0], ids)
            rows = torch.as_tensor([pos[u] for u in hist[0][sel].tolist()], dtype=torch.long)
            scores[rows, torch.as_tensor(hist[1][sel], dtype=torch.long)] = -math.inf
        tops.append(scores.topk(topk, dim=1).indices)
        reps.append(rep.float())
        start += len(rep)
    return torch.cat(reps), users, torch.cat(tops).numpy()


@torch.no_grad()
def test_batches(adapter, test_data):
    """The test split's batches (interaction, history index, positive u, positive i) and their representation."""
    batches, reps = [], []
    for interaction, history_index, positive_u, positive_i in test_data:
        _scores, rep = adapter.run(interaction)
        batches.append((interaction, history_index, positive_u, positive_i))
        reps.append(rep.float())
    return batches, torch.cat(reps)


@torch.no_grad()
def masked_scores(adapter, interaction, history_index, transform=None):
    scores, _ = adapter.run(interaction, transform)
    scores = scores.clone()
    scores[:, 0] = -math.inf
    if history_index is not None:
        scores[history_index] = -math.inf
    return scores


@torch.no_grad()
def evaluate(adapter, batches, transform=None, ks=(10, 20)):
    """HR@K and NDCG@K over full rankings (RecBole's full-sort protocol), optionally with a transform."""
    hits = {k: [] for k in ks}
    ndcg = {k: [] for k in ks}
    kmax = max(ks)
    for interaction, history_index, positive_u, positive_i in batches:
        scores = masked_scores(adapter, interaction, history_index, transform)
        top = scores.topk(kmax, dim=1).indices
        pos = torch.zeros_like(scores, dtype=torch.bool)
        pos[positive_u, positive_i] = True
        hit = pos.gather(1, top).float()
        npos = pos.sum(1)
        disc = 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float))
        for k in ks:
            hits[k].append(hit[:, :k].amax(1))
            idcg = torch.cumsum(disc, 0)[(npos.clamp(1, k) - 1)]
            ndcg[k].append((hit[:, :k] * disc[:k]).sum(1) / idcg)
    out = {}
    for k in ks:
        out[f"hit@{k}"] = round(float(torch.cat(hits[k]).mean()), 4)
        out[f"ndcg@{k}"] = round(float(torch.cat(ndcg[k]).mean()), 4)
    return out


# ----------------------------------------------------------------------------- SAE and dense AE
def sae_transform(sae, latent=None, scale=1.0):
    """Representation -> SAE reconstruction, with one latent's activation scaled where it is active."""

    def transform(x):
        acts, idx = sae.encode(x)
        if latent is not None:
            acts = torch.where(idx == latent, acts * scale, acts)
        return sae.decode(acts, idx)

    return transform


def identity_sae(d):
    """A TopKSAE that reconstructs exactly: 2d latents, rows +e_i and -e_i, k = 2d (ReLU keeps both signs)."""
    from recbole_saerec.intents.sae import TopKSAE

    sae = TopKSAE(d, 2 * d, 2 * d, tied=True)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([torch.eye(d), -torch.eye(d)]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


class DenseAE(nn.Module):
    """The dense baseline: ReLU(W_enc (x - b) + c) -> W_dec z + b, every latent active."""

    def __init__(self, d, n_latents):
        super().__init__()
        self.enc = nn.Linear(d, n_latents)
        self.dec = nn.Linear(n_latents, d)

    def forward(self, x):
        return self.dec(torch.relu(self.enc(x)))


def fvu(x, x_hat):
    return float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12))


def train_dense_ae(x, n_latents, steps, batch_size=1024, lr=1e-3, seed=0):
    """Same data, steps and batch size as the SAE; Adam on the FVU; returns (model, metrics)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n, d = x.shape
    model = DenseAE(d, n_latents)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s < 0.8 * steps else (steps - s) / (0.2 * steps))
    var = (x - x.mean(0)).pow(2).sum(1).mean()
    batch = min(batch_size, n)
    start = time.time()
    for _ in range(steps):
        xb = x[torch.randint(0, n, (batch,), generator=gen)]
        loss = (model(xb) - xb).pow(2).sum(1).mean() / var
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        x_hat = torch.cat([model(x[s:s + 4096]) for s in range(0, n, 4096)])
    return model, {"fvu": round(fvu(x, x_hat), 4), "steps": steps, "lr": lr, "n_latents": n_latents,
                   "train_seconds": round(time.time() - start, 2)}


# ----------------------------------------------------------------------------- units, concepts, verification
def sparse_codes(sae, x):
    """Active (case, latent, activation) triples of the SAE code, sorted by latent then activation desc."""
    acts, idx = sae.codes(x)
    k = idx.shape[1]
    case = np.repeat(np.arange(len(x)), k)
    lat, act = idx.reshape(-1).numpy(), acts.reshape(-1).numpy()
    keep = act > 0
    case, lat, act = case[keep], lat[keep], act[keep]
    order = np.lexsort((-act, lat))
    return case[order], lat[order], act[order]


def latent_segments(lat, n_latents):
    """Start/end of each latent's rows in the sorted triples."""
    bounds = np.searchsorted(lat, np.arange(n_latents + 1))
    return bounds[:-1], bounds[1:]


def top_unique_users(cases_sorted, users, n):
    """The first n cases (already sorted by activation, desc) with at most one case per user."""
    seen, out = set(), []
    for c in cases_sorted:
        u = users[c]
        if u in seen:
            continue
        seen.add(u)
        out.append(c)
        if len(out) == n:
            break
    return np.asarray(out, dtype=np.int64)


def top_items(top_lists, n_items=10):
    """The n most frequent items in a set of top-k lists (ties: first seen)."""
    items, counts = np.unique(top_lists.reshape(-1), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return items[order[:n_items]]


def similarity(item_emb, units_items):
    """(mean intra-unit, mean inter-unit) cosine of item embeddings, over units with >= 2 items."""
    e = torch.nn.functional.normalize(item_emb.float(), dim=1)
    groups = [np.asarray(g) for g in units_items if len(g) >= 2]
    if len(groups) < 2:
        return float("nan"), float("nan"), []
    means = torch.stack([e[torch.as_tensor(g)].mean(0) for g in groups])
    sizes = torch.tensor([len(g) for g in groups], dtype=torch.float)
    intra = (sizes ** 2 * means.pow(2).sum(1) - sizes) / (sizes * (sizes - 1))
    total = means.sum(0)
    u = len(groups)
    inter = (total.pow(2).sum() - means.pow(2).sum(1).sum()) / (u * (u - 1))
    return float(intra.mean()), float(inter), intra.tolist()


def presence(item_mask, lists):
    """Share of each list's items that match a concept ([n] floats)."""
    return item_mask[lists].mean(1) if len(lists) else np.zeros(0)


def verify_concept(item_mask, pos_lists, neg_lists, base_rate):
    """Predict 'activating' iff a case's presence > base_rate; confidence = accuracy on pos + neg cases.

    The project's one "does this concept predict activation" test
    (``recbole_saerec.intents.grounding.detection_score``, also the intent judge's
    grounding score); ``auroc`` is reported beside the accuracy.
    """
    from recbole_saerec.intents.grounding import detection_score

    out = detection_score(presence(item_mask, pos_lists), presence(item_mask, neg_lists), threshold=base_rate)
    return {"confidence": out["accuracy"], "auroc": out["auroc"], "tp": out["tp"], "tn": out["tn"],
            "n_pos": out["n_pos"], "n_neg": out["n_neg"]}


def term_concepts(docs, n_terms=3, item_texts=None, case_lists=None, min_support=0.0):
    """TF-IDF over one document per latent -> (up to n_terms terms per doc, fitted vectorizer).

    With ``case_lists`` (per doc: the [cases, 10] top lists it was written from)
    a term is eligible only if the lists of at least ``min_support`` of the
    cases contain it: a title word seen in one case's list is not the latent's
    concept. Eligible terms are ranked by their TF-IDF weight.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_][^\W\d_]+\b", sublinear_tf=True)
    weights = vec.fit_transform(docs).tocsr()
    vocab = vec.get_feature_names_out()
    items = item_term_matrix(item_texts, vec) if case_lists is not None and min_support > 0 else None
    out = []
    for r in range(weights.shape[0]):
        row = weights.getrow(r)
        cand, score = row.indices, row.data
        if items is not None and len(cand):
            lists = np.asarray(case_lists[r])
            present = items[lists.reshape(-1)][:, cand].toarray().reshape(lists.shape[0], lists.shape[1], -1)
            support = present.any(1).mean(0)
            cand, score = cand[support >= min_support], score[support >= min_support]
        order = np.argsort(-score, kind="stable")[:n_terms]
        out.append([str(vocab[cand[o]]) for o in order])
    return out, vec


def item_term_matrix(texts, vec):
    """[n_items, V] binary csr: which of the vectorizer's terms each item's text holds."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(vocabulary=vec.vocabulary_, binary=True, lowercase=True,
                           token_pattern=vec.token_pattern).fit_transform(list(texts)).tocsr()


def concept_masks(texts, vec, term_lists):
    """[n_concepts, n_items] bool: the item's text holds at least one of the concept's terms."""
    counts = item_term_matrix(texts, vec).tocsc()
    masks = np.zeros((len(term_lists), len(texts)), dtype=bool)
    for c, terms in enumerate(term_lists):
        cols = [vec.vocabulary_[t] for t in terms if t in vec.vocabulary_]
        if cols:
            masks[c] = np.asarray(counts[:, cols].sum(1)).ravel() > 0
    return masks


def lm_concepts(config, latent_words, judge=None, cache_path=None):
    """Sentence concepts through the intent module's judge backends (``make_judge(config)``).

    Each latent is described to the judge by its TF-IDF words (up to 10); the
    judge's ``summary`` is the sentence concept and its ``verdict`` is kept.
    Backend and model come from the ``judge_*`` keys (``--judge_backend``,
    ``--judge_model``, ``--judge_base_url``): an OpenAI-compatible server for a
    real LM; ``offline`` (the default) is a word-embedding rule, not an LM.
    """
    if judge is None:
        from recbole_saerec.intents.judge import make_judge

        judge = make_judge(config)
    results = judge.judge_many(latent_words, cache_path=cache_path, progress=False)
    return [{"lm_concept": r.get("summary", ""), "lm_verdict": r.get("verdict"), "judge": judge.name}
            for r in results]


# ----------------------------------------------------------------------------- the probe
def probe(checkpoint, out=None, latents_mult=16, n_latents=None, k=8, seed=2020, sae_steps=None,
          sae_batch_size=1024, tied=False, n_top=20, n_terms=3, min_support=0.25, n_verify=20, min_verify=5,
          heldout=0.2, tune_latents=10, scales=DEFAULT_SCALES, max_tune_cases=500, data_path=None, text_fields=None,
          max_cases=None, lm_concept=False, judge_options=None, batch_size=1024, progress=False, command=None,
          trust=False):
    """Run the whole probe; write the outputs to ``out`` and return the metrics dict."""
    from recbole.utils import init_seed

    from recbole_saerec.intents.sae_trainer import SAETrainer

    t0 = time.time()
    timings = {}
    logger = getLogger()
    config, dataset, train_data, test_data, model, ckpt_info = load_probed(checkpoint, data_path, judge_options,
                                                                            trust=trust)
    init_seed(seed, True)
    adapter = make_adapter(model)
    texts = item_text_array(config, dataset, text_fields)
    out = out or os.path.join("saved", f"probe-{config['dataset']}-{config['model']}")
    os.makedirs(out, exist_ok=True)
    timings["load"] = time.time() - t0

    # 1. representation over the training cases, and the model's top-10 for each
    t = time.time()
    reps, users, tops = collect_cases(adapter, train_data, batch_size, max_cases=max_cases, seed=seed)
    batches, test_reps = test_batches(adapter, test_data)
    first = batches[0][0]
    item_emb = adapter.item_matrix(first)
    s0, r0 = adapter.run(first)
    scoring_check = bool(torch.allclose(s0, r0 @ item_emb.T, rtol=1e-4, atol=1e-4))
    if not scoring_check:
        logger.warning("probe: scores != representation @ item_matrix.T; similarity uses the item matrix anyway")
    timings["collect"] = time.time() - t
    n, d = reps.shape
    m = int(n_latents or latents_mult * d)
    print(f"[probe] {config['model']} on {config['dataset']}: {n} training cases, d={d}, {len(test_reps)} test "
          f"cases; SAE {m} latents, k={k}")

    # 2. SAE and dense AE on the same data
    t = time.time()
    trainer = SAETrainer(m, k, tied=tied, batch_size=sae_batch_size, steps=sae_steps, seed=seed, device="cpu",
                         progress=progress)
    sae, sae_metrics = trainer.fit(reps)
    sae.eval()
    for p in sae.parameters():
        p.requires_grad_(False)
    frequency = np.asarray(sae_metrics.pop("frequency"))
    history = sae_metrics.pop("history")
    sae_metrics["history_last"] = history[-1] if history else None
    dense, dense_metrics = train_dense_ae(reps, m, sae_metrics["steps"], sae_metrics["batch_size"], seed=seed)
    timings["train_autoencoders"] = time.time() - t

    # 3. fit / held-out users; concepts from fit cases
    t = time.time()
    rng = np.random.default_rng(seed)
    uniq = np.unique(users)
    held_users = set(rng.choice(uniq, max(1, int(round(heldout * len(uniq)))), replace=False).tolist())
    held = np.array([u in held_users for u in users.tolist()])
    case, lat, act = sparse_codes(sae, reps)
    lo, hi = latent_segments(lat, m)
    fit_top, held_pos = {}, {}
    for j in range(m):
        cs = case[lo[j]:hi[j]]
        fit_top[j] = top_unique_users(cs[~held[cs]], users, n_top)
        held_pos[j] = top_unique_users(cs[held[cs]], users, n_verify)
    live = [j for j in range(m) if len(fit_top[j]) >= min_verify]
    docs = [" ".join(texts[tops[fit_top[j]].reshape(-1)]) for j in live]
    words, vec = (term_concepts(docs, max(n_terms, 10), texts, [tops[fit_top[j]] for j in live], min_support)
                  if live else ([], None))
    terms = [w[:n_terms] for w in words]
    masks = concept_masks(texts, vec, terms) if live else np.zeros((0, len(texts)), bool)
    fit_idx = np.flatnonzero(~held)
    base_sample = fit_idx if len(fit_idx) <= 20000 else rng.choice(fit_idx, 20000, replace=False)
    held_idx = np.flatnonzero(held)
    rows = []
    for c, j in enumerate(live):
        base_rate = float(presence(masks[c], tops[base_sample]).mean())
        pos = held_pos[j]
        if len(pos) >= min_verify and terms[c]:
            off = held_idx[~np.isin(held_idx, case[lo[j]:hi[j]])]
            neg = rng.choice(off, min(len(pos), len(off)), replace=False) if len(off) else np.zeros(0, int)
            ver = verify_concept(masks[c], tops[pos], tops[neg], base_rate)
        else:
            ver = {"confidence": float("nan"), "tp": 0, "tn": 0, "n_pos": len(pos), "n_neg": 0}
        ti = top_items(tops[fit_top[j]])
        rows.append({
            "latent": j, "frequency": round(float(frequency[j]), 5), "n_top_cases": int(len(fit_top[j])),
            "terms": terms[c], "item_share": round(float(masks[c].mean()), 4), "base_rate": round(base_rate, 4),
            "confidence": None if math.isnan(ver["confidence"]) else round(ver["confidence"], 4),
            "n_pos": ver["n_pos"], "n_neg": ver["n_neg"], "tp": ver["tp"], "tn": ver["tn"],
            "verified": bool(ver["n_pos"] >= min_verify and ver["confidence"] >= 0.8),
            "top_items": [str(texts[i])[:80] for i in ti[:5]], "_items": ti,
        })
    timings["concepts"] = time.time() - t

    # 4. similarity: SAE latents vs raw dimensions
    t = time.time()
    intra, inter, per_unit = similarity(item_emb, [r["_items"] for r in rows])
    for r, v in zip([r for r in rows if len(r["_items"]) >= 2], per_unit):
        r["intra_sim"] = round(v, 4)
    base_items = []
    for i in range(d):
        order = np.argsort(-reps[:, i].numpy(), kind="stable")
        order = order[~held[order]]
        base_items.append(top_items(tops[top_unique_users(order, users, n_top)]))
    b_intra, b_inter, _ = similarity(item_emb, base_items)
    sim = {"sae_intra": round(intra, 4), "sae_inter": round(inter, 4), "base_intra": round(b_intra, 4),
           "base_inter": round(b_inter, 4), "n_sae_units": len(rows), "n_base_units": d,
           "top_items_per_unit": 10, "top_cases_per_unit": n_top}
    timings["similarity"] = time.time() - t

    # 5. recommendation quality with the representation replaced
    t = time.time()
    with torch.no_grad():
        quality = {
            "original": evaluate(adapter, batches),
            "sae_reconstruction": evaluate(adapter, batches, sae_transform(sae)),
            "dense_ae_reconstruction": evaluate(adapter, batches, lambda x: dense(x)),
            "test_fvu_sae": round(fvu(test_reps, sae_transform(sae)(test_reps)), 4),
            "test_fvu_dense_ae": round(fvu(test_reps, dense(test_reps)), 4),
        }
    timings["quality"] = time.time() - t

    # 6. targeted tuning on the test cases where the latent is active
    t = time.time()
    t_case, t_lat, _ = sparse_codes(sae, test_reps)
    t_lo, t_hi = latent_segments(t_lat, m)
    by_latent = {r["latent"]: c for c, r in enumerate(rows)}
    candidates = [r for r in rows if (t_hi[r["latent"]] - t_lo[r["latent"]]) >= min_verify
                  and r["confidence"] is not None]
    candidates.sort(key=lambda r: (-(r["confidence"] or 0), -(t_hi[r["latent"]] - t_lo[r["latent"]])))
    tuned = [r["latent"] for r in candidates[:tune_latents]]
    offsets = np.cumsum([0] + [len(b[0]) for b in batches])
    tuning_rows = []
    for j in tuned:
        cases_j = np.sort(t_case[t_lo[j]:t_hi[j]])[:max_tune_cases]
        others = [by_latent[o] for o in tuned if o != j]
        for s in scales:
            lists = []
            for b, (interaction, history_index, _pu, _pi) in enumerate(batches):
                sel = cases_j[(cases_j >= offsets[b]) & (cases_j < offsets[b + 1])] - offsets[b]
                if len(sel) == 0:
                    continue
                scores = masked_scores(adapter, interaction, history_index, sae_transform(sae, j, float(s)))
                lists.append(scores[torch.as_tensor(sel)].topk(10, dim=1).indices.numpy())
            lists = np.concatenate(lists)
            own = float(presence(masks[by_latent[j]], lists).mean())
            other = float(np.mean([presence(masks[o], lists).mean() for o in others])) if others else float("nan")
            tuning_rows.append({"latent": j, "scale": s, "n_cases": len(lists), "own_presence": round(own, 4),
                                "other_presence": round(other, 4)})
    tuning_summary = {}
    for s in scales:
        sel = [r for r in tuning_rows if r["scale"] == s]
        if sel:
            tuning_summary[str(s)] = {"own_presence": round(float(np.mean([r["own_presence"] for r in sel])), 4),
                                      "other_presence": round(float(np.nanmean([r["other_presence"] for r in sel])), 4)}
    timings["tuning"] = time.time() - t

    if lm_concept and rows:
        for r, lm in zip(rows, lm_concepts(config, words, cache_path=os.path.join(out, "judge_cache.jsonl"))):
            r.update(lm)

    verifiable = [r for r in rows if r["n_pos"] >= min_verify]
    metrics = {
        "command": command, "checkpoint": ckpt_info, "model": config["model"], "dataset": config["dataset"],
        "family": adapter.family, "representation_dim": d, "n_training_cases": n, "n_test_cases": len(test_reps),
        "n_fit_cases": int((~held).sum()), "n_heldout_cases": int(held.sum()), "scoring_check": scoring_check,
        "options": {"latents_mult": latents_mult, "n_latents": m, "k": k, "seed": seed, "sae_steps": sae_steps,
                    "sae_batch_size": sae_batch_size, "tied": tied, "n_top": n_top, "n_terms": n_terms,
                    "min_support": min_support,
                    "n_verify": n_verify, "min_verify": min_verify, "heldout": heldout,
                    "tune_latents": tune_latents, "scales": list(scales), "max_tune_cases": max_tune_cases,
                    "max_cases": max_cases, "text_fields": list(config["intent_item_text_fields"] or []),
                    "concept_items": "the model's top-10 recommendations for the latent's top cases",
                    "verification_rule": "activating iff presence of the concept terms in the case's top-10 > "
                                         "the concept's base rate over fit cases"},
        "sae": sae_metrics, "dense_ae": dense_metrics,
        "concepts": {"n_latents": m, "n_with_concept": len(rows), "n_verifiable": len(verifiable),
                     "n_verified": sum(r["verified"] for r in rows),
                     "mean_confidence": round(float(np.mean([r["confidence"] for r in verifiable])), 4)
                     if verifiable else None},
        "similarity": sim, "quality": quality,
        "tuning": {"latents": tuned, "summary": tuning_summary},
        "versions": _versions(), "machine": _machine(),
        "timings_s": {k_: round(v, 1) for k_, v in timings.items()} | {"total": round(time.time() - t0, 1)},
    }
    write_outputs(out, rows, metrics, tuning_rows)
    return metrics


def _versions():
    import recbole
    import sklearn

    return {"python": platform.python_version(), "torch": torch.__version__, "recbole": recbole.__version__,
            "numpy": np.__version__, "sklearn": sklearn.__version__}


def _machine():
    return {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}


# ----------------------------------------------------------------------------- outputs
def write_outputs(out, rows, metrics, tuning_rows):
    table = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    with open(os.path.join(out, "concepts.json"), "w") as f:
        json.dump(table, f, indent=1)
    fields = ["latent", "frequency", "n_top_cases", "terms", "item_share", "base_rate", "confidence", "n_pos",
              "n_neg", "verified", "intra_sim", "top_items"] + (["lm_concept", "lm_verdict"]
                                                                 if any("lm_concept" in r for r in table) else [])
    with open(os.path.join(out, "concepts.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in table:
            w.writerow({**r, "terms": " | ".join(r["terms"]), "top_items": " || ".join(r["top_items"])})
    ranked = sorted(table, key=lambda r: (-(r["confidence"] or -1), -r["frequency"]))
    c = metrics["concepts"]
    with open(os.path.join(out, "concepts.md"), "w") as f:
        f.write(f"# Concepts: {metrics['model']} on {metrics['dataset']}\n\n"
                f"{c['n_with_concept']} latents with a concept (of {c['n_latents']}), {c['n_verifiable']} "
                f"verifiable, **{c['n_verified']} verified** (confidence >= 0.8). Top 40 by confidence; all in "
                f"concepts.csv.\n\n| latent | terms | confidence | pos/neg | freq | top items |\n"
                f"| --- | --- | --- | --- | --- | --- |\n")
        for r in ranked[:40]:
            items = "; ".join(t.replace("|", "/") for t in r["top_items"][:3])
            f.write(f"| {r['latent']} | {', '.join(r['terms'])} | {r['confidence']} | {r['n_pos']}/{r['n_neg']} | "
                    f"{r['frequency']} | {items} |\n")
    with open(os.path.join(out, "tuning.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["latent", "scale", "n_cases", "own_presence", "other_presence"])
        w.writeheader()
        w.writerows(tuning_rows)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1, default=_plain)
    _plots(out, table, metrics, tuning_rows)


def _plots(out, table, metrics, tuning_rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = [r["confidence"] for r in table if r["confidence"] is not None]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(conf, bins=np.linspace(0, 1, 21), color="#4C72B0")
    ax.axvline(0.8, color="k", ls="--", lw=1)
    ax.set_xlabel("concept confidence (accuracy)")
    ax.set_ylabel("latents")
    ax.set_title(f"{metrics['model']} / {metrics['dataset']}: {metrics['concepts']['n_verified']} verified")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "confidence_hist.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for j in sorted({r["latent"] for r in tuning_rows}):
        rs = [r for r in tuning_rows if r["latent"] == j]
        ax.plot([r["scale"] for r in rs], [r["own_presence"] for r in rs], color="#C44E52", alpha=0.25, lw=0.8)
    summ = metrics["tuning"]["summary"]
    if summ:
        xs = [float(s) for s in summ]
        ax.plot(xs, [v["own_presence"] for v in summ.values()], "o-", color="#C44E52", label="its own concept")
        ax.plot(xs, [v["other_presence"] for v in summ.values()], "s-", color="#4C72B0", label="other concepts")
    ax.set_xlabel("scale of one latent's activation")
    ax.set_ylabel("presence in top-10")
    ax.set_title(f"Targeted tuning: {metrics['model']} / {metrics['dataset']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "tuning_curves.png"), dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- CLI
def _bool(v):
    return str(v).lower() in ("1", "true", "yes", "y")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recbole_saerec.analysis.probe", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_args(parser, "a RecBole or plugin model")
    parser.add_argument("--latents_mult", type=int, default=16, help="SAE latents = this x the model dimension")
    parser.add_argument("--n_latents", type=int, default=None, help="SAE latents (overrides --latents_mult)")
    parser.add_argument("--k", type=int, default=8, help="active latents per case")
    parser.add_argument("--out", default=None, help="output folder (default saved/probe-<dataset>-<model>)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--sae_steps", type=int, default=None, help="SAE (and dense AE) steps; default: trainer's")
    parser.add_argument("--sae_batch_size", type=int, default=1024)
    parser.add_argument("--tied", type=_bool, default=False, help="tied SAE decoder (default: untied, as RecSAE)")
    parser.add_argument("--n_top", type=int, default=20, help="top cases per latent for concepts/similarity")
    parser.add_argument("--n_terms", type=int, default=3, help="TF-IDF terms per concept")
    parser.add_argument("--min_support", type=float, default=0.25,
                        help="a concept term must occur in the top-10 lists of this share of the top cases")
    parser.add_argument("--n_verify", type=int, default=20, help="held-out activating cases per latent (max)")
    parser.add_argument("--min_verify", type=int, default=5, help="fewest held-out activating cases to verify")
    parser.add_argument("--heldout", type=float, default=0.2, help="share of users held out for verification")
    parser.add_argument("--tune_latents", type=int, default=10, help="latents to tune (highest confidence)")
    parser.add_argument("--scales", default=",".join(str(s) for s in DEFAULT_SCALES))
    parser.add_argument("--max_tune_cases", type=int, default=500)
    parser.add_argument("--max_cases", type=int, default=None, help="subsample training cases (large data)")
    parser.add_argument("--data_path", default=None, help="folder holding <dataset>/ (default: the checkpoint's)")
    parser.add_argument("--text_fields", default=None, help="comma-separated .item columns (default: "
                                                            "intent_item_text_fields of the dataset yaml)")
    parser.add_argument("--lm_concept", type=_bool, default=False, help="sentence concepts via the judge backends")
    parser.add_argument("--judge_backend", default=None, help="offline | openai | llama_cpp (intents/judge.py)")
    parser.add_argument("--judge_model", default=None)
    parser.add_argument("--judge_base_url", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--progress", type=_bool, default=False)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = probe(
        args.checkpoint, out=args.out, latents_mult=args.latents_mult, n_latents=args.n_latents, k=args.k,
        seed=args.seed, sae_steps=args.sae_steps, sae_batch_size=args.sae_batch_size, tied=args.tied,
        n_top=args.n_top, n_terms=args.n_terms, min_support=args.min_support, n_verify=args.n_verify,
        min_verify=args.min_verify,
        heldout=args.heldout, tune_latents=args.tune_latents,
        scales=[float(s) if "." in s else int(s) for s in args.scales.split(",")],
        max_tune_cases=args.max_tune_cases, max_cases=args.max_cases, data_path=args.data_path,
        text_fields=args.text_fields.split(",") if args.text_fields else None, lm_concept=args.lm_concept,
        judge_options={k: v for k in ("judge_backend", "judge_model", "judge_base_url")
                       if (v := getattr(args, k)) is not None},
        progress=args.progress, trust=args.trust_checkpoint,
        command="python -m recbole_saerec.analysis.probe " + " ".join(argv or sys.argv[1:]))
    summary = {key: metrics[key] for key in ("concepts", "similarity", "quality")}
    summary["tuning"] = metrics["tuning"]["summary"]
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m recbole_saerec.analysis.probe"))
