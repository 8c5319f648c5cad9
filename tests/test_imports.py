"""The import graph of zoo/: the library never imports its tools, and zoo's packages form no cycle.

Read from the source (ast), so every import counts, also those inside functions. Print the
graph with `python tests/test_imports.py` (packages) or `python tests/test_imports.py --modules`.
"""

import ast
import pathlib
import sys
from collections import defaultdict

ROOT = pathlib.Path(__file__).resolve().parents[1] / "zoo"


def modules(root=ROOT):
    """{module name: path} of every .py file under zoo/ (a package as its own name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported_names(tree):
    """(name, line, at import time) of each absolute `zoo` import in a module's syntax tree."""
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from zoo.x import y` imports zoo.x.y when y is a module, else zoo.x.
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "zoo" or name.startswith("zoo."):
                yield name, node.lineno, id(node) in top


def module_graph(mods=None, import_time_only=False):
    """{module: {imported module: line}}. Importing zoo.a.b also runs zoo/a/__init__.py, so it
    is an edge to zoo.a as well (the root package `zoo` aside)."""
    mods = modules() if mods is None else mods
    graph = defaultdict(dict)
    for mod, path in mods.items():
        for name, line, at_import in imported_names(ast.parse(path.read_text(), str(path))):
            if import_time_only and not at_import:
                continue
            while name not in mods and "." in name:
                name = name.rsplit(".", 1)[0]
            while name != "zoo":
                if name != mod and not mod.startswith(name + "."):
                    graph[mod].setdefault(name, line)
                name = name.rsplit(".", 1)[0]
    return graph


def package_of(module):
    """zoo.data.records -> zoo.data; zoo.errors -> zoo.errors."""
    return ".".join(module.split(".")[:2])


def package_graph(graph=None):
    """{package: {package: example 'module:line'}} of the edges between zoo's packages."""
    graph = module_graph() if graph is None else graph
    out = defaultdict(dict)
    for mod, targets in graph.items():
        for target, line in targets.items():
            a, b = package_of(mod), package_of(target)
            if a != b and a != "zoo":
                out[a].setdefault(b, f"{mod}:{line}")
    return out


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_only_tools_import_tools():
    offenders = [f"{mod} imports {target} (line {line})"
                 for mod, targets in module_graph().items() if not mod.startswith("zoo.tools")
                 for target, line in targets.items()
                 if target == "zoo.tools" or target.startswith("zoo.tools.")]
    assert not offenders, "the library imports its tools: " + "; ".join(offenders)


# Lazy imports that still close a package cycle, each with its owner; an entry must go once its
# import does (the test says so), and no new one may appear.
KNOWN_LAZY_CYCLE_EDGES = {
    # TextToImage.from_model_dir loads a run with zoo.train.loop.load_task (models -> train
    # while every task imports its model): to go when loading a run moves out of zoo.models.
    ("zoo.models.sampling", "zoo.train"),
}


def test_no_import_cycle_at_import_time():
    """Module-level imports (package __init__ files included) form no cycle: no module is
    ever run while half imported."""
    assert cycles(module_graph(import_time_only=True)) == []


def test_no_import_cycle_between_packages():
    graph = module_graph()
    known = {(m, t) for m, targets in graph.items() for t in targets
             if (m, package_of(t)) in KNOWN_LAZY_CYCLE_EDGES}
    stale = KNOWN_LAZY_CYCLE_EDGES - {(m, package_of(t)) for m, t in known}
    assert not stale, f"these imports are gone, drop them from KNOWN_LAZY_CYCLE_EDGES: {stale}"
    for m, t in known:
        del graph[m][t]
    found = cycles(package_graph(graph))
    detail = {a: {b: where for b, where in package_graph(graph)[a].items()
                  if any(b in c and a in c for c in found)} for c in found for a in c}
    assert not found, f"import cycles between zoo packages: {found}; edges: {detail}"


def test_the_checks_see_a_planted_tools_import_and_cycle(tmp_path):
    pkg = tmp_path / "zoo"
    for rel, text in {"__init__.py": "", "tools/__init__.py": "", "tools/encode.py": "",
                      "a/__init__.py": "from zoo.a import z\n", "b/__init__.py": "",
                      "a/x.py": "def f():\n    from zoo.tools.encode import read\n",
                      "b/y.py": "from zoo.a import x\n",
                      "a/z.py": "import zoo.b.y\n"}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    graph = module_graph(modules(pkg))
    assert graph["zoo.a.x"] == {"zoo.tools.encode": 2, "zoo.tools": 2}
    assert cycles(package_graph(graph)) == [["zoo.a", "zoo.b"]]
    assert cycles(module_graph(modules(pkg), import_time_only=True)) == [
        ["zoo.a", "zoo.a.z", "zoo.b.y"]]


def _print(graph):
    for node in sorted(graph):
        print(f"{node} -> {', '.join(sorted(graph[node]))}")


if __name__ == "__main__":
    _print(module_graph() if "--modules" in sys.argv else package_graph())
