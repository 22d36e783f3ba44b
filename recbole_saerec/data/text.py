"""Text whose bytes are not valid in their encoding: one policy wherever the plugin reads text.

The same three choices, under the same name, at every place that decodes text: the prepare
command (``--on_bad_line``), and through the config key ``on_bad_line`` (``--on_bad_line=...``
on any command line) the intent corpus, GuidedRec's and the explanations' item text, and the
intent judge (its verdict cache and a language-model server's answers):

* ``error`` (the default): stop at the first such line, naming ``file:line``, the byte and the fix;
* ``skip``: leave the line out, count it per file and report the count (a warning, and the
  prepare command's summary), so nothing is dropped unannounced;
* ``replace``: keep the line, each undecodable byte replaced by U+FFFD (``\ufffd``), counted and
  reported the same way. A line that is malformed for another reason (bad JSON, too few fields)
  cannot be repaired and is skipped.

Lines are decoded one at a time (split on ``\\n``, which every ASCII-compatible encoding keeps
as a line end), so one bad byte affects one line, never the whole file. The atomic files RecBole
itself loads are checked separately (:mod:`recbole_saerec.data.check`) and always refused:
RecBole's reader cannot skip or repair a line.
"""
import os
from collections import OrderedDict
from logging import getLogger

from recbole_saerec.settings import TEXT_POLICIES as POLICIES

REPLACEMENT = "\ufffd"
MAX_EXAMPLES = 10


class BadTextError(ValueError):
    """A line of text that cannot be read under the ``error`` policy (names file and line)."""


def fix_hint(flag="--on_bad_line"):
    return (f"re-encode the file, or pass {flag}=skip (leave such lines out) or {flag}=replace (keep them, "
            "each bad byte as U+FFFD)")


class BadLines:
    """The policy for one reading job: raise (``error``) or count what was skipped or repaired.

    ``error``: the exception class raised under the ``error`` policy (the prepare command's own).
    """

    def __init__(self, mode, error=BadTextError, flag="--on_bad_line"):
        if mode not in POLICIES:
            raise error(f"{flag} must be one of {', '.join(POLICIES)}, not {mode!r}.")
        self.mode, self.error, self.flag = mode, error, flag
        self.counts = OrderedDict()    # file name -> lines skipped
        self.replaced = OrderedDict()  # file name -> lines kept with U+FFFD
        self.examples = []

    def _note(self, table, path, lineno, reason):
        name = os.path.basename(str(path))
        table[name] = table.get(name, 0) + 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{name}:{lineno}: {reason}")

    def __call__(self, path, lineno, reason):
        """A malformed line (any reason): raise, or skip and count it (``replace`` skips it too)."""
        if self.mode == "error":
            raise self.error(f"{path}:{lineno}: malformed line: {reason} "
                             f"(pass {self.flag}=skip to skip and count such lines)")
        self._note(self.counts, path, lineno, reason)

    def decode(self, raw, path, lineno, encoding="utf-8"):
        """``raw`` (bytes of one line) as text; None when the line is to be left out."""
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as exc:
            reason = (f"not valid {encoding} ({exc.reason} at byte {exc.start + 1} of the line: "
                      f"{raw[exc.start:exc.end]!r})")
            if self.mode == "error":
                raise self.error(f"{path}:{lineno}: {reason}. Fix: {fix_hint(self.flag)}.") from None
            if self.mode == "skip":
                self._note(self.counts, path, lineno, reason)
                return None
            self._note(self.replaced, path, lineno, reason + ", kept with U+FFFD")
            return raw.decode(encoding, errors="replace")

    @property
    def total(self):
        return sum(self.counts.values())

    @property
    def total_replaced(self):
        return sum(self.replaced.values())

    def report(self, what="text"):
        """One warning when lines were skipped or repaired (silent otherwise)."""
        if self.total or self.total_replaced:
            parts = [f"{n} line(s) of {name} skipped" for name, n in self.counts.items()]
            parts += [f"{n} line(s) of {name} kept with U+FFFD for bad bytes" for name, n in self.replaced.items()]
            getLogger().warning(f"{what}: {'; '.join(parts)} ({self.flag}={self.mode}; e.g. {self.examples[0]})")


def decode_lines(binary_file, path, bad, encoding="utf-8"):
    """The lines (ends kept) of an open binary file as text under the policy ``bad``; skipped lines are
    not yielded. Feeds ``csv.reader`` where a text-mode file would decode the whole file strictly."""
    for lineno, raw in enumerate(binary_file, 1):
        text = bad.decode(raw, path, lineno, encoding)
        if text is not None:
            yield text


def iter_lines(path, bad, encoding="utf-8"):
    """(line number, text without its line end) of a file's lines under the policy ``bad``."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            text = bad.decode(raw, path, lineno, encoding)
            if text is not None:
                yield lineno, text.rstrip("\r\n")


def read_text(path, bad, encoding="utf-8", header_lines=1):
    """The whole file as text under the policy ``bad``; the first ``header_lines`` are always strict
    (without its header a table cannot be read at all)."""
    strict = BadLines("error", error=bad.error, flag=bad.flag)
    out = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            text = (strict if lineno <= header_lines else bad).decode(raw, path, lineno, encoding)
            if text is not None:
                out.append(text)
    return "".join(out)
