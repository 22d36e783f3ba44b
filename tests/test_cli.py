"""The shared CLI behaviour: one-line errors, --debug, config keys scoped away from sys.argv, paths from any folder."""
import importlib.util
import logging
import os
import sys
import warnings

import pytest
import torch

from conftest import base_config
from recbole_saerec import cli
from recbole_saerec.analysis.checkpoints import read_checkpoint, resolve_checkpoint
from recbole_saerec.config import Config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_runner():
    spec = importlib.util.spec_from_file_location("run_recbole_saerec", os.path.join(REPO, "run_recbole_saerec.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- --key=value
def test_config_args_keeps_key_value_items_and_refuses_the_rest():
    assert cli.config_args(["--epochs=5", "--expr=a=b", "--epochs=5"]) == {"epochs": "5", "expr": "a=b"}
    with pytest.raises(cli.UsageError, match=r"--epochs=VALUE"):
        cli.config_args(["--epochs", "5"])
    with pytest.raises(cli.UsageError, match=r"--KEY=stray"):
        cli.config_args(["stray"])
    with pytest.raises(cli.UsageError, match="twice"):
        cli.config_args(["--epochs=5", "--epochs=6"])


# ---------------------------------------------------------------- errors
def test_run_main_prints_one_line_for_user_mistakes_and_keeps_tracebacks_for_bugs(capsys):
    def mistake(argv):
        raise cli.UsageError("no such thing; do this instead")

    assert cli.run_main(mistake, [], prog="tool") == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "tool: error: no such thing; do this instead" and "Traceback" not in err
    with pytest.raises(cli.UsageError):  # --debug: the traceback, and --debug itself never reaches main
        cli.run_main(lambda argv: mistake(argv) if argv == [] else None, ["--debug"])

    def bug(argv):
        raise RuntimeError("a real bug")

    with pytest.raises(RuntimeError):
        cli.run_main(bug, [])
    assert cli.run_main(lambda argv: 3, []) == 3 and cli.run_main(lambda argv: None, []) == 0


def test_misspelled_model_is_one_line(tiny_root, tmp_path, capsys, monkeypatch):
    runner = load_runner()
    monkeypatch.chdir(tmp_path)
    status = cli.run_main(runner.main, ["--model=SASRek", "--dataset=tiny", f"--data_path={tiny_root}"], prog="run")
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert err.startswith("run: error: Unknown model 'SASRek'") and len(err.splitlines()) == 2
    assert cli.run_main(runner.main, ["--model=SASRec", "--epochs", "1"], prog="run") == 2
    assert "--epochs=VALUE" in capsys.readouterr().err


# ---------------------------------------------------------------- RecBole's command line
def test_plugin_flags_never_reach_recbole(tiny_root, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sys, "argv", ["tool", "--keep_checkpoints", "--epochs=3"])
    cfg = base_config(tiny_root, tmp_path)
    cfg.pop("epochs")
    with caplog.at_level(logging.WARNING):
        with cli.recbole_cmd_line({"epochs": "2", "learning_rate": "0.01"}):
            scoped = Config(model="SASRec", dataset="tiny", config_dict=cfg)
    assert scoped["epochs"] == 2 and scoped["learning_rate"] == 0.01
    assert "will not be used" not in caplog.text
    with caplog.at_level(logging.WARNING):  # the root level an earlier run left (RecBole's `state`) must not hide it
        outside = Config(model="SASRec", dataset="tiny", config_dict=cfg)  # a script: RecBole reads sys.argv
    assert outside["epochs"] == 3 and "will not be used" in caplog.text


# ---------------------------------------------------------------- paths
def test_config_files_resolve_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    packaged = os.path.join(cli.PROPERTIES_DIR, "demo-ml-100k.yaml")
    assert cli.config_files("properties/demo-ml-100k.yaml") == [packaged]
    assert cli.config_files("demo-ml-100k.yaml") == [packaged]
    (tmp_path / "mine.yaml").write_text("epochs: 1\n")
    assert cli.config_files("mine.yaml,demo-ml-100k.yaml") == [str(tmp_path / "mine.yaml"), packaged]
    with pytest.raises(cli.UsageError, match="nope.yaml"):
        cli.config_files("nope.yaml")
    assert cli.config_files(None) is None


def test_checkpoint_folder_resolution(tmp_path):
    run = tmp_path / "work" / "SASRec__seed1"
    run.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, run / "SASRec-Dec-01.pth")
    torch.save({}, run / "pretrained.pth")  # S3Rec's stage-1 weights are not the run's model
    assert resolve_checkpoint(run) == str(run / "SASRec-Dec-01.pth")
    assert resolve_checkpoint(tmp_path / "work") == str(run / "SASRec-Dec-01.pth")  # one level down
    saved = read_checkpoint(run)
    assert saved["path"] == str(run / "SASRec-Dec-01.pth") and saved["epoch"] == 3
    other = tmp_path / "work" / "GRU4Rec__seed1"
    other.mkdir()
    torch.save({}, other / "GRU4Rec-Dec-01.pth")
    with pytest.raises(cli.UsageError, match="holds 2 checkpoints"):
        resolve_checkpoint(tmp_path / "work")
    (tmp_path / "empty").mkdir()
    with pytest.raises(cli.UsageError, match="no .pth"):
        resolve_checkpoint(tmp_path / "empty")
    with pytest.raises(cli.UsageError, match="no checkpoint at"):
        resolve_checkpoint(tmp_path / "missing.pth")


# ---------------------------------------------------------------- warnings
def test_dataset_loading_hides_recboles_pandas_warnings_only(tiny_root, tmp_path):
    from recbole.data import create_dataset

    from recbole_saerec.quick_start import load_dataset

    config = Config(model="SASRec", dataset="tiny", config_dict=base_config(tiny_root, tmp_path))
    copy_warning = "A value is trying to be set on a copy"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        create_dataset(config)
    assert any(copy_warning in str(w.message) for w in seen)  # RecBole + pandas 2 do warn
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        load_dataset(config)
        warnings.warn("ours", FutureWarning)  # our own warnings still show
    messages = [str(w.message) for w in seen]
    assert not any(copy_warning in m for m in messages) and "ours" in messages


# ---------------------------------------------------------------- the main job's ending
def test_run_ends_with_the_explain_user_explanation(tiny_root, tmp_path, monkeypatch, capsys):
    import yaml

    runner = load_runner()
    cfg = dict(base_config(tiny_root, tmp_path / "saved"), explain_user="u1")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)  # any working folder: every path comes from the settings
    assert cli.run_main(runner.main, ["--model=SAERec", "--dataset=tiny", "--config_files=run.yaml", "--epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "test result:" in out and out.index("test result:") < out.index("User u1")
    assert "Personal intents" in out and "Public intents" in out
    # the hand-made intents fire on random items: nothing to name them by, so hidden and counted
    assert "5 of 5 public intents hidden: not readable" in out
    assert cli.run_main(runner.main, ["--model=SASRec", "--dataset=tiny", "--config_files=run.yaml"]) == 0
    assert "SASRec has no intents to explain" in capsys.readouterr().out


class _Opaque:  # any object the weights-only loader cannot rebuild without running pickle code
    pass


def test_untrusted_pickle_checkpoint_is_one_line(tmp_path, capsys):
    from recbole_saerec.analysis import explain

    torch.save({"config": _Opaque(), "state_dict": {}}, tmp_path / "RecBole-made.pth")
    assert cli.run_main(explain.main, [f"--checkpoint={tmp_path}", "--user=1"], prog="explain") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--trust_checkpoint" in err.splitlines()[0]
