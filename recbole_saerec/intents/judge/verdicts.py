"""Verdicts: the five-level scale, parsing an LM's answer, and the keep rule (``intent_keep``)."""
import re

# the scale and the keep rules are value sets config_check validates too: defined in settings
from recbole_saerec.settings import KEEP_RULE_NAMES, KEEP_RULES, VERDICTS


class JudgeError(RuntimeError):
    """The judge cannot run (server unreachable, backend missing, bad config)."""


def parse_keep_rule(rule):
    """``intent_keep`` -> (verdicts kept, whether the grounding test applies too).

    ``yes`` | ``probably`` | ``maybe`` | ``none`` (verdict rules), ``grounded`` (the data
    grounding test alone, whatever the verdict: ``detection_auc >= intent_grounded_auc``
    and not mostly fragments), or ``grounded+yes`` / ``grounded+probably`` / ``grounded+maybe``
    (both must hold; for an LM judge). Case-insensitive; the boolean True (what YAML
    makes of an unquoted ``yes``) counts as ``yes``.
    """
    if rule is True:  # an unquoted `intent_keep: yes` in YAML 1.1
        rule = "yes"
    parts = sorted({p.strip() for p in str(rule).strip().lower().split("+") if p.strip()})
    grounded = "grounded" in parts
    rest = [p for p in parts if p != "grounded"]
    options = ", ".join(KEEP_RULE_NAMES)
    if len(rest) > 1 or (rest and rest[0] not in KEEP_RULES) or (grounded and rest == ["none"]) or not parts:
        raise ValueError(f"intent_keep={rule!r}: choose one of {options}.")
    if rest:
        return KEEP_RULES[rest[0]], grounded
    return VERDICTS, True


def keep_rule(verdict, rule, grounded=None):
    """Whether a latent with ``verdict`` survives ``intent_keep`` = ``rule`` (see :func:`parse_keep_rule`).

    ``yes`` (paper): Yes only; ``probably``: Yes or Probably; ``maybe``: Yes,
    Probably or Maybe; ``none``: everything, including No and Cannot tell (the
    noIde ablation: no filtering). A rule with ``grounded`` also needs ``grounded``
    (the latent passed the grounding test) to be True; None there is an error.
    """
    verdicts, needs_grounding = parse_keep_rule(rule)
    if needs_grounding and grounded is None:
        raise ValueError(f"intent_keep={rule!r} needs the grounding score of each latent "
                         "(recbole_saerec.intents.grounding); none was given.")
    return normalize_verdict(verdict) in verdicts and (not needs_grounding or bool(grounded))


def normalize_verdict(text):
    """The verdict that ``text`` starts with ('yes.', '**Probably**', "can't tell" ...), or None."""
    t = re.sub(r"[^a-z' ]+", " ", str(text).lower().replace("\u2019", "'"))
    t = " ".join(t.split())
    if not t:
        return None
    if re.match(r"(cannot|can not|can't|cant|unable to|impossible to) (tell|say|determine|judge|decide)", t) \
            or re.match(r"(unclear|unknown|undetermined|not sure|unsure|n a)\b", t):
        return "Cannot tell"
    if re.match(r"(probably|likely|most likely) not\b", t) or re.match(r"(no|not|nope|definitely not)\b", t):
        return "No"
    if re.match(r"(yes|definitely|certainly|absolutely)\b", t):
        return "Yes"
    if re.match(r"(probably|likely|most likely)\b", t):
        return "Probably"
    if re.match(r"(maybe|possibly|perhaps|somewhat|partially)\b", t):
        return "Maybe"
    return None


_LABEL = r"(?:final\s+)?(?:verdict|answer|rating|decision|judg(?:e)?ment|meaningful(?:\s+(?:user\s+)?intent)?|intent)"
_VERDICT_LINE = re.compile(r"\b" + _LABEL + r"\s*\??\s*[:=\-\u2013]\s*(.+)", re.IGNORECASE)
_SUMMARY_LINE = re.compile(r"\b(?:summary|theme|topic|label)\s*[:=\-\u2013]\s*(.+)", re.IGNORECASE)
_VERDICT_WORD = re.compile(r"\b(yes|probably|maybe|no|cannot tell|can't tell|can not tell)\b", re.IGNORECASE)


def _clean(text):
    text = re.sub(r"<think>.*?</think>", " ", str(text), flags=re.DOTALL | re.IGNORECASE)
    text = text.replace("\u2019", "'")
    return re.sub(r"[*_`#>]+", "", text)


def parse_verdict(text):
    """``(summary, verdict)`` from an LM answer, or None when no verdict is recognisable.

    Tolerant of case, markdown (``**Probably**``), punctuation (``Verdict: yes.``),
    both fields on one line, other labels ("Answer:", "Rating -"), ``<think>``
    blocks, and a bare verdict word on its own line. Text listing several
    verdicts without choosing ("Yes / Probably / Maybe / No") is None.
    """
    if text is None:
        return None
    text = _clean(text)
    summary, verdict = "", None
    m = _SUMMARY_LINE.search(text)
    if m:
        summary = m.group(1)
        # "Summary: X. Verdict: Yes" on one line -> cut at the verdict label
        cut = re.search(r"\b" + _LABEL + r"\s*\??\s*[:=\-\u2013]", summary, re.IGNORECASE)
        if cut:
            summary = summary[:cut.start()]
        summary = summary.strip().strip(" .;,\"'").strip()
    for m in _VERDICT_LINE.finditer(text):
        clause = re.split(r"[.,;:!?\-\u2013(]", m.group(1).strip(), maxsplit=1)[0]
        if len({normalize_verdict(w) for w in _VERDICT_WORD.findall(clause)}) > 1:
            continue  # "Yes/Probably/Maybe/No": the options, not a choice
        verdict = normalize_verdict(m.group(1))
        if verdict is not None:
            break
    lines = [ln.strip().strip(" .:;!\"'()[]") for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if verdict is None:
        # a line that is just a verdict ("Probably", "Yes." ...), last one wins
        for ln in reversed(lines):
            if _SUMMARY_LINE.match(ln):
                continue
            v = normalize_verdict(ln)
            if v is not None and len(ln.split()) <= 3:
                verdict = v
                break
    if verdict is None:
        # one distinct verdict word anywhere outside the summary line
        rest = [ln for ln in lines if not _SUMMARY_LINE.search(ln)]
        found = {normalize_verdict(w) for w in _VERDICT_WORD.findall(" ".join(rest))}
        if len(found) == 1:
            verdict = found.pop()
    if verdict is None:
        return None
    if not summary:
        for ln in lines:
            if not _VERDICT_LINE.search(ln) and normalize_verdict(ln) is None:
                summary = ln
                break
    return summary[:200], verdict

