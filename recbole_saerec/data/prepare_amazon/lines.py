"""Reading raw lines and fields, whatever the input form: gzip or plain, the bad-line policy, text cleaning."""
import ast
import gzip
import io
import math
import os
import re
import sys

from recbole_saerec.data import text
from recbole_saerec.data.prepare_amazon.schema import CATEGORY_JOINER, PrepareError


def _progress(total, desc, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                file=sys.stderr)


def iter_lines(path, show_progress=True, desc=None):
    """Yield (line_number, raw bytes line) of a plain or gzip file (detected by its magic bytes),
    with a byte-level progress bar over the file on disk."""
    size = os.path.getsize(path)
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if gz else raw
        bar = _progress(size, desc or os.path.basename(path), show_progress)
        done = lineno = 0
        try:
            for lineno, line in enumerate(stream, 1):
                if bar is not None and lineno % 2000 == 0:
                    pos = raw.tell()
                    bar.update(pos - done)
                    done = pos
                yield lineno, line
        except (OSError, EOFError) as exc:  # truncated / corrupt gzip
            raise PrepareError(f"{path}: cannot read past line {lineno} (truncated or corrupt file?): {exc}") from exc
        finally:
            if bar is not None:
                bar.update(size - done)
                bar.close()


def open_text(path):
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    if gz:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


class BadLines(text.BadLines):
    """--on_bad_line (data/text.py): raise PrepareError with file and line number, or skip / repair and count."""

    def __init__(self, mode):
        super().__init__(mode, error=PrepareError)


def decode_line(line, path, lineno, bad):
    return bad.decode(line, path, lineno)


_WS = re.compile(r"\s+")


def clean_text(value):
    """One line of text: tabs/newlines/runs of spaces -> one space; None -> ''."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(clean_text(v) for v in value)
    return _WS.sub(" ", str(value)).strip()


def join_categories(value):
    """2014 meta `categories` is a list of category paths (lists); RecBole's item file a
    Python-literal list body. -> names de-duplicated in order, joined with ' | '."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ""
        try:
            value = ast.literal_eval("[" + text + "]") if not text.startswith("[") else ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return clean_text(text)
    names = []

    def walk(v):
        if isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        else:
            name = clean_text(v)
            if name and name not in names:
                names.append(name)

    walk(value)
    return CATEGORY_JOINER.join(names)


def to_float(value):
    if value is None or value == "":
        return None
    try:
        out = float(str(value).replace("$", "").replace(",", "").strip())
    except ValueError:
        return None
    return out if math.isfinite(out) else None
