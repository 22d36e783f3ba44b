"""Fail early and clearly when a dataset's atomic files are not where the config points.

Called from ``quick_start.prepare`` right after the Config is built, before RecBole's
``create_dataset`` (whose own error for a missing file is an unhelpful ``ValueError``
about ``inter_feat`` or a bare ``FileNotFoundError``), and check their contents: RecBole
reads a short line, a non-numeric or infinite timestamp, or a repeated interaction
without complaint and trains on the result (docs/hardening.md).
"""
import csv
import io
import math
import os
from logging import getLogger

from recbole_saerec.settings import setting


class DatasetFilesMissingError(FileNotFoundError):
    """The configured dataset's atomic files are missing."""


def expected_files(config):
    """Atomic files RecBole will need for this config: [(role, absolute path)]."""
    dataset = config["dataset"]
    data_path = config["data_path"]  # RecBole has already joined <data_path>/<dataset>
    benchmark = setting(config, "benchmark_filename")
    if benchmark:
        files = [(f"inter ({part})", os.path.join(data_path, f"{dataset}.{part}.inter")) for part in benchmark]
    else:
        files = [("inter", os.path.join(data_path, f"{dataset}.inter"))]
    load_col = setting(config, "load_col")
    if isinstance(load_col, dict):
        for source in load_col:
            if source != "inter":
                files.append((source, os.path.join(data_path, f"{dataset}.{source}")))
    return [(role, os.path.abspath(path)) for role, path in files]


def prepare_hint(dataset, data_path):
    """The command that creates the files (Amazon names), or what RecBole expects."""
    from recbole_saerec.data.prepare_amazon.schema import CATEGORIES  # here: keeps `python -m ...prepare_amazon` clean

    parent = os.path.dirname(os.path.normpath(data_path)) or "."
    if dataset in CATEGORIES:
        return (f"Prepare it with:\n"
                f"  python -m recbole_saerec.data.prepare_amazon --dataset={dataset} --out={parent}\n"
                f"  (add --raw_dir=<folder with reviews_{CATEGORIES[dataset]}_5.json.gz and "
                f"meta_{CATEGORIES[dataset]}.json.gz> when the shared data is not at "
                f"../shared/datasets/{dataset}/raw; see docs/data.md)\n"
                f"or point --data_path at the folder that holds {dataset}/{dataset}.inter.")
    return (f"Put RecBole atomic files at {data_path}/{dataset}.inter (tab-separated, header "
            f"'user_id:token\\titem_id:token\\ttimestamp:float'), or point --data_path at the folder "
            f"that holds {dataset}/{dataset}.inter.")


def check_dataset_files(config):
    """Raise DatasetFilesMissingError listing the missing files and how to prepare them."""
    missing = [(role, path) for role, path in expected_files(config) if not os.path.isfile(path)]
    if not missing:
        return
    dataset, data_path = config["dataset"], config["data_path"]
    lines = [f"Dataset '{dataset}' is not prepared: missing"]
    lines += [f"  {role:<6} {path}" for role, path in missing]
    lines.append(f"(data_path resolves to {os.path.abspath(data_path)} from the working directory "
                 f"{os.getcwd()})")
    lines.append(prepare_hint(dataset, data_path))
    raise DatasetFilesMissingError("\n".join(lines))


def data_fingerprint(config):
    """{file name: sha256 prefix} of the dataset's atomic files as a run reads them (the files RecBole
    loads, and the ``.item`` / ``.user`` files whose text the plugin's tools show). A run keeps it in
    its config (``data_files``), so its checkpoint says which data it was trained on."""
    import hashlib

    paths = dict((os.path.basename(p), p) for _, p in expected_files(config))
    for suffix in ("item", "user"):
        path = os.path.abspath(os.path.join(config["data_path"], f"{config['dataset']}.{suffix}"))
        if os.path.isfile(path):
            paths.setdefault(os.path.basename(path), path)
    out = {}
    for name, path in sorted(paths.items()):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        out[name] = digest.hexdigest()[:16]
    return out


# ----------------------------------------------------------------------------- atomic-file contents
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
MAX_REPORTED = 10


class AtomicFileError(ValueError):
    """An atomic file's contents would load silently wrong (missing fields, bad numbers, duplicates)."""


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _decode_lines(path, encoding):
    """The file's text; a byte sequence the encoding cannot decode is reported by line."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        lineno = raw.count(b"\n", 0, exc.start) + 1
        raise AtomicFileError(f"{path}:{lineno}: not valid {encoding} ({exc.reason} at byte {exc.start}). "
                              f"Re-encode the file as {encoding}, or set encoding: <its encoding> in the "
                              "config (RecBole reads this file itself and cannot skip or repair a line, so "
                              "on_bad_line does not apply to it).") from None


def read_atomic_rows(path, sep="\t", encoding="utf-8"):
    """(header [(name, type)], iterator of (line number, fields)) with RecBole's reading rules (CSV quoting)."""
    reader = csv.reader(io.StringIO(_decode_lines(path, encoding), newline=""), delimiter=sep, quotechar='"')
    try:
        head = next(reader)
    except StopIteration:
        raise AtomicFileError(f"{path}:1: empty file (expected a header like 'user_id:token{sep}item_id:token')")
    header = []
    for col in head:
        name, _, typ = col.partition(":")
        if typ not in RECBOLE_TYPES:
            raise AtomicFileError(f"{path}:1: header column '{col}' needs a type: name:{'|'.join(RECBOLE_TYPES)}.")
        header.append((name, typ))

    def rows():
        start = reader.line_num
        for fields in reader:
            if fields:
                yield start + 1, fields
            start = reader.line_num
    return header, rows()


def check_atomic_file(path, config, role="inter"):
    """Check one atomic file; returns {'rows', 'exact_duplicates'} or raises AtomicFileError (file:line).

    Checked: every line has as many fields as the header; float fields are numbers (empty =
    unknown, except the time field, which must be a finite number); float_seq entries are
    numbers; user/item ids are non-empty; exact duplicate interactions (same user, item and
    time) are counted and handled by ``inter_duplicates``.
    """
    sep = setting(config, "field_separator")
    seq_sep = setting(config, "seq_separator")
    header, rows = read_atomic_rows(path, sep, setting(config, "encoding"))
    load_col = setting(config, "load_col")
    wanted = load_col.get(role) if isinstance(load_col, dict) else None
    names = [n for n, _ in header]
    time_field = setting(config, "TIME_FIELD")
    id_fields = {setting(config, "USER_ID_FIELD"), setting(config, "ITEM_ID_FIELD")}
    checked = [(i, n, t) for i, (n, t) in enumerate(header) if wanted is None or n in wanted]
    key_cols = [names.index(f) for f in (*sorted(id_fields), time_field) if f in names] if role == "inter" else []
    problems, n_problems, n_rows = [], 0, 0
    seen, duplicates = {}, []

    def problem(lineno, text):
        nonlocal n_problems
        n_problems += 1
        if len(problems) < MAX_REPORTED:
            problems.append(f"  {path}:{lineno}: {text}")

    for lineno, fields in rows:
        n_rows += 1
        if len(fields) != len(header):
            problem(lineno, f"{len(fields)} fields, the header has {len(header)} ({', '.join(names)}); "
                            f"a missing value is an empty field between two separators")
            continue
        for i, name, typ in checked:
            value = fields[i]
            if name in id_fields and not value.strip():
                problem(lineno, f"{name} is empty")
            elif typ == "float" and (value.strip() or name == time_field):
                if _finite_float(value) is None:
                    what = "a finite number" if name == time_field else "a number (or empty for unknown)"
                    problem(lineno, f"{name}={value!r} is not {what}")
            elif typ == "float_seq":
                bad = [v for v in value.split(seq_sep) if v and _finite_float(v) is None]
                if bad:
                    problem(lineno, f"{name}: {bad[0]!r} is not a finite number")
        if key_cols:
            key = tuple(fields[c] for c in key_cols)
            if key in seen:
                duplicates.append((lineno, seen[key]))
            else:
                seen[key] = lineno
    if n_problems:
        more = f"\n  ... and {n_problems - len(problems)} more" if n_problems > len(problems) else ""
        raise AtomicFileError(f"{path}: {n_problems} malformed line(s) (RecBole would fill or guess these "
                              "silently):\n" + "\n".join(problems) + more)
    return {"rows": n_rows, "exact_duplicates": duplicates}


def check_atomic_files(config):
    """Check every atomic file the config loads; handle exact duplicate interactions per ``inter_duplicates``."""
    mode = setting(config, "inter_duplicates")
    for role, path in expected_files(config):
        source = "inter" if role.startswith("inter") else role
        duplicates = check_atomic_file(path, config, source)["exact_duplicates"]
        if not duplicates:
            continue
        examples = ", ".join(f"line {a} repeats line {b}" for a, b in duplicates[:5])
        what = (f"{path}: {len(duplicates)} exact duplicate interaction(s) (same user, item and time; "
                f"{examples})")
        if mode == "error":
            raise AtomicFileError(f"{what}. Each repeat would count as a separate interaction (and leak into "
                                  "valid/test). Remove them, or set inter_duplicates: drop (keep the first of "
                                  "each user-item pair, RecBole's rm_dup_inter: first) or keep.")
        if mode == "drop":
            if not setting(config, "rm_dup_inter"):
                config["rm_dup_inter"] = "first"
            getLogger().warning(f"{what}: dropped (rm_dup_inter={config['rm_dup_inter']}).")
        else:
            getLogger().warning(f"{what}: kept (inter_duplicates: keep).")
