"""Artefacts and caches carry content hashes checked on load; writes are atomic; builds and
encodings on one cache are safe to run together. Tiny data, no real encoder."""
import json
import multiprocessing
import os
import stat
import time

import numpy as np
import pytest
import torch

from conftest import base_config, write_fake_intents, write_tiny_dataset
from recbole_saerec import fileio
from recbole_saerec.artefacts import INTENTS, MANIFEST, IntentArtefactError, load_artefacts
from recbole_saerec.fileio import file_sha256, save_tensor_file_atomic, write_json_atomic
from recbole_saerec.intents.encode import encode_cached

TOKENS = [f"i{i}" for i in range(1, 31)]


@pytest.fixture
def built(tmp_path):
    out = str(tmp_path / "intents")
    write_fake_intents(out)
    load_artefacts(out, "tiny", item_tokens=TOKENS)  # loads before any damage
    return out


def test_same_size_overwrite_of_intents_pt_is_detected(built):
    path = os.path.join(built, INTENTS)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(256))
    assert os.path.getsize(path) == size
    with pytest.raises(IntentArtefactError, match="intents.pt .* differs from the file the build wrote"):
        load_artefacts(built, "tiny", item_tokens=TOKENS)


def test_truncated_intents_pt_gives_a_clear_message(built):
    path = os.path.join(built, INTENTS)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 3)
    with pytest.raises(IntentArtefactError, match="truncated"):
        load_artefacts(built, "tiny", item_tokens=TOKENS)
    # an older build without recorded hashes: torch's own error is translated, not passed through
    manifest_path = os.path.join(built, MANIFEST)
    with open(manifest_path) as f:
        manifest = json.load(f)
    del manifest["sha256"]
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    with pytest.raises(IntentArtefactError, match="intents.pt cannot be read as a tensor file.*truncated"):
        load_artefacts(built, "tiny", item_tokens=TOKENS)


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / "x.pt")
    save_tensor_file_atomic(path, {"v": torch.ones(3)})

    def dies_half_way(obj, f):
        f.write(b"partial")
        f.flush()
        raise KeyboardInterrupt  # a kill in the middle of the write

    monkeypatch.setattr(fileio.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_tensor_file_atomic(path, {"v": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.ones(3))
    assert os.listdir(tmp_path) == ["x.pt"]  # no stray temporary


def test_identical_saves_are_identical_files(tmp_path):
    """The manifest's sha256 shows that two builds are the same only if the same content gives the
    same bytes: torch.save given a path stores that path's (temporary, unique) name in the archive."""
    obj = {"vectors": torch.arange(6.0).reshape(2, 3), "latent_ids": torch.arange(2), "fingerprint": {"k": 3}}
    save_tensor_file_atomic(str(tmp_path / "a.pt"), obj)
    save_tensor_file_atomic(str(tmp_path / "b.pt"), obj)
    assert file_sha256(tmp_path / "a.pt") == file_sha256(tmp_path / "b.pt")


def test_two_identical_builds_record_the_same_hashes(tmp_path):
    manifests = []
    for name in ("one", "two"):
        write_fake_intents(str(tmp_path / name))
        with open(tmp_path / name / MANIFEST) as f:
            manifests.append(json.load(f)["sha256"])
    assert manifests[0] == manifests[1]


def test_atomic_writes_get_the_mode_a_plain_write_gets(tmp_path):
    # mkstemp alone makes 0600 files: records and intents unreadable to a group or another user
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    atomic = str(tmp_path / "atomic.json")
    write_json_atomic(atomic, {})
    assert stat.S_IMODE(os.stat(atomic).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


# ----------------------------------------------------------------------------- embedding cache
class FakeEncoder:
    """Deterministic vectors; like TextEncoder its values may depend on the chunking (here: they do not)."""
    name, bf16, dim = "fake", False, 3

    def __init__(self, log_path=None, delay=0.0):
        self.n_encoded, self.log_path, self.delay = 0, log_path, delay

    def key(self):
        return {"encoder": self.name, "batch_size": 2}

    def check_bf16(self, texts):
        return False

    def encode(self, texts):
        time.sleep(self.delay)
        self.n_encoded += len(texts)
        if self.log_path:
            with open(self.log_path, "a") as f:
                f.write(f"{len(texts)}\n")
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], dtype=np.float32)


TEXTS = [f"text number {n} " + "x" * (n % 7) for n in range(40)]


def test_rerun_with_another_chunk_size_after_an_interruption(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")

    class Dies(FakeEncoder):
        def encode(self, texts):
            if self.n_encoded:
                raise KeyboardInterrupt
            return super().encode(texts)

    with pytest.raises(KeyboardInterrupt):
        encode_cached(Dies(), TEXTS, cache, chunk_size=8, progress=False)
    out = encode_cached(FakeEncoder(), TEXTS, cache, chunk_size=16, progress=False)  # was: shape mismatch
    assert np.array_equal(out, FakeEncoder().encode(TEXTS))
    assert len([d for d in os.listdir(cache) if d.startswith("emb-")]) == 2  # one key per chunk size


def test_damaged_embedding_cache_is_encoded_again(tmp_path, caplog):
    cache = str(tmp_path / "cache")
    first = encode_cached(FakeEncoder(), TEXTS, cache, chunk_size=16, progress=False)
    (folder,) = [os.path.join(cache, d) for d in os.listdir(cache)]
    final = os.path.join(folder, "embeddings.npy")
    with open(final, "r+b") as f:
        f.seek(os.path.getsize(final) - 64)
        f.write(b"\x7f" * 64)  # same size, other numbers
    enc = FakeEncoder()
    with caplog.at_level("WARNING"):  # whatever level an earlier run in this process left the root logger at
        again = encode_cached(enc, TEXTS, cache, chunk_size=16, progress=False)
    assert enc.n_encoded == len(TEXTS) and np.array_equal(again, first)
    assert "damaged or unverifiable" in caplog.text
    enc = FakeEncoder()
    encode_cached(enc, TEXTS, cache, chunk_size=16, progress=False)
    assert enc.n_encoded == 0  # repaired cache is trusted again


def _encode_in_child(cache, log_path, queue):
    out = encode_cached(FakeEncoder(log_path, delay=0.05), TEXTS, cache, chunk_size=4, progress=False)
    queue.put(out.tolist())


def test_two_processes_on_one_cache(tmp_path):
    cache, log_path = str(tmp_path / "cache"), str(tmp_path / "calls.log")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_encode_in_child, args=(cache, log_path, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1] == FakeEncoder().encode(TEXTS).tolist()
    with open(log_path) as f:
        assert sum(int(n) for n in f) == len(TEXTS)  # encoded once: the second waited, then read


# ----------------------------------------------------------------------------- texts changed after the build
def _dataset_with_built_intents(tmp_path, autobuild=False):
    """The tiny dataset (titles + a price column) and artefacts whose manifest records its real corpus."""
    from recbole.data import create_dataset

    from recbole_saerec.config import Config
    from recbole_saerec.intents.build import source_hashes
    from recbole_saerec.intents.corpus import build_corpus

    root = str(tmp_path / "data")
    write_tiny_dataset(root)
    item_path = os.path.join(root, "tiny", "tiny.item")
    with open(item_path) as f:
        lines = f.read().splitlines()
    with open(item_path, "w") as f:
        f.write("\n".join([lines[0] + "\tprice:float"] + [ln + "\t9.5" for ln in lines[1:]]) + "\n")
    cfg = base_config(root, intent_dir=os.path.join(root, "intents"), intent_corpus="items",
                      intent_item_text_fields=["title"], intent_autobuild=autobuild)
    config = Config(model="SAERec", dataset="tiny", config_dict=cfg)
    write_fake_intents(cfg["intent_dir"])
    manifest_path = os.path.join(cfg["intent_dir"], MANIFEST)
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest["fingerprint"]["corpus_sha1"] = build_corpus(config, create_dataset(config)).sha1
    manifest["sources"] = source_hashes(config, "items")
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    return config, cfg, item_path, manifest_path


def _no_rebuild(config, intent_dir):
    pytest.fail(f"rebuilt {intent_dir} although intent_autobuild is off")


def _edit(path, old, new):
    with open(path) as f:
        text = f.read()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new))


def test_item_texts_changed_after_the_build_are_refused(tmp_path):
    from recbole_saerec.quick_start import prepare

    config, cfg, item_path, manifest_path = _dataset_with_built_intents(tmp_path)
    prepare("SAERec", "tiny", config_dict=cfg)  # unchanged: runs
    _edit(item_path, "skincare product number 1\t", "haircare product number 1\t")
    with pytest.raises(IntentArtefactError, match=r"tiny\.item changed after the intent build.*texts differ"):
        prepare("SAERec", "tiny", config_dict=cfg)


def test_a_non_text_edit_passes_and_is_recorded(tmp_path):
    from recbole_saerec.intents.build import check_intent_sources

    config, cfg, item_path, manifest_path = _dataset_with_built_intents(tmp_path)
    _edit(item_path, "\t9.5\n", "\t10.5\n")  # prices only: the corpus (titles) is the same
    check_intent_sources(config, cfg["intent_dir"], _no_rebuild)
    with open(manifest_path) as f:
        recorded = json.load(f)["sources"]["tiny.item"]
    assert recorded == file_sha256(item_path)


def test_changed_texts_rebuild_when_autobuild_is_on(tmp_path):
    from recbole_saerec.intents.build import check_intent_sources

    config, cfg, item_path, _ = _dataset_with_built_intents(tmp_path, autobuild=True)
    calls = []
    _edit(item_path, "makeup product number 2\t", "nail product number 2\t")
    check_intent_sources(config, cfg["intent_dir"], lambda config, intent_dir: calls.append(intent_dir))
    assert calls == [cfg["intent_dir"]]


# ----------------------------------------------------------------------------- build settings changed
def _config_over_fake_build(tmp_path, explicit_dir, **overrides):
    from recbole_saerec.artefacts import resolve_intent_dir
    from recbole_saerec.config import Config

    root = str(tmp_path / "data")
    write_tiny_dataset(root)
    cfg = base_config(root, intent_root=str(tmp_path / "intent_root"), **overrides)
    if not explicit_dir:
        cfg["intent_dir"] = None  # found through intent_root / intent_tag
    config = Config(model="SAERec", dataset="tiny", config_dict=cfg)
    write_fake_intents(resolve_intent_dir(config), keep="yes")  # fingerprint: keep 'yes', method 'sae', k 3
    return config


def test_a_build_made_with_another_keep_rule_is_refused(tmp_path):
    from recbole_saerec.artefacts import resolve_intent_dir
    from recbole_saerec.intents.build import check_build_settings

    config = _config_over_fake_build(tmp_path, explicit_dir=False, intent_keep="none")
    with pytest.raises(IntentArtefactError, match=r"other settings: intent_keep='none' \(built with 'yes'\)"):
        check_build_settings(config, resolve_intent_dir(config), _no_rebuild)
    config = _config_over_fake_build(tmp_path / "k", explicit_dir=False, sae_k=8)
    with pytest.raises(IntentArtefactError, match=r"sae_k=8 \(built with 3\)"):
        check_build_settings(config, resolve_intent_dir(config), _no_rebuild)
    same = _config_over_fake_build(tmp_path / "same", explicit_dir=False, intent_keep="yes", sae_k=3)
    check_build_settings(same, resolve_intent_dir(same), _no_rebuild)  # the settings it was built with: no complaint


def test_an_explicit_intent_dir_is_checked_only_on_the_settings_the_user_set(tmp_path):
    from recbole_saerec.intents.build import check_build_settings

    config = _config_over_fake_build(tmp_path, explicit_dir=True)
    config["intent_keep"] = "none"  # a default the user did not set: their directory is their choice
    check_build_settings(config, config["intent_dir"], _no_rebuild)
    config = _config_over_fake_build(tmp_path / "set", explicit_dir=True, intent_keep="none")
    with pytest.raises(IntentArtefactError, match=r"intent_keep='none'"):
        check_build_settings(config, config["intent_dir"], _no_rebuild)


def test_changed_build_settings_rebuild_when_autobuild_is_on(tmp_path):
    from recbole_saerec.artefacts import resolve_intent_dir
    from recbole_saerec.intents.build import check_build_settings

    config = _config_over_fake_build(tmp_path, explicit_dir=False, intent_keep="maybe", intent_autobuild=True)
    calls = []
    check_build_settings(config, resolve_intent_dir(config), lambda config, intent_dir: calls.append(intent_dir))
    assert calls == [resolve_intent_dir(config)]
