"""The house rules for imports, read from the source (every import, function-level ones included).

Top-level packages depend one way (docs/ARCHITECTURE.md §Dependencies): simulators -> kernel; ingest -> kernel;
decoders -> ingest + kernel; microservices -> ingest + kernel; registry -> microservices SDK (and what
it stands on) + kernel; evaluation (services scored against the simulators' truth) -> the services, the simulators,
ingest and the kernel; stack, the composition root, -> anything but evaluation. Only tests and benchmarks import
evaluation. Inside the registry the HTTP side
(registry/api) calls the domain and never the other way round.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "sitepulse"
ALLOWED: dict[str, set[str]] = {
    KERNEL: set(),
    "simulators": {KERNEL},
    "ingest": {KERNEL},
    "decoders": {"ingest", KERNEL},
    "microservices": {"ingest", KERNEL},
    "registry": {"microservices", "ingest", KERNEL},
    "evaluation": {"microservices", "simulators", "ingest", KERNEL},
    "stack": {"registry", "microservices", "decoders", "ingest", "simulators", KERNEL},
}
# Imports against the rules that exist today, each with the work that removes it. The test fails when a new
# one appears AND when one listed here is gone (then delete its line), so this list only ever shrinks.
KNOWN: dict[tuple[str, str], str] = {}  # none left


def _imports(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from package import module`` imports the module too (other names are not modules: harmless)
            names.update({node.module, *(f"{node.module}.{alias.name}" for alias in node.names)})
    return names


def _modules(package: str) -> dict[str, set[str]]:
    """Module path (``registry/api/app.py``) -> the modules it imports, for one top-level package."""
    return {str(p.relative_to(ROOT)): _imports(p) for p in sorted((ROOT / package).rglob("*.py"))}


def _package_edges() -> dict[tuple[str, str], set[str]]:
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for package in ALLOWED:
        for module, imported in _modules(package).items():
            for name in imported:
                top = name.split(".")[0]
                if top in ALLOWED and top != package:
                    edges[(package, top)].add(module)
    return edges


def test_every_top_level_package_is_known() -> None:
    found = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert found == set(ALLOWED), "a new top-level package needs its place in ALLOWED"


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    wrong = {edge: sorted(modules) for edge, modules in _package_edges().items()
             if edge[1] not in ALLOWED[edge[0]] and edge not in KNOWN}
    assert wrong == {}, "imports against the layering (package -> package: modules)"


def test_known_exceptions_still_exist() -> None:
    gone = set(KNOWN) - set(_package_edges())
    assert not gone, f"fixed, so remove from KNOWN: {sorted(gone)}"


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    found = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == path[0]:
                found.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its smallest node
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    return found


def test_the_rules_and_the_packages_have_no_import_loop() -> None:
    assert _cycles({(a, b) for a, deps in ALLOWED.items() for b in deps}) == []
    assert _cycles(set(_package_edges()) - set(KNOWN)) == []


def test_no_import_loop_between_modules_of_microservices() -> None:
    # a package's __init__ importing its own service class is how entry points find it, not a loop of code
    modules = {".".join(Path(path).with_suffix("").parts).removesuffix(".__init__"): imported
               for path, imported in _modules("microservices").items()}
    edges = {(m, n) for m, imported in modules.items() for n in imported
             if n in modules and n != m and not m.startswith(n + ".")}
    assert _cycles(edges) == [], "import loops between modules of microservices/"


def test_loop_detection_finds_a_loop() -> None:
    assert _cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c", "a"]]


def test_the_registry_domain_never_imports_its_http_side() -> None:
    """registry/api/* -> registry/*: the domain knows nothing of FastAPI, HTTP or app.state."""
    wrong = {module: sorted(n for n in imported if n.startswith(("registry.api", "fastapi", "starlette")))
             for module, imported in _modules("registry").items() if not module.startswith("registry/api/")}
    assert {m: names for m, names in wrong.items() if names} == {}


def test_http_errors_are_mapped_in_one_place() -> None:
    """Routes raise the kernel's error kinds; only registry/api/errors.py knows HTTP exceptions."""
    raising = [module for module, imported in _modules("registry").items()
               if module != "registry/api/errors.py"
               and "HTTPException" in (ROOT / module).read_text(encoding="utf-8")]
    assert raising == []


def test_app_state_is_touched_only_by_state_py() -> None:
    touching = [module for module in _modules("registry")
                if module != "registry/api/state.py" and ".app.state" in (ROOT / module).read_text(encoding="utf-8")]
    assert touching == []


# A service folder stands alone: it imports the SDK's modules, ingest's and the kernel's, never another service
# folder. Exceptions, each with the work that removes it (failing once gone, like KNOWN).
KNOWN_BETWEEN_SERVICES: dict[tuple[str, str], str] = {}


def _service_edges() -> dict[tuple[str, str], set[str]]:
    services = {p.name for p in (ROOT / "microservices").iterdir() if (p / "__init__.py").exists()}
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for module, imported in _modules("microservices").items():
        parts = module.split("/")
        if len(parts) > 2 and parts[1] in services:
            for name in imported:
                other = name.split(".")
                if other[0] == "microservices" and len(other) > 1 and other[1] in services - {parts[1]}:
                    edges[(parts[1], other[1])].add(module)
    return edges


def test_a_service_folder_imports_no_other_service_folder() -> None:
    edges = _service_edges()
    assert {e: sorted(m) for e, m in edges.items() if e not in KNOWN_BETWEEN_SERVICES} == {}
    gone = set(KNOWN_BETWEEN_SERVICES) - set(edges)
    assert not gone, f"fixed, so remove from KNOWN_BETWEEN_SERVICES: {sorted(gone)}"
