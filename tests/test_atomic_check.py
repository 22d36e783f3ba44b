"""Atomic-file validation: every silently-wrong input gives file:line, before RecBole reads it."""
import os

import pytest

from conftest import base_config, write_tiny_dataset
from recbole_saerec.config import Config
from recbole_saerec.data import AtomicFileError, check_atomic_files
from recbole_saerec.data.check import check_atomic_file
from recbole_saerec.quick_start import prepare


def dataset_with(tmp_path, edit):
    """The tiny dataset with its .inter lines passed through ``edit(lines) -> lines``."""
    root = str(tmp_path)
    write_tiny_dataset(root)
    path = os.path.join(root, "tiny", "tiny.inter")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(edit(lines)) + "\n")
    return root, path


def config(root, **overrides):
    return Config(model="SASRec", dataset="tiny", config_dict=base_config(root, **overrides))


def test_clean_file_passes(tmp_path, caplog):
    root, path = dataset_with(tmp_path, lambda lines: lines)
    assert check_atomic_files(config(root)) is None and not caplog.records  # no error, no warning
    with open(path, encoding="utf-8") as f:
        n_lines = sum(1 for _ in f) - 1
    assert check_atomic_file(path, config(root))["rows"] == n_lines and not check_atomic_file(
        path, config(root))["exact_duplicates"]


@pytest.mark.parametrize("line,fragment", [
    ("u1\ti1", "2 fields, the header has 3"),
    ("u1\ti1\t5\textra", "4 fields, the header has 3"),
    ("u1\ti1\tnot_a_time", "timestamp='not_a_time' is not a finite number"),
    ("u1\ti1\tinf", "timestamp='inf' is not a finite number"),
    ("u1\ti1\tnan", "timestamp='nan' is not a finite number"),
    ("u1\ti1\t", "timestamp='' is not a finite number"),
    ("\ti1\t5", "user_id is empty"),
])
def test_bad_line_named_by_file_and_line(tmp_path, line, fragment):
    root, path = dataset_with(tmp_path, lambda lines: lines[:5] + [line] + lines[5:])
    with pytest.raises(AtomicFileError) as err:
        check_atomic_files(config(root))
    assert f"{path}:6: " in str(err.value) and fragment in str(err.value)


def test_bad_encoding_named_by_line(tmp_path):
    root, path = dataset_with(tmp_path, lambda lines: lines)
    with open(path, "ab") as f:
        f.write(b"u1\ti\xff\xfe9\t5\n")
    n_lines = sum(1 for _ in open(path, "rb"))
    with pytest.raises(AtomicFileError, match=rf"tiny.inter:{n_lines}: not valid utf-8"):
        check_atomic_files(config(root))


def test_every_interaction_duplicated_is_refused_by_default(tmp_path):
    root, path = dataset_with(tmp_path, lambda lines: lines + lines[1:])
    with pytest.raises(AtomicFileError, match=r"exact duplicate interaction.*line \d+ repeats line 2"):
        check_atomic_files(config(root))


def test_duplicates_dropped_on_request_through_recbole(tmp_path):
    root, _ = dataset_with(tmp_path, lambda lines: lines + lines[1:])
    clean_root, _ = dataset_with(tmp_path / "clean", lambda lines: lines)
    _, data, *_ = prepare("SASRec", "tiny", config_dict=base_config(root, inter_duplicates="drop"))
    _, clean, *_ = prepare("SASRec", "tiny", config_dict=base_config(clean_root))
    # RecBole's rm_dup_inter: first drops every repeat of a (user, item) pair, the exact copies included
    assert data.inter_num <= clean.inter_num
    pairs = set(zip(data.inter_feat["user_id"].tolist(), data.inter_feat["item_id"].tolist()))
    assert len(pairs) == data.inter_num


def test_duplicates_kept_with_a_warning(tmp_path, caplog):
    root, _ = dataset_with(tmp_path, lambda lines: lines + lines[1:3])
    check_atomic_files(config(root, inter_duplicates="keep"))
    assert "2 exact duplicate interaction(s)" in caplog.text


def test_prepare_checks_before_recbole_reads(tmp_path):
    root, path = dataset_with(tmp_path, lambda lines: lines + ["u1\ti1"])
    with pytest.raises(AtomicFileError, match="tiny.inter:"):
        prepare("SASRec", "tiny", config_dict=base_config(root))


def test_unloaded_columns_are_not_type_checked(tmp_path):
    root, path = dataset_with(tmp_path, lambda lines: [lines[0] + "\tnote:float"]
                              + [ln + "\tn/a" for ln in lines[1:]])
    check_atomic_files(config(root))  # load_col has only the triple: 'note' is never read
    with pytest.raises(AtomicFileError, match="note='n/a' is not a number"):
        check_atomic_files(config(root, load_col={"inter": ["user_id", "item_id", "timestamp", "note"]}))
