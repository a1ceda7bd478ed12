"""Commands from entry points, imported only to run: ``sitepulse --help`` must not import pandas, numba and FastAPI.

Every command's module pulls in the heavy stack (a micro-service compiles its numba kernels at import), so
building the whole command tree took seconds. Here a group lists its commands from their *source*: the
docstring of an entry's function, or the ``help=`` of its ``typer.Typer``, read with ``ast`` from the file the
entry names (found with ``importlib.util.find_spec`` on the top-level package, which imports nothing). A
command's module is imported when that command is run (or asked for its own ``--help``). Nothing is kept in
sync by hand: a plugin's one entry-point line is still all it takes.

An entry whose package is not installed is left out of the help with one warning line; one whose module fails
to import is an error of that command alone, one line, when it is run.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, Literal

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from sitepulse.errors import SitePulseError


@dataclass(frozen=True)
class Summary:
    """What the help of a group needs to know about an entry without importing it."""

    kind: Literal["command", "group"]
    help: str


@dataclass(frozen=True)
class Located:
    """Where an entry's module is: ``installed`` is False when its top-level package is missing."""

    installed: bool
    source: Path | None


def locate(module: str) -> Located:
    """The source file of ``module`` without importing it (nor its parent packages)."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return Located(False, None)
    if not rest:
        origin = spec.origin
        return Located(True, Path(origin) if origin and origin.endswith(".py") else None)
    for base in spec.submodule_search_locations or []:
        for candidate in (Path(base, *rest[:-1], rest[-1] + ".py"), Path(base, *rest, "__init__.py")):
            if candidate.is_file():
                return Located(True, candidate)
    return Located(True, None)  # compiled or generated: the help line waits for the import


def _is_typer_call(node: ast.expr | None) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "Typer") or (
        isinstance(func, ast.Attribute) and func.attr == "Typer")


def _help_keyword(call: ast.Call) -> str:
    for keyword in call.keywords:
        if keyword.arg == "help" and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str):
            return keyword.value.value
    return ""


@cache
def definitions(source: Path) -> dict[str, Summary]:
    """The module-level functions (commands) and ``typer.Typer`` objects (groups) a source file defines."""
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    except (OSError, SyntaxError, ValueError):
        return {}  # the import will say what is wrong, when the command is run
    found: dict[str, Summary] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[node.name] = Summary("command", ast.get_docstring(node) or "")
        elif isinstance(node, ast.Assign | ast.AnnAssign) and _is_typer_call(node.value):
            assert isinstance(node.value, ast.Call)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    found[target.id] = Summary("group", _help_keyword(node.value))
    return found


def summarize(entry: EntryPoint) -> Summary | None:
    """The entry's kind and help from its source; None when its package is not installed."""
    located = locate(entry.module)
    if not located.installed:
        return None
    attribute = (entry.attr or "").split(".")[0]
    known = definitions(located.source).get(attribute) if located.source else None
    return known or Summary("command", "")


def unavailable(entry: EntryPoint, problem: str) -> str:
    return f"command {entry.name!r} from {entry.value} is unavailable: {problem}"


def _not_installed(entry: EntryPoint) -> str:
    return unavailable(entry, f"package {entry.module.split('.')[0]!r} is not installed")


def load_command(name: str, entry: EntryPoint) -> TyperCommand | TyperGroup:
    """Import the entry and turn it (a function or a ``typer.Typer``) into the command typer runs."""
    try:
        target: Any = entry.load()
    except Exception as exc:  # a broken plugin costs its own command, said in one line
        raise SitePulseError(unavailable(entry, f"{type(exc).__name__}: {exc}")) from None
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = name
        return group
    if callable(target):
        holder = typer.Typer()
        holder.command(name)(target)
        return typer.main.get_group(holder).commands[name]
    raise SitePulseError(unavailable(entry, "it is neither a function nor a typer.Typer"))


class LazyGroup(TyperGroup):
    """A group of commands named by entry points, each imported only when it is run.

    ``entries`` maps an entry point's name to it: ``NAME`` is a command or a group of its own, ``GROUP.NAME``
    a command in ``GROUP`` (filled by any number of packages). Until run, a command is a stand-in that carries
    the help its source declares; ``resolve_command`` (the step before running it) swaps in the real one.
    """

    entries: tuple[tuple[str, EntryPoint], ...] = ()  # (name in this group, entry point)
    group_help: dict[str, str] = {}

    def __init__(self, *args: Any, entries: tuple[tuple[str, EntryPoint], ...] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if entries is not None:
            self.entries = entries
        self._pending: dict[str, EntryPoint | tuple[tuple[str, EntryPoint], ...]] = {}
        self._missing: list[str] = []
        self._mount()

    def _mount(self) -> None:
        members: dict[str, list[tuple[str, EntryPoint]]] = {}
        commands: dict[str, TyperCommand] = {}
        groups: dict[str, TyperCommand] = {}
        for local_name, entry in self.entries:
            name, _, member = local_name.partition(".")
            if member:
                members.setdefault(name, []).append((member, entry))
                continue
            summary = summarize(entry)
            if summary is None:
                self._missing.append(_not_installed(entry))
                continue
            (groups if summary.kind == "group" else commands)[name] = TyperCommand(name=name, help=summary.help)
            self._pending[name] = entry
        for name, group_entries in members.items():
            if not any(summarize(entry) for _, entry in group_entries):
                self._missing.extend(_not_installed(entry) for _, entry in group_entries)
                continue
            groups[name] = TyperCommand(name=name, help=self._help_of(name))
            self._pending[name] = tuple(group_entries)
        for name in sorted(commands) + sorted(groups):
            self.commands[name] = commands.get(name) or groups[name]

    def _help_of(self, group: str) -> str:
        return self.group_help.get(group, f"The {group} commands.")

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name = args[0] if args else None
        pending = self._pending.pop(name, None) if name else None
        if isinstance(pending, tuple):
            self.commands[name] = type(self)(name=name, help=self._help_of(name), no_args_is_help=True,
                                             rich_markup_mode=self.rich_markup_mode, entries=pending)
        elif pending is not None:
            self.commands[name] = load_command(name, pending)
        return super().resolve_command(ctx, args)

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        if self._missing:
            from rich.console import Console

            for problem in self._missing:
                Console(stderr=True).print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)
        super().format_help(ctx, formatter)
