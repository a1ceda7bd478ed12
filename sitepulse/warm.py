"""numba kernels: compiled once at install time (``sitepulse warm``), and announced when compiled later.

A service module compiles its kernels when it is imported (so a live stream never stalls on a compile) and
numba caches the machine code on disk (``cache=True``). Without a warm-up the first command that loads the
services (``services list``, ``serve``, ``demo``) spent about 20 s compiling without a word; ``make install``
runs ``sitepulse warm``. Where the cache is still cold (a plain ``pip install``, a changed kernel) the CLI says
so in one line before the first compile: ``announce_compiles`` hooks numba's compile event as soon as numba is
imported, without importing it itself (``sitepulse --help`` must stay light).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import time
from importlib.machinery import ModuleSpec
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from sitepulse.errors import SitePulseError

SERVICES_GROUP = "sitepulse.microservices"
COMPILING = ("compiling numba kernels: once after an install or a change, then cached "
             "(`sitepulse warm` does it ahead; up to a minute)")


def _say(line: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(line, highlight=False, soft_wrap=True)


def _listen_for_the_first_compile() -> None:
    """Print COMPILING before numba's first compile in this process (a cache hit is no compile)."""
    from numba.core import event

    class FirstCompile(event.Listener):
        said = False

        def on_start(self, _event: event.Event) -> None:
            if not self.said:
                self.said = True
                _say(COMPILING)

        def on_end(self, _event: event.Event) -> None:
            pass

    event.register("numba:compile", FirstCompile())


class _ThenListen(importlib.abc.Loader):
    """numba's own loader, then the compile listener, once numba is imported."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _listen_for_the_first_compile()


class _WhenNumbaIsImported(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname != "numba":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)  # the real one: this finder is gone
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenListen(spec.loader)
        return spec


def announce_compiles() -> None:
    """Say in one line when numba starts compiling in this process (now if numba is loaded, else on import)."""
    if "numba" in sys.modules:
        _listen_for_the_first_compile()
    elif not any(isinstance(finder, _WhenNumbaIsImported) for finder in sys.meta_path):
        sys.meta_path.insert(0, _WhenNumbaIsImported())


def loaded_kernels() -> list[Any]:
    """Every numba function in the modules imported so far (none when numba was never imported)."""
    if "numba" not in sys.modules:
        return []
    from numba.core.dispatcher import Dispatcher

    found: dict[int, Any] = {}
    for module in list(sys.modules.values()):
        for value in list(getattr(module, "__dict__", {}).values()):
            if isinstance(value, Dispatcher):
                found[id(value)] = value
    return list(found.values())


def warm() -> None:
    """Compile and cache the numba kernels of every installed micro-service (``make install`` runs it)."""
    entries = list(entry_points(group=SERVICES_GROUP))
    _say(f"loading {len(entries)} micro-service(s): their numba kernels compile now unless cached")
    started = time.perf_counter()
    for entry in entries:
        began = time.perf_counter()
        try:
            entry.load()
        except Exception as exc:  # a broken plugin: say which, in one line
            raise SitePulseError(f"micro-service {entry.name!r} ({entry.value}) does not import: "
                                 f"{type(exc).__name__}: {exc}") from None
        _say(f"  {entry.name}: {time.perf_counter() - began:.1f} s")
    kernels = [kernel for kernel in loaded_kernels() if kernel.signatures]
    compiled = sum(sum(k.stats.cache_misses.values()) for k in kernels)
    cached = sum(sum(k.stats.cache_hits.values()) for k in kernels)
    _say(f"{len(kernels)} kernels ready ({compiled} compiled now, {cached} loaded from the cache) in "
         f"{time.perf_counter() - started:.1f} s")
