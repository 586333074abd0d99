"""The CLI imports a command's module only when that command runs (shared/cli/__init__.py): `python -m shared
--help` lists every command from the static table without importing any of them or an Azure SDK, so help and a
mistyped command answer at once even where the SDKs are slow to import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import COMMANDS, build_parser, command_named

ROOT = Path(__file__).resolve().parent.parent


# `python -m shared ARGV` in a fresh interpreter, then every module it loaded on stderr (`-X importtime` would not
# do: it does not see modules loaded through importlib.import_module, which is how the CLI loads a command)
PROBE = """
import json, runpy, sys
sys.argv = ["python -m shared", *json.loads(sys.argv[1])]
try:
    runpy.run_module("shared", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
sys.stderr.write("\\nMODULES " + json.dumps({"code": code, "modules": sorted(sys.modules)}) + "\\n")
"""


def imported_by(*argv: str) -> tuple[str, set[str]]:
    """What a fresh `python -m shared <argv>` printed, and every module it imported."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    marker = done.stderr.rpartition("\nMODULES ")[2]
    assert done.returncode == 0 and marker, done.stderr[-2000:]
    result = json.loads(marker)
    assert result["code"] == 0, done.stderr[-2000:]
    return done.stdout, set(result["modules"])


def command_modules(modules: set[str]) -> set[str]:
    return {m for m in modules if m in {module for module, _ in COMMANDS.values()}}


def sdks(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in {"msgraph", "kiota_abstractions", "httpx", "requests", "aiohttp"}
            or m.startswith("azure.")}


def test_help_imports_no_command_and_no_sdk() -> None:
    out, modules = imported_by("--help")
    for name in COMMANDS:
        assert name in out
    assert "shared.cli" in modules  # the measurement sees the package itself
    assert command_modules(modules) == set()
    assert sdks(modules) == set()


def test_a_commands_help_imports_that_command_only() -> None:
    """The other side of the rule (and proof the measurement sees command modules): `validate --help` imports
    validate's module, with its arguments, and no other command's."""
    out, modules = imported_by("validate", "--help")
    assert "--timeout SECONDS" in out
    assert command_modules(modules) == {"shared.cli.validate_cmd"}
    assert "shared.cli.rotate_cmd" not in modules


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_in_the_table_has_its_module_and_arguments(name: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser(name).parse_args([name, "--help"])
    assert exited.value.code == 0
    assert COMMANDS[name][1] in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "command"), [
    (["--help"], None), ([], None), (["-v", "validate", "hpc-prod"], "validate"),
    (["rotate", "--dry-run", "hpc-prod"], "rotate"), (["--verbose", "-h"], None), (["--", "validate"], None)])
def test_the_command_is_the_first_word_that_is_not_a_top_level_option(argv: list[str], command: str | None) -> None:
    assert command_named(argv) == command


def test_the_rotation_reads_the_migration_journal_without_importing_the_migration_runner() -> None:
    # every rotation checks whether its target moved to managed identity; the runner (compute, roles) is not needed
    code = ("import sys, json; import shared.rotation.protocol, shared.migration.model, shared.migration.store; "
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    modules = set(json.loads(done.stdout))
    assert "shared.migration.store" in modules
    assert {"shared.migration.runner", "shared.adapters.compute"} & modules == set()
