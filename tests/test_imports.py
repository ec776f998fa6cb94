"""The import graph of the ``semianchor`` package has no cycle.

Every module under ``semianchor/`` is parsed (nothing is imported) and each ``import`` /
``from ... import`` statement becomes an edge from the module to the package modules it loads:
the named module, and each package above it that the importer is not itself inside (importing
``semianchor.layers.atss`` from ``semianchor.extension`` runs ``semianchor/layers/__init__.py``).
Imports inside functions count as edges like module-level ones: they are deferred, not absent, and
a cycle through them is a dependency cycle all the same.
"""

import ast
import os
from typing import Dict, List, Optional, Set

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "semianchor"


def package_modules(root: str = REPO, package: str = PACKAGE) -> Dict[str, str]:
    """Dotted module name -> source path, for every .py file of the package."""
    modules = {}
    for folder, dirs, files in os.walk(os.path.join(root, package)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            parts = os.path.relpath(os.path.join(folder, name), root)[: -len(".py")].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = os.path.join(folder, name)
    return modules


def _base(module: str, is_package: bool, level: int, name: Optional[str]) -> str:
    """The absolute name a relative import of ``level`` dots (and ``name``) refers to."""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([name] if name else []))


def _loaded(target: str, importer: str, modules: Dict[str, str]) -> Set[str]:
    """The package modules an import of ``target`` executes, seen from ``importer``: ``target``
    (or its longest prefix that is a module) and its enclosing packages outside the importer's."""
    parts = target.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    out = set()
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if importer == name or importer.startswith(name + "."):
            continue  # the importer's own package (already being imported) or itself
        out.add(name)
    return out


def import_graph(
    modules: Optional[Dict[str, str]] = None, package: str = PACKAGE
) -> Dict[str, Set[str]]:
    """Module -> the package modules it imports (module-level and function-level statements)."""
    modules = package_modules() if modules is None else modules
    graph = {}
    for module, path in modules.items():
        is_package = path.endswith("__init__.py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        edges = set()
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _base(module, is_package, node.level, node.module)
                else:
                    base = node.module or ""
                # `from X import y`: X, and X.y when y is a submodule
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target == package or target.startswith(package + "."):
                    edges |= _loaded(target, module, modules)
        graph[module] = edges
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (or a self-import), each
    sorted; Tarjan's algorithm, iterative."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    cycles.append(sorted(component))
    return cycles


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and graph["semianchor.layers.atss"], "the graph was not built"
    cycles = find_cycles(graph)
    assert (
        not cycles
    ), "import cycles (each a set of modules that import each other):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


@pytest.mark.parametrize(
    "sources, cycle",
    [
        ({"a/__init__.py": "", "a/x.py": "from . import y", "a/y.py": "from .x import f"}, True),
        (
            {
                "a/__init__.py": "",
                "a/x.py": "def f():\n    from a import y",
                "a/y.py": "import a.x",
            },
            True,
        ),
        ({"a/__init__.py": "from .x import f", "a/x.py": "from .y import g", "a/y.py": ""}, False),
        (
            {
                "a/__init__.py": "",
                "a/top.py": "from .sub import h",
                "a/sub/__init__.py": "from .m import h",
                "a/sub/m.py": "from .. import top",
            },
            True,
        ),
    ],
)
def test_the_cycle_finder_on_small_packages(tmp_path, sources, cycle):
    for rel, text in sources.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    graph = import_graph(package_modules(str(tmp_path), "a"), "a")
    assert bool(find_cycles(graph)) == cycle, graph
