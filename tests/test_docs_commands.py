"""Every command, link and name the docs give resolves: README.md and every page under docs/.

Commands: the ``python -m recbole_saerec...`` and ``run_recbole_saerec.py`` lines (code blocks, with
their continuation lines, and inline code) run as written: each module is asked for its ``--help``
once; a flag passes when that help lists it, or, for the commands that take config keys as
``--key=value``, when it is a config key the plugin or RecBole knows (or a label setting of explain /
steer). Placeholders (``<id>``, ``...``, ``[optional]`` brackets) are fine.

Links and names: every relative link (``[text](path)``, images too) points at a file or folder that
exists; every ``recbole_saerec.<module>[.<name>]`` in inline code imports; every repository path in
inline code (``docs/...``, ``tests/...``, ``recbole_saerec/...`` or a package folder such as
``intents/...``) exists. Outputs a command writes are named with a placeholder or in a code block.
"""
import functools
import glob
import importlib
import os
import re
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))
RUNNER = "run_recbole_saerec.py"
# commands that pass the --key=value items they do not parse themselves on as settings
TAKES_CONFIG_KEYS = {"recbole_saerec.intents", "recbole_saerec.experiments.tune", "recbole_saerec.experiments.benchmark",
                     RUNNER}
TAKES_LABEL_KEYS = {"recbole_saerec.analysis.explain", "recbole_saerec.analysis.steer"}


def _logical_lines(text):
    """Code-block lines with their backslash continuations joined, then inline code spans."""
    out, in_block, pending = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if in_block:
            line = pending + " " + line.strip() if pending else line.strip()
            if line.endswith("\\"):
                pending = line[:-1].strip()
                continue
            pending = ""
            out.append(line)
        else:
            out += re.findall(r"`([^`]*(?:python -m recbole_saerec|run_recbole_saerec\.py)[^`]*)`", line)
    return out


def doc_commands():
    """(page, command text) for every command of the docs, in page order."""
    found = []
    for path in DOCS:
        with open(path, encoding="utf-8") as f:
            for line in _logical_lines(f.read()):
                line = line.split(" # ")[0].split("  #")[0].strip()  # a trailing comment
                for part in re.split(r"\s*(?:&&|;|\|\|?)\s*", line):
                    # a command, not an error message quoting one ("python -m recbole_saerec.x: error: ...")
                    if re.search(r"(?:python(?:3)? -m recbole_saerec[\w.{},]*|" + re.escape(RUNNER) + r")(?:\s|$)", part):
                        # 'recbole_saerec.analysis.{explain,steer}' names each module
                        brace = re.search(r"\{([\w,]+)\}", part)
                        for alt in brace.group(1).split(",") if brace else [None]:
                            cmd = part if alt is None else part[:brace.start()] + alt + part[brace.end():]
                            found.append((os.path.relpath(path, REPO), cmd.strip()))
    return found


def parse(command):
    """(module or RUNNER, [flag names]) of one command; placeholders and brackets dropped."""
    text = command.replace("[", " ").replace("]", " ").replace("...", " ")
    try:
        words = shlex.split(text)
    except ValueError:  # an unbalanced quote in prose: split on spaces
        words = text.split()
    if "-m" in words:
        module, rest = words[words.index("-m") + 1], words[words.index("-m") + 2:]
    else:
        at = next(i for i, w in enumerate(words) if w.endswith(RUNNER))
        module, rest = RUNNER, words[at + 1:]
    flags = [w[2:].split("=")[0] for w in rest if w.startswith("--") and len(w) > 2]
    return module, flags


@functools.lru_cache(maxsize=None)
def help_text(module):
    """The command's --help (return code, text), run from the repository like the docs do."""
    argv = [sys.executable, RUNNER, "--help"] if module == RUNNER else [sys.executable, "-m", module, "--help"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"))
    return proc.returncode, proc.stdout + proc.stderr


@functools.lru_cache(maxsize=None)
def config_keys():
    from recbole_saerec.config_check import known_keys

    return frozenset(known_keys())


@functools.lru_cache(maxsize=None)
def label_keys():
    from recbole_saerec.analysis.labels import label_settings

    return frozenset(label_settings())


COMMANDS = doc_commands()


def test_the_docs_have_commands():
    modules = {parse(c)[0] for _, c in COMMANDS}
    assert len(COMMANDS) > 40 and {"recbole_saerec.analysis.explain", "recbole_saerec.experiments.benchmark",
                                   RUNNER} <= modules


@pytest.mark.parametrize("module", sorted({parse(c)[0] for _, c in COMMANDS}))
def test_every_module_a_doc_names_exists_and_answers_help(module):
    code, text = help_text(module)
    assert code == 0 and "usage" in text.lower(), f"{module} --help: {text[-1500:]}"


@pytest.mark.parametrize("page,command", COMMANDS, ids=[f"{p}:{c[:60]}" for p, c in COMMANDS])
def test_every_flag_of_a_doc_command_is_taken(page, command):
    module, flags = parse(command)
    code, text = help_text(module)
    if code != 0:
        pytest.fail(f"{page}: `{command}`: module {module} does not answer --help")
    listed = set(re.findall(r"--([A-Za-z0-9_]+)", text))
    wrong = []
    for flag in flags:
        if flag in listed or flag == "debug":  # --debug: every command (cli.run_main)
            continue
        if module in TAKES_CONFIG_KEYS and flag in config_keys():
            continue
        if module in TAKES_LABEL_KEYS and flag in label_keys():
            continue
        wrong.append(f"--{flag}")
    assert not wrong, f"{page}: `{command}`: {module} takes no {', '.join(wrong)}"


# ----------------------------------------------------------------------------- links and names
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REPO_ROOTS = ("docs/", "tests/", "scripts/", "recbole_saerec/", ".ci/")
PACKAGE = os.path.join(REPO, "recbole_saerec")
PACKAGE_FOLDERS = tuple(f"{d}/" for d in sorted(os.listdir(PACKAGE)) if os.path.isfile(os.path.join(PACKAGE, d, "__init__.py"))
                        or d == "properties")


def _prose(path):
    """A page without its fenced code blocks (commands and their outputs live there)."""
    with open(path, encoding="utf-8") as f:
        return re.sub(r"^```.*?^```", "", f.read(), flags=re.S | re.M)


def broken_links():
    out = []
    for path in DOCS:
        for target in LINK.findall(_prose(path)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):  # a URL, mailto:, an anchor
                continue
            if not os.path.exists(os.path.join(os.path.dirname(path), target.split("#")[0])):
                out.append(f"{os.path.relpath(path, REPO)}: ({target})")
    return out


def _resolves(dotted):
    """``recbole_saerec.a.b.name``: the longest prefix that is a module imports, and the rest are its attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = os.path.join(REPO, *parts[:i])
        if os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__init__.py")):
            obj = importlib.import_module(".".join(parts[:i]))
            return all(hasattr(obj := getattr(obj, a, None), "__name__") or obj is not None for a in parts[i:])
    return False


def broken_names():
    out = []
    for path in DOCS:
        for dotted in re.findall(r"`(recbole_saerec(?:\.\w+)+)`", _prose(path)):
            if not _resolves(dotted):
                out.append(f"{os.path.relpath(path, REPO)}: {dotted}")
    return out


def broken_paths():
    out = []
    for path in DOCS:
        for code in re.findall(r"`([^`\s]+)`", _prose(path)):
            name = code.split("::")[0].rstrip(".,:;)")
            if re.search(r"[<>*{}$=\\]|\.\.\.|^[a-z]+:", name) or not name.startswith(REPO_ROOTS + PACKAGE_FOLDERS):
                continue
            if not any(os.path.exists(os.path.join(root, name)) for root in (REPO, PACKAGE)):
                out.append(f"{os.path.relpath(path, REPO)}: {name}")
    return out


def test_every_relative_link_resolves():
    assert not broken_links(), "links to nothing:\n" + "\n".join(broken_links())


def test_every_module_name_imports():
    assert not broken_names(), "names that do not import:\n" + "\n".join(broken_names())


def test_every_repository_path_exists():
    assert not broken_paths(), "paths that do not exist:\n" + "\n".join(broken_paths())
