"""The CLI imports a command's module only to run it: ``--help`` stays light, and says what each command does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from sitepulse.cli import ENTRY_POINT_GROUP, build_app
from sitepulse.errors import SitePulseError
from sitepulse.lazy_commands import load_command

HEAVY = ("pandas", "numpy", "numba", "fastapi", "starlette", "sklearn", "shapely", "pyarrow", "psycopg",
         "ingest", "microservices", "registry", "simulators", "decoders", "stack", "evaluation")
SHOW_HEAVY = f"""
import sys
sys.argv = ["sitepulse"] + sys.argv[1:]
from sitepulse.cli import app
try:
    app()
except SystemExit:
    pass
print("IMPORTED:", sorted({{n.split(".")[0] for n in sys.modules}} & set({HEAVY!r})), file=sys.stderr)
"""


def _run(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITEPULSE_")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-c", SHOW_HEAVY, *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _imported(result: subprocess.CompletedProcess) -> str:
    return re.search(r"IMPORTED: (.*)", result.stderr).group(1)


def test_help_imports_no_command_and_lists_every_one() -> None:
    result = _run("--help")
    assert _imported(result) == "[]", result.stderr
    listed = set(re.findall(r"^│ (\S+) ", result.stdout, re.MULTILINE))
    installed = {entry.name.split(".")[0] for entry in entry_points(group=ENTRY_POINT_GROUP)}
    assert installed <= listed, installed - listed
    assert "warning" not in result.stderr


def test_a_group_help_imports_none_of_its_members() -> None:
    result = _run("services", "--help")
    assert _imported(result) == "[]", result.stderr
    assert {"list", "new", "sample-config", "stage"} <= set(re.findall(r"^│ (\S+) ", result.stdout, re.MULTILINE))


def test_running_a_command_imports_its_own_module_only() -> None:
    result = _run("decoders", "list")
    assert "sparkplug-b" in result.stdout, result.stderr
    imported = _imported(result)
    assert "'decoders'" in imported and "'registry'" not in imported and "'stack'" not in imported


def _help_shown(command: typer.core.TyperCommand | TyperGroup) -> str:
    return command.help or ""


def test_every_help_line_read_from_the_source_is_the_command_s_own() -> None:
    """The help listed without importing (read from the sources) is what the command says once imported."""
    root = typer.main.get_command(build_app())
    assert isinstance(root, TyperGroup)
    ctx = typer.Context(root)
    checked = 0
    for name in root.list_commands(ctx):
        stand_in = root.get_command(ctx, name)
        root.resolve_command(ctx, [name])
        real = root.get_command(ctx, name)
        assert real is not stand_in
        assert _help_shown(stand_in) == _help_shown(real), name
        checked += 1
        if isinstance(real, TyperGroup):  # a group of entries from several packages: its members too
            sub = typer.Context(real, parent=ctx)
            for member in real.list_commands(sub):
                stand_in = real.get_command(sub, member)
                real.resolve_command(sub, [member])
                assert _help_shown(stand_in) == _help_shown(real.get_command(sub, member)), f"{name} {member}"
                checked += 1
    assert checked >= len(list(entry_points(group=ENTRY_POINT_GROUP)))


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A plugin whose command module exists but imports a dependency that is not installed."""
    package = tmp_path / "sitepulse_test_broken_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text(textwrap.dedent('''
        import no_such_dependency_xyz

        def boom() -> None:
            """Explode politely."""
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_plugin_that_fails_to_import_costs_its_command_one_line(broken_plugin: Path) -> None:
    entry = EntryPoint("boom", "sitepulse_test_broken_plugin.cli:boom", ENTRY_POINT_GROUP)
    runner = CliRunner()
    app = build_app([EntryPoint("config", "sitepulse.cli:config", ENTRY_POINT_GROUP), entry])
    listed = runner.invoke(app, ["--help"])
    assert listed.exit_code == 0 and "Explode politely." in listed.output and "config" in listed.output
    assert runner.invoke(app, ["config"]).exit_code == 0  # every other command still works
    failed = runner.invoke(app, ["boom"])
    assert isinstance(failed.exception, SitePulseError)
    assert str(failed.exception) == ("command 'boom' from sitepulse_test_broken_plugin.cli:boom is unavailable: "
                                     "ModuleNotFoundError: No module named 'no_such_dependency_xyz'")
    with pytest.raises(SitePulseError, match="is neither a function nor a typer.Typer"):
        load_command("x", EntryPoint("x", "sitepulse.cli:ENTRY_POINT_GROUP", ENTRY_POINT_GROUP))


def test_the_console_script_prints_the_broken_plugin_as_one_red_line(broken_plugin: Path) -> None:
    code = ("import sys; from importlib.metadata import EntryPoint; import sitepulse.cli as cli;"
            "cli._app = cli.build_app([EntryPoint('boom', 'sitepulse_test_broken_plugin.cli:boom', 'sitepulse.cli')]);"
            "sys.argv = ['sitepulse', 'boom']; cli.app()")
    env = {**os.environ, "PYTHONPATH": str(broken_plugin)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: command 'boom' from sitepulse_test_broken_plugin.cli:boom is "
                                     "unavailable: ModuleNotFoundError: No module named 'no_such_dependency_xyz'")


def test_an_entry_whose_package_is_not_installed_is_left_out_with_one_warning() -> None:
    app = build_app([EntryPoint("config", "sitepulse.cli:config", ENTRY_POINT_GROUP),
                     EntryPoint("broken.thing", "no_such_package_xyz.cli:thing", ENTRY_POINT_GROUP)])
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert ("warning: command 'broken.thing' from no_such_package_xyz.cli:thing is unavailable: package "
            "'no_such_package_xyz' is not installed") in result.output
    assert "broken " not in result.output and "config" in result.output


def test_warm_reports_the_kernels_it_compiled_or_loaded() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITEPULSE_")}
    result = subprocess.run([sys.executable, "-m", "sitepulse", "warm"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    services = {entry.name for entry in entry_points(group="sitepulse.microservices")}
    assert services <= set(re.findall(r"^  (\S+): \d+\.\d s$", result.stderr, re.MULTILINE))
    ready = re.search(r"(\d+) kernels ready \((\d+) compiled now, (\d+) loaded from the cache\)", result.stderr)
    assert ready and int(ready.group(1)) > 0 and int(ready.group(2)) + int(ready.group(3)) > 0, result.stderr
    listed = subprocess.run([sys.executable, "-m", "sitepulse", "services", "list"], env={**env, "COLUMNS": "200"},
                            capture_output=True, text=True, timeout=600)
    assert listed.returncode == 0 and "weight-loading" in listed.stdout, listed.stderr
    assert "compiling numba kernels" not in listed.stderr  # warmed: every kernel comes from the cache


def test_a_kernel_compiled_after_the_cli_started_is_announced_once(tmp_path: Path) -> None:
    """Where numba's cache is cold (a plain pip install, a changed kernel), one line says why the wait."""
    (tmp_path / "sitepulse_test_kernels.py").write_text(textwrap.dedent('''
        import numba

        @numba.njit(cache=False)
        def one(x):
            return x + 1

        @numba.njit(cache=False)
        def two(x):
            return one(x) * 2

        assert two(1) == 4 and one(2.5) == 3.5  # three compiles
    '''))
    code = ("import sys; from sitepulse.warm import announce_compiles, COMPILING; announce_compiles();"
            "assert 'numba' not in sys.modules; import sitepulse_test_kernels; import numba;"
            "print('loader kept:', type(numba.__spec__.loader).__name__)")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("compiling numba kernels: once after an install or a change") == 1, result.stderr
    assert "loader kept: SourceFileLoader" in result.stdout
