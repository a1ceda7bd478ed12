"""No two modules of microservices/ import each other, function-level imports included (issue 23); that a service
folder imports no other service folder is tests/test_architecture.py's."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "microservices"
# Loops that exist today, each with the work that removes it; the test fails when one is gone (delete its line).
KNOWN_LOOPS: dict[tuple[str, ...], str] = {}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports (``from package import module`` names the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & modules
            found.update(submodules or ({node.module} & modules))
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}


def _loops(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Every import loop, once, as the sorted tuple of its modules."""
    found = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == path[0]:
                found.add(tuple(sorted(path)))
            elif nxt not in path and nxt > path[0]:
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    return found


def test_no_import_loop_inside_microservices() -> None:
    # a package's __init__ importing its own service class is how entry points find it, not a loop of code
    graph = {m: {n for n in deps if not m.startswith(n + ".")} for m, deps in _graph().items()}
    loops = _loops(graph)
    assert loops - set(KNOWN_LOOPS) == set(), "import loops between modules of microservices/"
    assert set(KNOWN_LOOPS) - loops == set(), "fixed, so remove from KNOWN_LOOPS"


def test_the_loop_finder_finds_a_loop() -> None:
    assert _loops({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}}) == {("a", "b", "c")}
