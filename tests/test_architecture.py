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
import re
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


def test_the_telemetry_fields_are_listed_once() -> None:
    """ingest/fields.py defines them; a tuple, list or set naming every float field elsewhere is a copy that drifts
    when a field is added (they were listed by hand in nine places). A service's ``consumes`` names a subset."""
    from ingest.fields import FLOAT_FIELDS

    every = {name for name, _, _ in FLOAT_FIELDS}

    copies = []
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "ingest" / "fields.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Tuple | ast.List | ast.Set):
                    if every <= {e.value for e in node.elts if isinstance(e, ast.Constant)}:
                        copies.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert copies == []


# --- tables: each package reads and writes its own, and another's only through the owner's functions ------------

_TABLE_DEFINED = re.compile(r"\b(?:CREATE\s+(?:UNLOGGED\s+)?(?:TABLE|(?:MATERIALIZED\s+)?VIEW)(?:\s+IF\s+NOT\s+EXISTS)?"
                            r"|ALTER\s+TABLE(?:\s+IF\s+EXISTS)?)\s+([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)", re.I)
_SQL_STATEMENT = re.compile(r"\b(?:SELECT|INSERT INTO|UPDATE|DELETE FROM|COPY)\b")  # SQL is written upper-case here
_TABLE_USED = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|COPY)\s+([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)")


def _owner(path: Path) -> str:
    """Who owns a file's tables: a top-level package, or a service folder (microservices/positioning) on its own."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == "microservices" and len(parts) > 2 and (ROOT / parts[0] / parts[1] / "__init__.py").exists():
        return f"{parts[0]}/{parts[1]}"
    return parts[0]


def table_owners() -> dict[str, set[str]]:
    """Table -> the packages whose migrations create or alter it (registry adds the alarm columns to
    service_alerts, so it co-owns that table)."""
    owners: dict[str, set[str]] = defaultdict(set)
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.sql")):
            for match in _TABLE_DEFINED.finditer(path.read_text(encoding="utf-8")):
                owners[match[1].lower()].add(_owner(path))
    return owners


def declared_dependencies() -> dict[str, set[str]]:
    """Service folder (microservices/traffic_awareness) -> the service folders its ``depends_on`` names. Reading a
    dependency's tables (KPI SQL, batch.read, routes) is the plugin contract (microservices/README.md), not a leak."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted((ROOT / "microservices").glob("*/*.py")):
        owner = _owner(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            named = isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "depends_on"
                                                         for t in node.targets)
            if named and isinstance(node.value, ast.Tuple | ast.List):
                found[owner].update(f"microservices/{e.value.replace('-', '_')}" for e in node.value.elts
                                    if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return found


def _foreign_table_uses() -> dict[tuple[str, str], set[int]]:
    """(module, table) -> lines where a module's SQL names a table its package does not own (a service may read
    the tables of the services it declares in ``depends_on``)."""
    owners = table_owners()
    dependencies = declared_dependencies()
    uses: dict[tuple[str, str], set[int]] = defaultdict(set)
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            found = _foreign_tables_in(path.read_text(encoding="utf-8"), _owner(path), owners, dependencies)
            for table, lines in found.items():
                uses[(str(path.relative_to(ROOT)), table)] |= lines
    return uses


def _foreign_tables_in(source: str, owner: str, owners: dict[str, set[str]],
                       dependencies: dict[str, set[str]]) -> dict[str, set[int]]:
    """Table -> lines where the SQL in one module's string constants names a table ``owner`` may not read."""
    found: dict[str, set[int]] = defaultdict(set)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL_STATEMENT.search(node.value):
            for match in _TABLE_USED.finditer(node.value):
                table = match[1].lower()
                if table in owners and owner not in owners[table] and not owners[table] & dependencies[owner]:
                    found[table].add(node.lineno)
    return found


# Raw SQL on another package's tables that exists today, each with the owner's function that replaces it. The test
# fails when a new one appears AND when one listed here is gone (then delete its line): this list only shrinks.
KNOWN_FOREIGN_TABLES: dict[tuple[str, str], str] = {}  # none left: cards, KPIs and routes get them from the host


def test_the_table_owners_come_from_the_migrations() -> None:
    owners = table_owners()
    assert owners["telemetry"] == {"ingest"} and owners["sites"] == {"sitepulse"}
    assert owners["positioning.zone_visits"] == {"microservices/positioning"}
    assert owners["service_alerts"] == {"microservices", "registry"}


def test_a_service_may_read_the_tables_of_the_services_it_depends_on() -> None:
    assert declared_dependencies()["microservices/traffic_awareness"] == {"microservices/positioning"}
    uses = _foreign_table_uses()
    assert ("microservices/traffic_awareness/service.py", "positioning.activity") not in uses
    assert declared_dependencies()["microservices/weight_loading"] == set()  # no depends_on: nothing allowed


def test_a_new_raw_read_of_another_packages_table_is_found() -> None:
    """The list above is empty: this shows the check still catches the reads it was made for (a card joining
    ingest's births, a route reading the registry's switches) and lets a service read its own and its dependency's."""
    source = '''
CARD = """SELECT t.zone FROM positioning.track_last t
          JOIN machines m ON m.machine_id = t.machine_id AND m.kind = 'hauler'"""
ROUTE = "SELECT enabled FROM service_enablement WHERE site_id = %(site)s"
OWN = "SELECT count(*) FROM traffic_awareness.queues"
'''
    found = _foreign_tables_in(source, "microservices/traffic_awareness", table_owners(), declared_dependencies())
    assert found == {"machines": {2}, "service_enablement": {4}}


def test_no_package_reads_another_packages_tables_with_raw_sql() -> None:
    uses = _foreign_table_uses()
    new = {key: sorted(lines) for key, lines in uses.items() if key not in KNOWN_FOREIGN_TABLES}
    assert new == {}, "call the owner's function instead ((module, table): lines)"
    gone = set(KNOWN_FOREIGN_TABLES) - set(uses)
    assert not gone, f"fixed, so remove from KNOWN_FOREIGN_TABLES: {sorted(gone)}"
