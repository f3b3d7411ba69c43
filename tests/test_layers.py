"""The package's layers point one way, and no module imports itself in a circle.

Each layer may import only the layers before it in `ORDER` (imports inside functions count
too): storage knows nothing of scoring, the scorer nothing of its front ends.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

ORDER = (
    "schema",  # the column contract
    "io",  # storage: Parquet and atomic files
    "calibration",
    "testing",  # random checkpoints for tests and benchmarks
    "detectors",
    "pipeline",
    "provenance",
    "scorer",
    "sources",
    "runs",
    "filtering",
    "evaluation",
    "integrations",  # datasets, Ray and FiftyOne adapters over the scorer
    "app",  # one function per use case
    "cli",
)
# Storage imports nothing above the column contract.
STORAGE_MAY_IMPORT = {"schema", "io"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in (REPO / "curate").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, top_level_only: bool = False) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # imports only a type checker sees are not dependencies
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(n, m) for n, m in found if m.startswith("curate.")]


def _layer(module: str) -> str:
    return module.split(".")[1]


def test_every_module_is_in_a_layer():
    layers = {_layer(m) for m in _modules() if m != "curate"}
    assert layers <= set(ORDER), layers - set(ORDER)


def test_layers_point_one_way():
    upward = []
    for module, path in _modules().items():
        if module == "curate":
            continue
        mine = ORDER.index(_layer(module))
        for line, imported in _imports(path):
            theirs = _layer(imported)
            if theirs in ORDER and ORDER.index(theirs) > mine:
                upward.append(f"{path.relative_to(REPO)}:{line} imports {imported}")
            if _layer(module) == "io" and theirs not in STORAGE_MAY_IMPORT:
                upward.append(f"{path.relative_to(REPO)}:{line} (storage) imports {imported}")
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    modules = _modules()
    graph = {m: {i for _, i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    # A package's __init__ importing its own submodules is how re-exports work, not a circle.
    for m in graph:
        graph[m] = {i for i in graph[m] if not (i.startswith(m + ".") and m + "." in i)}
    seen, stack, cycles = set(), [], []

    def visit(node: str) -> None:
        if node in stack:
            cycles.append(stack[stack.index(node) :] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert not cycles, cycles
