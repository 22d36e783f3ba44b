"""Hostile inputs a new user may give, each refused early with one clear line (docs/hardening.md).

Tiny data the tests write; the cases on the shared Amazon files are in test_data_prepare.py.
"""
import os

import pytest
import torch

from recbole_saerec import cli
from recbole_saerec.artefacts import DamagedFileError, save_tensor_file_atomic
from recbole_saerec.trainer import load_checkpoint


class _Opaque:  # an object the weights-only loader cannot rebuild without running pickle code
    pass


def _plain_checkpoint(path):
    save_tensor_file_atomic(str(path), {"model": "SASRec", "dataset": "tiny", "config": {"seed": 1},
                                        "state_dict": {"w": torch.randn(64, 64)}, "epoch": 3})
    return str(path)


def _cut(path, keep=0.5):
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * keep))


# ----------------------------------------------------------------------------- damaged checkpoints
@pytest.mark.parametrize("trust", [False, True], ids=["untrusted", "trusted"])
def test_a_checkpoint_cut_in_half_is_called_damaged(tmp_path, trust):
    path = _plain_checkpoint(tmp_path / "SASRec.pth")
    _cut(path)
    with pytest.raises(DamagedFileError, match=r"is damaged: its zip archive is incomplete.*cut short.*"
                                               r"with or without --trust_checkpoint"):
        load_checkpoint(path, trust=trust)


def test_a_pickled_checkpoint_cut_short_is_damaged_not_untrusted(tmp_path):
    path = tmp_path / "RecBole-made.pth"
    torch.save({"config": _Opaque(), "state_dict": {"w": torch.randn(64, 64)}}, path)
    _cut(path)
    with pytest.raises(DamagedFileError, match="damaged"):
        load_checkpoint(path)


def test_overwritten_bytes_fail_the_checksum(tmp_path):
    path = _plain_checkpoint(tmp_path / "SASRec.pth")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(64))
    with pytest.raises(DamagedFileError, match="fails its checksum"):
        load_checkpoint(path)


def test_a_damaged_checkpoint_is_one_line_from_every_tool(tmp_path, capsys):
    from recbole_saerec.analysis import explain

    path = _plain_checkpoint(tmp_path / "SASRec.pth")
    _cut(path)
    for flags in ([], ["--trust_checkpoint"]):
        assert cli.run_main(explain.main, [f"--checkpoint={path}", "--user=1", *flags], prog="explain") == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "is damaged" in err.splitlines()[0]
        assert "pass --trust_checkpoint" not in err


# ----------------------------------------------------------------------------- text that is not UTF-8
def test_explanations_read_item_text_under_the_same_policy(tmp_path):
    from types import SimpleNamespace

    from conftest import base_config, write_tiny_dataset
    from recbole_saerec.analysis.explain import ItemText
    from recbole_saerec.config import Config
    from recbole_saerec.data.text import BadTextError

    root = str(tmp_path)
    write_tiny_dataset(root)
    path = tmp_path / "tiny" / "tiny.item"
    path.write_bytes(path.read_bytes().replace(b"product number 4\n", b"product \xff\xfe number 4\n"))
    dataset = SimpleNamespace(iid_field="item_id")

    def item_text(**overrides):
        return ItemText.from_config(Config("SASRec", "tiny", config_dict=base_config(root, **overrides)), dataset)

    with pytest.raises(BadTextError, match=r"tiny\.item:5: not valid utf-8"):
        item_text()
    assert item_text(on_bad_line="skip").title("i4") == "i4"  # left out: shown by its id
    assert item_text(on_bad_line="replace").title("i4") == "skincare product \ufffd\ufffd number 4"
