"""Shared fixtures: a tiny RecBole dataset and hand-made intent artefacts, written per test session."""
import os
import random
import sys

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

N_USERS, N_ITEMS, N_INTENTS, TEXT_DIM = 40, 30, 12, 16
GENRES = ["skincare", "makeup", "haircare"]


def write_tiny_dataset(root, name="tiny", n_users=N_USERS, n_items=N_ITEMS, seed=0):
    """Users walk mostly within one of three item groups, so sequence models can learn something."""
    rng = random.Random(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    groups = [list(range(g + 1, n_items + 1, 3)) for g in range(3)]
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u in range(1, n_users + 1):
            group = groups[u % 3]
            length = rng.randint(6, 12)
            start = rng.randrange(len(group))
            for t in range(length):
                item = group[(start + t) % len(group)] if rng.random() < 0.85 else rng.randint(1, n_items)
                f.write(f"u{u}\ti{item}\t{1000 * u + t}\n")
    with open(os.path.join(folder, f"{name}.item"), "w") as f:
        f.write("item_id:token\ttitle:token_seq\n")
        for i in range(1, n_items + 1):
            f.write(f"i{i}\t{GENRES[(i - 1) % 3]} product number {i}\n")
    return root


def default_keep_rule():
    """SAERec.yaml's intent_keep: a hand-made build counts as one made with the default keep rule."""
    import yaml

    from recbole_saerec.settings import PROPERTIES_DIR

    with open(os.path.join(PROPERTIES_DIR, "model", "SAERec.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["intent_keep"]


def write_fake_intents(intent_dir, dataset="tiny", n_items=N_ITEMS, m=N_INTENTS, dim=TEXT_DIM, seed=0,
                       encoder="test-encoder", vectors=None, k=3, keep=None):
    from recbole_saerec.artefacts import items_sha1, save_artefacts

    g = torch.Generator().manual_seed(seed)
    tokens = [f"i{i}" for i in range(1, n_items + 1)]
    vectors = torch.randn(m, dim, generator=g) if vectors is None else vectors
    r = 3
    indices = torch.stack([torch.randperm(m, generator=g)[:r] for _ in tokens])
    values = torch.rand(len(tokens), r, generator=g)
    indices[0] = -1  # an item without text
    values[0] = 0
    fingerprint = {"dataset": dataset, "items_sha1": items_sha1(tokens), "n_items": len(tokens),
                   "encoder": encoder, "layer": None, "pooling": "mean", "corpus_sha1": "test",
                   "method": "sae", "n_latents": m, "k": k,
                   "keep": default_keep_rule() if keep is None else keep, "judge": "test"}
    catalogue = [{"row": j, "latent_id": j, "words": [f"w{j}a", f"w{j}b"], "summary": f"theme {j}",
                  "verdict": "Yes", "frequency": 0.1} for j in range(vectors.shape[0])]
    save_artefacts(intent_dir, fingerprint, vectors, torch.arange(vectors.shape[0]), tokens, indices, values,
                   catalogue)
    return intent_dir


@pytest.fixture(autouse=True)
def plain_command_line(monkeypatch):
    """Every test sees the command line of a plain script, not pytest's.

    RecBole's Config reads sys.argv: pytest's own flags (``-k clean``, ``--tb=short``) were warned about,
    and any ``--opt=value`` became a config key of every Config a test built.
    """
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("data"))
    write_tiny_dataset(root)
    write_fake_intents(os.path.join(root, "intents"))
    return root


def base_config(root, tmp_path=None, **overrides):
    cfg = {
        "data_path": root, "use_gpu": False, "show_progress": False, "state": "ERROR", "epochs": 1,
        "train_batch_size": 64, "eval_batch_size": 64, "seed": 7, "reproducibility": True,
        "checkpoint_dir": str(tmp_path or os.path.join(root, "saved")), "intent_dir": os.path.join(root, "intents"),
        "intent_autobuild": False, "intent_encoder": "test-encoder", "hidden_size": 16, "inner_size": 32,
        "n_heads": 2, "n_layers": 1, "MAX_ITEM_LIST_LENGTH": 10, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "save_dataset": False, "save_dataloaders": False, "log_wandb": False,
    }
    cfg.update(overrides)
    return cfg


def seed_all(seed=0):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
