"""Cases: the probed checkpoint, its training cases (representation, user, top-10) and test batches.

Also the full-sort HR/NDCG the quality step compares representations with (RecBole's
protocol: padding and, for general models, training items masked).
"""
import math
import os

import numpy as np
import torch

from recbole_saerec.analysis.probe.adapters import SequentialAdapter
from recbole_saerec.metrics import hit_ndcg_per_user
from recbole_saerec.trainer import mask_seen_items


# ----------------------------------------------------------------------------- loading
def load_probed(checkpoint, data_path=None, overrides=None, trust=False):
    """(config, dataset, train_data, test_data, frozen model) from a RecBole or plugin checkpoint.

    `checkpoint`: a .pth or a benchmark run folder holding one; `trust`: allow a full pickled
    checkpoint (see recbole_saerec.analysis.checkpoints).
    """
    from recbole.utils import init_seed

    from recbole_saerec.analysis.checkpoints import check_checkpoint_fits, checkpoint_config, read_checkpoint
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
    check_checkpoint_fits(ckpt, config)
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
            "best_valid_score": json_value(ckpt.get("best_valid_score"))}
    return config, dataset, train_data, test_data, model, info


def json_value(v):
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
    """Scores ranked as the trainer's evaluation ranks them: padding, a general model's history, and
    (``mask_history`` in the run's config) a sequential model's input-sequence items at -inf."""
    scores, _ = adapter.run(interaction, transform)
    scores = scores.clone()
    scores[:, 0] = -math.inf
    if history_index is not None:
        scores[history_index] = -math.inf
    return scores if adapter.config is None else mask_seen_items(scores, interaction, adapter.config)


@torch.no_grad()
def evaluate(adapter, batches, transform=None, ks=(10, 20)):
    """HR@K and NDCG@K over full rankings (RecBole's full-sort protocol), optionally with a transform."""
    flags, n_pos = [], []
    for interaction, history_index, positive_u, positive_i in batches:
        scores = masked_scores(adapter, interaction, history_index, transform)
        pos = torch.zeros_like(scores, dtype=torch.bool)
        pos[positive_u, positive_i] = True
        flags.append(pos.gather(1, scores.topk(max(ks), dim=1).indices))
        n_pos.append(pos.sum(1))
    per_user = hit_ndcg_per_user(torch.cat(flags).numpy(), torch.cat(n_pos).numpy(), ks)
    return {key: round(float(values.mean()), 4) for key, values in per_user.items()}

