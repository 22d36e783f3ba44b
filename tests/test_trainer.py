"""The plugin trainer: the paper's seen-item mask, resumable runs, safe and atomic checkpoints."""
import os

import numpy as np
import pytest
import torch
from recbole.data import create_dataset, data_preparation

from conftest import base_config
from recbole_saerec import quick_start, trainer as trainer_mod
from recbole_saerec.analysis.checkpoints import checkpoint_config
from recbole_saerec.config import Config
from recbole_saerec.utils import get_model, get_trainer


def build(root, tmp_path, model_name, **overrides):
    config = Config(model=model_name, dataset="tiny", config_dict=base_config(root, tmp_path, **overrides))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = get_model(model_name)(config, train._dataset)
    return config, model, get_trainer(config["MODEL_TYPE"], model_name)(config, model), test


def hand_ranks(test_data, n_items, masked):
    """Rank of each test user's target when every item scores its own id (higher id = higher score):
    1 + the number of real items with a larger id, minus those in the input sequence when masked
    (a target the user already had is masked too: never ranked)."""
    ranks = []
    for batch in test_data:
        interaction = batch[0]
        for seq, target in zip(interaction["item_id_list"].tolist(), interaction["item_id"].tolist()):
            above = set(range(target + 1, n_items))
            if masked:
                above -= set(seq)
            ranks.append(n_items if masked and target in seq else 1 + len(above))
    return np.array(ranks)


@pytest.mark.parametrize("model_name", ["SASRec", "SAERec", "PackedSASRec"])
def test_mask_history_changes_ranks_exactly_as_computed_by_hand(tiny_root, tmp_path, model_name):
    results = {}
    for masked in (False, True):
        config, model, trainer, test = build(tiny_root, tmp_path, model_name, mask_history=masked, topk=[1, 3, 5],
                                             metrics=["Hit"])
        n_items = test._dataset.item_num
        model.full_sort_predict = lambda inter, n=n_items: torch.arange(n, dtype=torch.float).repeat(
            len(inter), 1)
        results[masked] = trainer.evaluate(test, load_best_model=False)
        ranks = hand_ranks(test, n_items, masked)
        for k in (1, 3, 5):
            assert results[masked][f"hit@{k}"] == pytest.approx(round(float((ranks <= k).mean()), 4), abs=1e-4)
    assert results[True] != results[False]  # the tiny users revisit their group: masking matters


def test_mask_history_scores_are_minus_inf_on_the_input_sequence(tiny_root, tmp_path):
    config, model, trainer, test = build(tiny_root, tmp_path, "SASRec", mask_history=True)
    trainer.tot_item_num = test._dataset.item_num
    batch = next(iter(test))
    interaction, scores, _, _ = trainer._full_sort_batch_eval(batch)
    seq = interaction["item_id_list"]
    seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, seq, True)
    seen[:, 0] = True  # the padding item, masked by RecBole itself
    assert torch.isinf(scores[seen]).all() and torch.isfinite(scores[~seen]).all()


def run_tiny(root, ckpt_dir, epochs=5):
    cfg = base_config(root, ckpt_dir, epochs=epochs, stopping_step=50, resume_state=True, model="SAERec")
    return quick_start.run("SAERec", "tiny", config_dict=cfg)


def test_interrupted_run_resumes_to_the_uninterrupted_result(tiny_root, tmp_path, monkeypatch):
    straight = run_tiny(tiny_root, str(tmp_path / "a"))
    assert [h["epoch"] for h in straight["history"]] == [0, 1, 2, 3, 4]
    assert "fusion_entropy" in straight["history"][0]  # SAERec's branch weights are recorded per epoch

    saves, real_save = [], trainer_mod.save_tensor_file_atomic

    def killed_after_second_state(path, obj):
        real_save(path, obj)
        if str(path).endswith(trainer_mod.RESUME_SUFFIX):
            saves.append(obj["epoch"])
            if len(saves) == 2:
                raise KeyboardInterrupt("killed between epochs")

    monkeypatch.setattr(trainer_mod, "save_tensor_file_atomic", killed_after_second_state)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(tiny_root, str(tmp_path / "b"))
    monkeypatch.setattr(trainer_mod, "save_tensor_file_atomic", real_save)
    resumed = run_tiny(tiny_root, str(tmp_path / "b"))
    assert saves == [0, 1]
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2, 3, 4]
    assert [h["valid_score"] for h in resumed["history"]] == [h["valid_score"] for h in straight["history"]]
    assert resumed["best_valid_score"] == straight["best_valid_score"]
    assert resumed["test_result"] == straight["test_result"]
    # a finished run's state says so: a third call trains nothing and reports the same
    again = run_tiny(tiny_root, str(tmp_path / "b"))
    assert again["test_result"] == straight["test_result"]


def test_a_state_saved_with_other_settings_is_moved_aside_not_continued(tiny_root, tmp_path):
    ckpt = str(tmp_path / "run")
    cfg = base_config(tiny_root, ckpt, epochs=2, stopping_step=50, resume_state=True, model="SAERec")
    quick_start.run("SAERec", "tiny", config_dict=cfg)  # finished: a rerun with the same settings trains nothing
    state_file = trainer_mod.resume_path(ckpt, "SAERec")
    changed = quick_start.run("SAERec", "tiny", config_dict=dict(cfg, learning_rate=0.01, fusion="sum"))
    assert [h["epoch"] for h in changed["history"]] == [0, 1]  # trained from scratch, not "finished"
    stale = trainer_mod.load_checkpoint(state_file + ".stale")
    assert stale["config"]["learning_rate"] != 0.01 and stale["config"]["fusion"] != "sum"
    assert trainer_mod.load_checkpoint(state_file)["config"]["fusion"] == "sum"
    again = quick_start.run("SAERec", "tiny", config_dict=dict(cfg, learning_rate=0.01, fusion="sum", epochs=3))
    assert [h["epoch"] for h in again["history"]] == [0, 1, 2]  # a longer cap continues the same run


def test_a_state_saved_before_a_speed_switch_existed_still_continues():
    """A speed switch added after a long run started must not discard that run's state; a changed lr must."""
    saved = {"learning_rate": 0.001, "hidden_size": 64}  # saved by a version without the switches
    now = dict(saved, bf16_ce="auto", fused_ce=True, pack_attention=True, cpu_rand_dropout=True,
               intent_encode_bf16="auto")
    assert trainer_mod.changed_settings(saved, now) == []
    assert trainer_mod.changed_settings(saved, dict(now, learning_rate=0.01)) == ["learning_rate"]


def test_checkpoint_is_plain_data_and_a_pickle_is_refused(tiny_root, tmp_path):
    result = quick_start.run("SAERec", "tiny", config_dict=base_config(tiny_root, tmp_path, epochs=1))
    saved = torch.load(result["saved_model_file"], weights_only=True)  # no arbitrary pickle needed
    assert saved["model"] == "SAERec" and saved["config_external"]["hidden_size"] == 16
    rebuilt = checkpoint_config(saved)
    assert rebuilt["hidden_size"] == 16 and rebuilt["model"] == "SAERec"

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "x": Evil()}, evil)
    with pytest.raises(trainer_mod.UntrustedCheckpointError, match="--trust_checkpoint"):
        trainer_mod.load_checkpoint(evil)


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "best.pth"
    trainer_mod.save_tensor_file_atomic(path, {"epoch": 1, "w": torch.ones(3)})

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"partial bytes of a checkpoint")  # torch.save writes into the open temporary file
        f.flush()
        raise KeyboardInterrupt("killed during the write")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        trainer_mod.save_tensor_file_atomic(path, {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    kept = trainer_mod.load_checkpoint(path)
    assert kept["epoch"] == 1 and torch.equal(kept["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["best.pth"]  # no torn temporary left behind


def test_progress_reads_the_valid_curve_of_runs_in_flight(tiny_root, tmp_path):
    from recbole_saerec.experiments.benchmark import progress

    result = run_tiny(tiny_root, str(tmp_path / "work" / "SAERec__seed7"), epochs=3)
    (row,) = progress(str(tmp_path / "work"))
    assert row["run_id"] == "SAERec__seed7" and row["epochs_done"] == 3 and row["finished"]
    assert row["valid_curve"] == [h["valid_score"] for h in result["history"]]
    assert row["best_valid_score"] == result["best_valid_score"]
    assert row["seconds_per_epoch"] > 0 and row["epochs_to_patience"] == 50 - row["epochs_without_improvement"]


def test_progress_marks_a_run_whose_process_is_gone_as_paused(tiny_root, tmp_path):
    from recbole_saerec.experiments.benchmark.report import format_progress, progress

    run_tiny(tiny_root, str(tmp_path / "work" / "SAERec__seed7"), epochs=2)
    (row,) = progress(str(tmp_path / "work"))
    row = dict(row, finished=False, seconds_per_epoch=10.0)
    assert "PAUSED" not in format_progress(dict(row, saved_seconds_ago=60.0))  # within 3 epochs + 1 min
    text = format_progress(dict(row, saved_seconds_ago=3600.0))
    assert "PAUSED: last epoch saved 60 min ago" in text and "ends in" not in text


def test_progress_command_needs_no_model_list(tiny_root, tmp_path, capsys):
    from recbole_saerec.experiments.benchmark import main

    work = tmp_path / "work"
    assert main(["--dataset=tiny", f"--work_dir={work}", "--progress"]) == {}
    assert "no run in flight" in capsys.readouterr().out
    run_tiny(tiny_root, str(work / "SAERec__seed7"), epochs=2)
    main(["--dataset=tiny", f"--work_dir={work}", "--progress"])
    text = capsys.readouterr().out
    # SAERec's three branches: the last epoch's gate weights, then the VALID curve
    assert "SAERec__seed7: 2 epochs" in text and "fusion (last epoch): self" in text and "valid curve:" in text
