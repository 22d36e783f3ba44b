"""Layers that point one way: the rule docs/architecture.md states, checked on every import of the package.

The imports are read from the source (ast), lazy ones inside functions included: ``import a.b`` and
``from a import b`` count as importing module ``a.b`` when it is one, else ``a`` (the parent packages
Python runs on the way are not counted: a package's ``__init__`` is checked as a module of its own).
"""
import ast
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "recbole_saerec"


def package_modules():
    """{dotted module name: source path} of every module of the package."""
    out = {}
    for folder, _, files in os.walk(os.path.join(REPO, PACKAGE)):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), REPO)[:-3].replace(os.sep, ".")
                out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(folder, name)
    return out


MODULES = package_modules()


def imports_of(module):
    """{imported module of the package: line} for one module, lazy imports included."""
    path = MODULES[module]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `import recbole_saerec.a.b` of a name inside a module
                name = name.rpartition(".")[0]
            if name.startswith(PACKAGE) and name != module:
                found.setdefault(name, node.lineno)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def documented_layers():
    """[(layer name, {top-level module or package})] from docs/architecture.md's 'Layers' list."""
    with open(os.path.join(REPO, "docs", "architecture.md"), encoding="utf-8") as f:
        section = f.read().split("## Layers", 1)[1].split("\n## ", 1)[0]
    return [(name, set(re.findall(r"`(\w+)`", members)))
            for name, members in re.findall(r"^\d+\. \*\*([^*]+)\*\* \(([^)]*)\)", section, re.M)]


LAYERS = documented_layers()


def layer_of(module):
    top = module.split(".")[1] if "." in module else None
    return next((i for i, (_, members) in enumerate(LAYERS) if top in members), None)


def test_the_rule_is_stated_and_covers_the_whole_package():
    assert [name for name, _ in LAYERS][:2] == ["Foundations", "Data"] and len(LAYERS) >= 6
    unplaced = sorted({m.split(".")[1] for m in MODULES if "." in m and layer_of(m) is None})
    assert not unplaced, f"modules in no layer of docs/architecture.md: {unplaced}"


def test_every_import_points_to_its_own_layer_or_one_before_it():
    wrong = []
    for module, targets in GRAPH.items():
        for target, line in targets.items():
            if target == PACKAGE:  # the root package holds the version only
                continue
            if layer_of(target) > layer_of(module):
                wrong.append(f"{MODULES[module][len(REPO) + 1:]}:{line} ({LAYERS[layer_of(module)][0]}) imports "
                             f"{target} ({LAYERS[layer_of(target)][0]})")
    assert not wrong, "imports against the layers of docs/architecture.md:\n" + "\n".join(wrong)


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check sees one
    found = cycles(GRAPH)
    assert not found, "import cycles (lazy imports count):\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_module_imports_another_module_s_private_name():
    private = []
    for module, path in MODULES.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                private += [f"{path[len(REPO) + 1:]}:{node.lineno} {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert not private, "private names imported across modules (make them public):\n" + "\n".join(private)


def test_validating_a_config_loads_neither_the_pipeline_nor_torch():
    code = ("import sys, recbole_saerec.config_check; "
            "print(sorted(m for m in sys.modules if m.startswith('recbole_saerec')), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=REPO)).stdout
    assert out.strip() == ("['recbole_saerec', 'recbole_saerec.cli', 'recbole_saerec.config_check', "
                           "'recbole_saerec.settings'] False")
