"""Hostile inputs a new user may give, each refused early with one clear line (docs/hardening.md).

Tiny data the tests write; the cases on the shared Amazon files are in test_data_prepare.py.
"""
import os

import pytest
import torch

from recbole_saerec import cli
from recbole_saerec.fileio import save_tensor_file_atomic
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
    from recbole_saerec.fileio import DamagedFileError

    path = _plain_checkpoint(tmp_path / "SASRec.pth")
    _cut(path)
    with pytest.raises(DamagedFileError, match=r"is damaged: its zip archive is incomplete.*cut short.*"
                                               r"with or without --trust_checkpoint"):
        load_checkpoint(path, trust=trust)


def test_a_pickled_checkpoint_cut_short_is_damaged_not_untrusted(tmp_path):
    from recbole_saerec.fileio import DamagedFileError

    path = tmp_path / "RecBole-made.pth"
    torch.save({"config": _Opaque(), "state_dict": {"w": torch.randn(64, 64)}}, path)
    _cut(path)
    with pytest.raises(DamagedFileError, match="damaged"):
        load_checkpoint(path)


def test_overwritten_bytes_fail_the_checksum(tmp_path):
    from recbole_saerec.fileio import DamagedFileError

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
    from recbole_saerec.analysis.checkpoints import ItemText
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


# ----------------------------------------------------------------------------- names that become paths
@pytest.mark.parametrize("name", ["foo/bar", "../tiny", ".hidden", "a b", "C:\\data\\tiny"])
def test_a_dataset_name_with_a_path_in_it_is_refused_before_any_work(tmp_path, name):
    from conftest import base_config
    from recbole_saerec.config import Config
    from recbole_saerec.config_check import ConfigValueError

    with pytest.raises(ConfigValueError, match=r"dataset=.* is not a plain name"):
        Config("SASRec", name, config_dict=base_config(str(tmp_path)))


def test_dataset_foo_bar_is_one_line_naming_the_fix(tmp_path, monkeypatch, capsys):
    """The files exist (<data_path>/foo/bar/foo/bar.inter): before, RecBole's log file failed to open."""
    from conftest import write_tiny_dataset

    write_tiny_dataset(str(tmp_path / "data" / "foo"), name="bar")
    os.makedirs(tmp_path / "data" / "foo" / "bar" / "foo")
    os.rename(tmp_path / "data" / "foo" / "bar" / "bar.inter", tmp_path / "data" / "foo" / "bar" / "foo" / "bar.inter")
    monkeypatch.chdir(tmp_path)
    from test_cli import load_runner

    assert cli.run_main(load_runner().main, ["--model=SASRec", "--dataset=foo/bar", f"--data_path={tmp_path / 'data'}"],
                        prog="run") == 2
    err = capsys.readouterr().err
    assert "dataset='foo/bar' is not a plain name" in err and "--dataset=bar --data_path=<data_path>/foo" in err
    assert "Traceback" not in err and not os.path.exists(tmp_path / "log")  # refused before any work


def test_prepare_refuses_a_dataset_name_with_a_path(tmp_path, capsys):
    from recbole_saerec.data import prepare_amazon as pa

    assert pa.main(["--dataset=foo/bar", "--category=Beauty", f"--raw_dir={tmp_path}", f"--out={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "is not a plain name" in err and "--out=<out>/foo" in err and not os.path.exists(tmp_path / "foo")


def test_an_intent_tag_with_a_path_is_refused(tmp_path):
    from conftest import base_config
    from recbole_saerec.config import Config
    from recbole_saerec.config_check import ConfigValueError

    with pytest.raises(ConfigValueError, match=r"intent_tag='\.\./elsewhere' is not a plain name"):
        Config("SAERec", "tiny", config_dict=base_config(str(tmp_path), intent_tag="../elsewhere"))


# ----------------------------------------------------------------------------- a read-only working folder
def _abs_config(tmp_path, root, **extra):
    from conftest import base_config

    paths = {"log_dir": str(tmp_path / "logs"), "tensorboard_dir": str(tmp_path / "tb")}
    return base_config(root, str(tmp_path / "saved"), **dict(paths, **extra))


def test_with_every_path_absolute_nothing_is_written_in_the_working_folder(tmp_path, monkeypatch):
    """What a read-only clone needs: RecBole's log and TensorBoard folders follow log_dir / tensorboard_dir."""
    from conftest import write_tiny_dataset
    from recbole_saerec.quick_start import run

    root = str(tmp_path / "data")
    write_tiny_dataset(root)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run("SASRec", "tiny", config_dict=_abs_config(tmp_path, root), saved=True)
    assert os.listdir(work) == []
    assert os.listdir(tmp_path / "logs" / "SASRec")[0].startswith("SASRec-tiny-")
    assert os.listdir(tmp_path / "tb")


def test_an_unwritable_log_folder_is_one_line_naming_the_setting(tmp_path, monkeypatch):
    from recbole_saerec.config import Config
    from recbole_saerec.logger import init_logger

    (tmp_path / "file").write_text("")
    config = Config("SASRec", "tiny", config_dict=_abs_config(tmp_path, str(tmp_path), log_dir=str(tmp_path / "file")))
    with pytest.raises(cli.UsageError, match=r"cannot create .* set log_dir to a folder you can write.*log_dir: ~"):
        init_logger(config)


def test_log_settings_set_to_none_write_no_log_files(tmp_path, monkeypatch):
    from conftest import write_tiny_dataset
    from recbole_saerec.quick_start import run

    write_tiny_dataset(str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    run("SASRec", "tiny", config_dict=_abs_config(tmp_path, str(tmp_path / "data"), log_dir=None,
                                                  tensorboard_dir=None), saved=True)
    assert sorted(os.listdir(tmp_path)) == ["data", "saved"]


def _can_mount_read_only():
    import shutil
    import subprocess

    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind / /mnt && mount -o remount,bind,ro /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs root and `unshare -m` to mount a read-only folder")
def test_a_run_from_a_truly_read_only_folder(tmp_path):
    import subprocess
    import sys

    import yaml

    from conftest import write_tiny_dataset

    root = str(tmp_path / "data")
    write_tiny_dataset(root)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(_abs_config(tmp_path, root)))
    work = tmp_path / "work"
    work.mkdir()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = (f"mount --bind {work} {work} && mount -o remount,bind,ro {work} && cd {work} && "
               f"PYTHONPATH={repo} {sys.executable} {repo}/run_recbole_saerec.py --model=SASRec --dataset=tiny "
               f"--config_files={tmp_path / 'run.yaml'}")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test result:" in proc.stdout and os.listdir(work) == []


# ----------------------------------------------------------------------------- config mistakes, before any work
def _one_error_line(err):
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert "Traceback" not in err and len(lines) == 2 and lines[1] == "(add --debug for the traceback)", err
    return lines[0]


@pytest.mark.parametrize("flags, expected", [
    (["--hidden_size=63", "--n_heads=2"], "hidden_size=63 is not a multiple of n_heads=2"),
    (["--sae_n_latents=3"], "sae_n_latents=3 is fewer than the k active latents per text"),
    (["--sae_n_latents=3", "--sae_k=8"], "sae_k=8 is more than sae_n_latents=3"),
])
def test_keys_that_do_not_fit_together_fail_before_any_work(tmp_path, monkeypatch, capsys, flags, expected):
    from test_cli import load_runner

    import recbole_saerec.quick_start as quick_start
    from conftest import write_tiny_dataset

    write_tiny_dataset(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(quick_start, "check_atomic_files", lambda config: pytest.fail("data read before the check"))
    status = cli.run_main(load_runner().main, ["--model=SAERec", "--dataset=tiny", f"--data_path={tmp_path}",
                                               *flags], prog="run")
    assert status == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "Invalid config (checked before any work)" in line and expected in line and "set by you" in line
    assert not os.path.exists(tmp_path / "log")


def test_intents_retrieved_beyond_the_intent_set_is_one_line_before_the_data_is_loaded(tmp_path, monkeypatch,
                                                                                        capsys):
    import yaml

    from test_cli import load_runner

    import recbole_saerec.quick_start as quick_start
    from conftest import base_config, write_fake_intents, write_tiny_dataset

    write_tiny_dataset(str(tmp_path))
    write_fake_intents(str(tmp_path / "intents"))  # 12 intents
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(_abs_config(tmp_path, str(tmp_path))))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(quick_start, "load_dataset", lambda config: pytest.fail("dataset loaded before the check"))
    status = cli.run_main(load_runner().main, ["--model=SAERec", "--dataset=tiny",
                                               f"--config_files={tmp_path}/run.yaml", "--intents_retrieved=100000"],
                          prog="run")
    assert status == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "intents_retrieved=100000 is more than the 12 intents" in line
    assert "choose 1 <= intents_retrieved <= 12" in line


def test_k_above_the_latents_the_rule_gives_is_one_line_before_training(tmp_path):
    import numpy as np

    from conftest import base_config, write_tiny_dataset
    from recbole_saerec.config import Config
    from recbole_saerec.intents.build import IntentBuildError, fit_codes

    write_tiny_dataset(str(tmp_path))
    config = Config("SAERec", "tiny", config_dict=base_config(str(tmp_path), sae_k=300))  # ~: M = 256 here
    x = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    with pytest.raises(IntentBuildError, match=r"k=300 of M=256 latents.*set sae_n_latents >= 300 or sae_k <= 256"):
        fit_codes(config, x, "emb", "items", str(tmp_path / "cache"), progress=False)
    assert not os.path.exists(tmp_path / "cache")  # nothing trained, nothing cached
    kmeans = Config("SAERec", "tiny", config_dict=base_config(str(tmp_path), intent_method="kmeans",
                                                               kmeans_n_clusters=64))
    with pytest.raises(IntentBuildError, match="64 clusters for 40 texts"):
        fit_codes(kmeans, x, "emb", "items", str(tmp_path / "cache"), progress=False)


# ----------------------------------------------------------------------------- analysis tools: which model, which data
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny SAERec and SASRec checkpoints trained through quick_start.run, and their data folder."""
    import json

    from conftest import base_config, write_fake_intents, write_tiny_dataset
    from recbole_saerec.artefacts import MANIFEST
    from recbole_saerec.config import Config
    from recbole_saerec.intents.build import source_hashes
    from recbole_saerec.quick_start import run

    root = str(tmp_path_factory.mktemp("trained"))
    write_tiny_dataset(root)
    write_fake_intents(os.path.join(root, "intents"))
    cfg = _abs_config(tmp_path_factory.mktemp("out"), root, intent_corpus="items", intent_item_text_fields=["title"])
    manifest = os.path.join(root, "intents", MANIFEST)  # as a real build records its raw sources
    with open(manifest) as f:
        recorded = json.load(f)
    recorded["sources"] = source_hashes(Config("SAERec", "tiny", config_dict=cfg), "items")
    with open(manifest, "w") as f:
        json.dump(recorded, f)
    out = {name: run(name, "tiny", config_dict=cfg, saved=True)["saved_model_file"] for name in ("SAERec", "SASRec")}
    return root, out


def _data_copy(root, tmp_path, edit=None):
    import shutil

    copy = tmp_path / "moved"
    shutil.copytree(os.path.join(root, "tiny"), copy / "tiny")
    if edit:
        path, old, new = copy / "tiny" / edit[0], edit[1], edit[2]
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))
    return str(copy)


def test_explain_and_steer_refuse_a_model_without_intents_in_one_line(checkpoints, capsys):
    from recbole_saerec.analysis import explain, steer

    _, ckpt = checkpoints
    for main, flags in ((explain.main, ["--user=u1"]), (steer.main, ["--match=w1a"])):
        assert cli.run_main(main, [f"--checkpoint={ckpt['SASRec']}", *flags], prog="tool") == 2
        line = _one_error_line(capsys.readouterr().err)
        assert "holds a SASRec model, and this command reads a model with intents" in line


def test_a_recbole_written_checkpoint_trusted_is_refused_by_class_not_by_a_crash(checkpoints, tmp_path, capsys):
    """RecBole's own checkpoints pickle its Config: with --trust_checkpoint, explain refuses the model by its
    class in one line, before it reaches a forward pass that has no intents to show."""
    from recbole.config import Config as RecBoleConfig

    from recbole_saerec.analysis import explain

    root, ckpt = checkpoints
    saved = load_checkpoint(ckpt["SASRec"])
    config = RecBoleConfig("SASRec", "tiny", config_dict={"data_path": root, "use_gpu": False,
                                                          "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
                                                          "train_neg_sample_args": None})
    path = tmp_path / "recbole-SASRec.pth"
    torch.save({"config": config, "epoch": 1, "state_dict": saved["state_dict"], "other_parameter": None}, path)
    assert cli.run_main(explain.main, [f"--checkpoint={path}", "--trust_checkpoint", "--user=u1"], prog="explain") == 2
    assert "holds a SASRec model" in _one_error_line(capsys.readouterr().err)


def test_attribution_refuses_a_model_without_attribute_blocks(checkpoints, capsys):
    from recbole_saerec.analysis import attribution

    _, ckpt = checkpoints
    assert cli.run_main(attribution.main, [f"--checkpoint={ckpt['SAERec']}"], prog="attribution") == 2
    assert "holds a SAERec model, and this command reads GuidedRec" in _one_error_line(capsys.readouterr().err)


def test_explain_refuses_item_texts_changed_since_training(checkpoints, tmp_path, capsys):
    """Same ids, other texts: without the check, explain would print other items' titles beside the intents."""
    from recbole_saerec.analysis import explain

    root, ckpt = checkpoints
    moved = _data_copy(root, tmp_path)
    assert cli.run_main(explain.main, [f"--checkpoint={ckpt['SAERec']}", f"--data_path={moved}", "--user=u1"],
                        prog="explain") == 0  # the same files elsewhere: fine
    capsys.readouterr()
    changed = _data_copy(root, tmp_path / "b", ("tiny.item", "skincare product number 1\n", "lipstick number 1\n"))
    assert cli.run_main(explain.main, [f"--checkpoint={ckpt['SAERec']}", f"--data_path={changed}", "--user=u1"],
                        prog="explain") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "tiny.item changed after" in line and "Restore the file" in line


def test_a_checkpoint_from_before_the_data_record_is_checked_against_its_intent_build(checkpoints, tmp_path):
    from recbole_saerec.analysis.checkpoints import load_model

    root, ckpt = checkpoints
    saved = load_checkpoint(ckpt["SAERec"])
    del saved["config"]["data_files"]
    old = str(tmp_path / "old.pth")
    save_tensor_file_atomic(old, saved)
    changed = _data_copy(root, tmp_path, ("tiny.item", "makeup product number 2\n", "perfume number 2\n"))
    with pytest.raises(cli.UsageError, match=r"tiny\.item changed after .* the texts its intents were built from"):
        load_model(old, data_path=changed)


def test_probe_refuses_interactions_changed_since_training(checkpoints, tmp_path):
    from recbole_saerec.analysis.probe import load_probed

    root, ckpt = checkpoints
    changed = _data_copy(root, tmp_path, ("tiny.inter", "u1\ti", "u1\ti1\t1\nu1\ti"))
    with pytest.raises(cli.UsageError, match=r"tiny\.inter changed after"):
        load_probed(ckpt["SASRec"], data_path=changed)


# ----------------------------------------------------------------------------- documented
def test_the_docs_say_how_to_resume_and_where_logs_go():
    """The README names resuming and points to the usage page, which has the whole of it."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(repo, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    with open(os.path.join(repo, "docs", "usage.md"), encoding="utf-8") as f:
        usage = f.read()
    assert "--resume_state=True" in readme and "(docs/usage.md)" in readme
    assert "## Resuming an interrupted run" in usage and "--resume_state=True" in usage
    assert "`log_dir`" in usage and "`tensorboard_dir`" in usage and "read-only clone" in usage
