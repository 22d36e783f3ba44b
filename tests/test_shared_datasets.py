"""Amazon Toys and Sports from the shared raw files: prepare (whole), then the intent build and one
SAERec epoch on a slice of their users (the real text and ids, at a size the suite can afford).

Skipped, with the reason, where the shared data is absent (<repo>/../shared/datasets or
$RECBOLE_SAEREC_SHARED/datasets).
"""
import os

import pytest

from recbole_saerec.data.prepare_amazon import prepare
from recbole_saerec.data.prepare_amazon.inputs import default_raw_dir

PAPER_COUNTS = {"amazon-toys": (19412, 11924, 167597), "amazon-sports": (35598, 18357, 296337)}
SEQUENCE_FILES = {"amazon-toys": "Toys_and_Games.txt", "amazon-sports": "Sports_and_Outdoors.txt"}
N_USERS = 120  # the slice: users' whole sequences, every item they touch with its real text


def _absent(dataset):
    return not os.path.isfile(os.path.join(default_raw_dir(dataset), SEQUENCE_FILES[dataset]))


def _slice(src, dst, dataset, n_users):
    """The first `n_users` users of a prepared dataset (whole sequences) and the items they touch."""
    os.makedirs(os.path.join(dst, dataset), exist_ok=True)
    users, items = [], set()
    with open(os.path.join(src, dataset, f"{dataset}.inter"), encoding="utf-8") as f, \
            open(os.path.join(dst, dataset, f"{dataset}.inter"), "w", encoding="utf-8") as out:
        header = f.readline()
        out.write(header)
        cols = [h.split(":")[0] for h in header.rstrip("\n").split("\t")]
        u_col, i_col = cols.index("user_id"), cols.index("item_id")
        for line in f:
            row = line.rstrip("\n").split("\t")
            if row[u_col] not in users:
                if len(users) == n_users:
                    continue
                users.append(row[u_col])
            items.add(row[i_col])
            out.write(line)
    with open(os.path.join(src, dataset, f"{dataset}.item"), encoding="utf-8") as f, \
            open(os.path.join(dst, dataset, f"{dataset}.item"), "w", encoding="utf-8") as out:
        out.write(f.readline())
        out.writelines(line for line in f if line.split("\t", 1)[0] in items)
    return len(users), len(items)


@pytest.mark.parametrize("dataset", ["amazon-toys", "amazon-sports"])
def test_prepare_intents_and_one_saerec_epoch(dataset, tmp_path):
    if _absent(dataset):
        pytest.skip(f"shared {dataset} data absent (<repo>/../shared/datasets or $RECBOLE_SAEREC_SHARED)")
    from recbole_saerec.quick_start import run

    full = tmp_path / "full"
    summary = prepare(dataset=dataset, out=str(full), show_progress=False, log=lambda *a: None)
    users, items, interactions = PAPER_COUNTS[dataset]
    assert summary["counts"] == {"users": users, "items": items, "interactions": interactions}
    assert summary["matches_paper"] is True and summary["corpus"] == "item_text"
    assert summary["sequence_coherence"]["ratio"] > 5  # measured 6.8 (Toys) and 8.4 (Sports)

    sliced = tmp_path / "slice"
    n_users, n_items = _slice(str(full), str(sliced), dataset, N_USERS)
    assert n_users == N_USERS and n_items > 300
    result = run(model="SAERec", dataset=dataset, config_dict={
        "data_path": str(sliced), "intent_root": str(tmp_path / "intents"), "checkpoint_dir": str(tmp_path / "saved"),
        "epochs": 1, "show_progress": False, "state": "ERROR", "train_batch_size": 128, "eval_batch_size": 256,
        "sae_n_latents": 64, "sae_steps": 100, "grounding_background": 64, "log_dir": None, "tensorboard_dir": None})
    assert set(result["test_result"]) >= {"hit@10", "ndcg@10"}
    manifest_dir = tmp_path / "intents" / dataset / "default"
    import json

    manifest = json.loads((manifest_dir / "manifest.json").read_text())
    assert manifest["fingerprint"]["dataset"] == dataset and manifest["stats"]["n_kept"] > 0
    assert manifest["stats"]["corpus"]["items_covered"] == n_items  # every item of the slice has its text
