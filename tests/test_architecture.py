"""The import contract: layers import one way (down), siblings in a layer do not import each other, and no
module imports itself back through others (no cycle), lazy imports inside functions included.

Read from the source with ``ast`` (nothing is imported), so it runs in milliseconds and names the line.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "edgefuse"

# Bottom to top. A module may import from its own package and from any package in a lower layer;
# packages in the same layer (one tuple) are independent of each other.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("utils", "progress", "metrics", "data"),
    ("devices",),
    ("models", "clips"),
    ("graph",),
    ("export", "quantize"),
    ("backends",),
    ("estimate",),
    ("validate", "bench"),
    ("lab",),
    ("demo",),
    ("cli",),
    ("__main__",),
]
LAYER_OF = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = f
    return mods


def _imports(mods: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(importer, imported module, line) for every edgefuse import, at module level or inside functions."""
    out = []
    for name, f in mods.items():
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parts + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t.startswith("edgefuse") and t != name:
                    out.append((name, t, node.lineno))
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "errors"  # edgefuse/__init__.py holds only the version and the error


def layer_violations(edges: list[tuple[str, str, int]]) -> list[str]:
    bad = []
    for src, dst, line in edges:
        a, b = _package(src), _package(dst)
        if a == b:
            continue
        if a not in LAYER_OF or b not in LAYER_OF:
            bad.append(f"{src}:{line} -> {dst}: a package missing from LAYERS (add it to the contract)")
        elif LAYER_OF[b] > LAYER_OF[a]:
            bad.append(f"{src}:{line} -> {dst}: upward import ({a} is below {b})")
        elif LAYER_OF[b] == LAYER_OF[a]:
            bad.append(f"{src}:{line} -> {dst}: {a} and {b} are independent siblings")
    return bad


def cycles(edges: list[tuple[str, str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for src, dst, _ in edges:
        graph[src].add(dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on_stack.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = len(index)
                stack.append(w)
                on_stack.add(w)
                work.append((w, iter(sorted(graph[w]))))
            elif w in on_stack:
                low[v] = min(low[v], index[w])
    return found


@pytest.fixture(scope="module")
def edges() -> list[tuple[str, str, int]]:
    return _imports(_modules())


def test_every_package_has_a_layer() -> None:
    packages = {_package(m) for m in _modules()}
    assert packages <= set(LAYER_OF), sorted(packages - set(LAYER_OF))


def test_every_package_installs() -> None:
    """pyproject.toml lists packages explicitly (two data folders are mapped in): each package folder is listed."""
    import tomllib

    listed = set(tomllib.loads((ROOT.parent / "pyproject.toml").read_text(encoding="utf-8"))
                 ["tool"]["setuptools"]["packages"])
    on_disk = {".".join(f.parent.relative_to(ROOT.parent).parts) for f in ROOT.rglob("__init__.py")}
    assert on_disk - listed == set()


def test_imports_run_one_way(edges: list[tuple[str, str, int]]) -> None:
    assert layer_violations(edges) == []


def test_no_import_cycle(edges: list[tuple[str, str, int]]) -> None:
    assert cycles(edges) == []


def test_the_contract_catches_what_it_forbids() -> None:
    """The checks fail on an upward import, a sibling import and a cycle (so a pass means something)."""
    assert layer_violations([("edgefuse.graph.query", "edgefuse.backends.sidecar", 3)])
    assert layer_violations([("edgefuse.export.api", "edgefuse.quantize.qdq", 5)])
    assert layer_violations([("edgefuse.models.tsm", "edgefuse.newthing", 1)])
    assert not layer_violations([("edgefuse.backends.ort.int8", "edgefuse.quantize.qdq", 9)])
    assert cycles([("edgefuse.a", "edgefuse.b", 1), ("edgefuse.b", "edgefuse.c", 1), ("edgefuse.c", "edgefuse.a", 1)])
    assert not cycles([("edgefuse.a", "edgefuse.b", 1), ("edgefuse.b", "edgefuse.c", 1)])
