"""File writes that never leave a torn file, and the checks that tell a damaged file apart.

* :func:`atomic_path`: the one atomic write (a unique temporary beside the target, fsync, rename);
  :func:`write_json_atomic` and :func:`save_tensor_file_atomic` write through it. Every result,
  record, artefact and checkpoint of the plugin is written this way, so an interrupted or
  concurrent writer never leaves a torn file under the real name.
* :func:`tensor_file_damage`: why a torch file is cut short or overwritten (``DamagedFileError``),
  told apart from a whole file that merely needs pickle code.
* :func:`file_sha256`: the content hash manifests and run records keep.
"""
import hashlib
import json
import os
import tempfile
import zipfile
from contextlib import contextmanager

import torch


def _umask():
    mask = os.umask(0)  # the only way to read it is to set it; set back at once (at import, one thread)
    os.umask(mask)
    return mask


# mkstemp makes owner-only (0600) files; a plain open() makes 0666 less the umask. Atomic writes
# give their files the plain mode, so records and intents stay readable by a shared group or a
# Ray worker running as another user, exactly as if they had been written in place.
FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    The name is unique per writer (mkstemp), so two processes writing the same file never
    write into one temporary; a crash leaves at most a stray ``*.tmp``, never a torn ``path``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        os.chmod(tmp, FILE_MODE)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # the rename itself survives a power cut only once the directory is synced
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def write_json_atomic(path, obj):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)


def save_tensor_file_atomic(path, obj):
    # Through an open file, not the path: given a path, torch.save names the archive's inner folder
    # after the file, here the unique temporary name, so two identical saves differed in their bytes
    # and the sha256 the manifest records could not show that two builds are the same.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


class DamagedFileError(ValueError):
    """A tensor file (checkpoint, artefact) cut short or overwritten: no loader can read it."""


def tensor_file_damage(path):
    """Why ``path`` cannot be a whole torch file, or None when nothing is wrong with its structure.

    torch.save writes a zip archive whose members carry CRC-32 checksums: a file cut short lacks
    the archive's directory (at its end), and bytes overwritten inside fail a checksum. Telling
    this apart from a file that is whole but needs pickle code (``--trust_checkpoint``) keeps the
    advice right: no flag makes a damaged file loadable.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "it is empty (0 bytes)"
    if head[:2] != b"PK":
        # torch < 1.6 wrote a bare pickle (protocol 2 starts with 0x80): nothing to check
        return None if head[:1] == b"\x80" else f"it is not a torch file ({size} bytes, no zip archive)"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        return f"its zip archive is incomplete ({exc}; {size} bytes): the file was cut short"
    if bad is not None:
        return f"its part {bad} fails its checksum: bytes were overwritten"
    return None


def file_sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
