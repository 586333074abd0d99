"""The CycleCloud adapter's `runcommand` transport: ARM managed Run Command (azure-mgmt-compute, unmodified,
through the twin's ARM) on the CycleCloud VM, whose twin applies `cyclecloud account show/edit` semantics.
(What both transports promise is in test_cyclecloud_transports.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.cyclecloud import (
    CheckStatus,
    CycleCloudClient,
    CycleCloudRunCommandError,
)
from shared.adapters.cyclecloud.runcommand import dry_run_script, edit_script, show_script
from shared.context import AppContext
from shared.cyclecloud_probe import probe_target
from shared.errors import RemediatorError
from tests.cyclecloud_helpers import cc_server
from tests.leaks import assert_no_leak
from tests.twin import Twin
from tests.twin.faults import Fault
from tests.world import APP_ID, CURRENT_SECRET, NEW_SECRET, TARGET, VM_ID, World

BASH = shutil.which("bash") or "/bin/bash"


@pytest.fixture
def world() -> World:
    return World(transport="runcommand")


def _arm_ops(twin: Twin) -> list[str]:
    return [r.operation for r in twin.request_log if r.service == "arm"]


async def test_run_command_failure_reports_its_status(twin: Twin, cc: CycleCloudClient) -> None:
    vm = twin.state.vm(VM_ID)
    assert vm is not None
    vm.cyclecloud_host = None  # the CLI is not installed on this VM
    with pytest.raises(CycleCloudRunCommandError) as raised:
        await cc.read_account()
    assert raised.value.details["exit_code"] == 127 and raised.value.details["execution_state"] == "Failed"
    assert "cyclecloud initialize" in raised.value.fix
    result = await cc.probe()
    assert result.check("reachable").status is CheckStatus.OK
    assert result.check("login").status is CheckStatus.FAILED and not result.ok


async def test_missing_run_command_permission_fails_the_reachable_check(twin: Twin,
                                                                       product_env: dict[str, str]) -> None:
    with twin.state.lock:
        for name, ra in list(twin.state.role_assignments.items()):
            if ra.scope == VM_ID:
                del twin.state.role_assignments[name]
    async with AppContext.from_environment() as ctx:
        result = await probe_target(ctx, TARGET)
    check = result.check("reachable")
    assert check.status is CheckStatus.FAILED and check.fix
    assert all(result.check(n).status is CheckStatus.SKIPPED for n in ("login", "account", "update_path"))


async def test_arm_5xx_is_retried(twin: Twin, cc: CycleCloudClient) -> None:
    twin.faults.add(Fault(service="arm", operation="createRunCommand", status=503, retry_after=0, times=1))
    assert (await cc.read_account()).secret_hint == CURRENT_SECRET[:3]
    assert _arm_ops(twin).count("createRunCommand") == 2


async def test_a_broken_server_answer_is_a_domain_error(twin: Twin, cc: CycleCloudClient) -> None:
    original = twin.run_command_executor
    twin.run_command_executor = lambda _vm, _script, _params, _protected: (0, "no record here\n", "")
    try:
        with pytest.raises(RemediatorError, match="no account record"):
            await cc.read_account()
    finally:
        twin.run_command_executor = original


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize("script", [show_script(), dry_run_script(), edit_script()])
def test_generated_scripts_are_valid_bash_and_never_echo_the_secret(script: list[str]) -> None:
    checked = subprocess.run([BASH, "-n"], input="\n".join(script), text=True, capture_output=True, check=False)
    assert checked.returncode == 0, checked.stderr
    text = "\n".join(script)
    assert "umask 077" in text and "shred -u" in text
    code = [line for line in script if not line.lstrip().startswith("#")]
    assert not any("CC_NEW_SECRET" in line and ("echo" in line or "print" in line) for line in code)


FAKE_CLI = '''#!/usr/bin/env python3
# A stand-in for the CycleCloud CLI: `account show NAME -o FILE` writes the stored definition (secret included),
# `account edit NAME -f FILE` checks the file is owner-only and stores it.
import json, os, stat, sys
store = os.environ["FAKE_STORE"]
args = sys.argv[1:]
record = json.load(open(store))
if args[:2] == ["account", "show"]:
    if args[2] != record["Name"]:
        print("Account not found: " + args[2]); sys.exit(1)
    json.dump(record, open(args[args.index("-o") + 1], "w")); print("Credentials: " + args[2])
elif args[:2] == ["account", "edit"]:
    path = args[args.index("-f") + 1]
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        print("file mode %o is readable by others" % mode); sys.exit(1)
    if "--dry-run" not in args:
        json.dump(json.load(open(path)), open(store, "w"))
    with open(store + ".work", "w") as f:
        f.write(os.path.dirname(path))
'''


@pytest.mark.skipif(not (shutil.which("bash") and shutil.which("python3") and shutil.which("shred")),
                    reason="needs bash, python3 and shred")
def test_edit_script_really_runs_against_a_stand_in_cli(tmp_path: pytest.TempPathFactory) -> None:
    """The generated script itself (not the twin's reading of it) does what it promises."""
    import os
    from pathlib import Path

    from tests.world import account_record

    base = Path(str(tmp_path))
    (base / "bin").mkdir()
    cli = base / "bin" / "cyclecloud"
    cli.write_text(FAKE_CLI)
    cli.chmod(0o755)
    store = base / "store.json"
    store.write_text(json.dumps(account_record()))
    env = {"PATH": f"{base / 'bin'}:{os.environ['PATH']}", "FAKE_STORE": str(store), "CC_ACCOUNT": "azure",
           "CC_NEW_SECRET": NEW_SECRET, "TMPDIR": str(base)}
    run = subprocess.run([BASH, "-c", "\n".join(edit_script())], env=env, text=True, capture_output=True,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(store.read_text())["AzureRMApplicationSecret"] == NEW_SECRET
    assert json.loads(store.read_text())["AzureRMApplicationId"] == APP_ID  # nothing else changed
    assert '"AzureRMApplicationSecret": "Nw7********"' in run.stdout and "CCR-RESULT edited" in run.stdout
    assert_no_leak([run.stdout, run.stderr], NEW_SECRET, CURRENT_SECRET)
    assert not Path((base / "store.json.work").read_text()).exists()  # the private work directory is gone

    env["CC_ACCOUNT"] = "other"
    missing = subprocess.run([BASH, "-c", "\n".join(show_script())], env=env, text=True, capture_output=True,
                             check=False)
    assert missing.returncode == 3 and "CCR-RESULT account-missing" in missing.stdout


# -- hardening: read-only probe, hygiene the twin enforces, and the script itself under bash ---------------------


def _recording(twin: Twin) -> list[str]:
    """Record every script the twin's VM runs (ARM deletes the run commands afterwards)."""
    scripts: list[str] = []
    original = twin.run_command_executor

    def record(vm: object, script: list[str], params: object, protected: object) -> tuple[int, str, str]:
        scripts.append("\n".join(script))
        return original(vm, script, params, protected)  # type: ignore[arg-type]

    twin.run_command_executor = record
    return scripts


async def test_probe_never_runs_account_edit_unless_dry_run_is_declared(twin: Twin, cc: CycleCloudClient) -> None:
    from shared.adapters.compute import ComputeAdapter
    from shared.adapters.cyclecloud.runcommand import RunCommandTransport

    scripts = _recording(twin)
    cc_server(twin).ignores_dry_run = True
    result = await cc.probe()
    assert result.ok and result.check("update_path").status is CheckStatus.SKIPPED
    assert "supports_dry_run" in result.check("update_path").detail
    assert scripts and not any("account edit" in s for s in scripts)

    scripts.clear()
    cc_server(twin).ignores_dry_run = False
    async with AppContext.from_environment() as ctx:
        declared = RunCommandTransport(TARGET, "azure", VM_ID, ComputeAdapter(ctx.clients), supports_dry_run=True)
        checks = {c.name: c for c in await declared.probe()}
    assert checks["update_path"].status is CheckStatus.OK
    assert any("account edit \"$CC_ACCOUNT\" --dry-run" in s for s in scripts)


def _break(script: list[str], old: str, new: str) -> list[str]:
    text = "\n".join(script)
    assert old in text, old
    return text.replace(old, new).split("\n")


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("base=/dev/shm", "base=/tmp", "memory-backed storage"),
        ("-mmin +", "-newer /x -mmin +", "stale work directories"),
        ("timeout --kill-after=5 90 cyclecloud account edit", "cyclecloud account edit", "not bounded by `timeout`"),
        ('print_error "$work/edit.txt";', 'cat "$work/edit.txt" >&2;', "copies the CLI's output"),
        ("allowed = [", "fields = [", "allow-list of fields"),
        ("umask 077", "umask 022", "umask 077"),
    ],
)
def test_the_twin_refuses_a_script_that_breaks_a_promise(twin: Twin, world: World, old: str, new: str,
                                                        problem: str) -> None:
    twin.load(world.scenario())
    vm = twin.state.vm(VM_ID)
    assert vm is not None
    code, _, err = twin.run_command_executor(vm, _break(edit_script(), old, new), {"CC_ACCOUNT": "azure"},
                                             {"CC_NEW_SECRET": NEW_SECRET})
    assert code == 90 and problem in err, err
    assert cc_server(twin).accounts["azure"]["AzureRMApplicationSecret"] == CURRENT_SECRET


def test_the_twin_prints_only_the_allow_listed_fields(twin: Twin, world: World) -> None:
    twin.load(world.scenario())
    vm = twin.state.vm(VM_ID)
    assert vm is not None
    code, out, _ = twin.run_command_executor(vm, show_script(), {"CC_ACCOUNT": "azure"}, {})
    record = json.loads(out.splitlines()[0].removeprefix("CCR-ACCOUNT "))
    assert code == 0 and "RMStorageAccount" not in record and "LockerAuthMode" not in record
    assert record["AzureRMApplicationId"] == APP_ID and record["AzureRMApplicationSecret"] == "Abc********"


def _stand_in(base: Path, cli: str = FAKE_CLI, record: dict[str, Any] | None = None) -> dict[str, str]:
    import os

    from tests.world import account_record

    (base / "bin").mkdir(exist_ok=True)
    path = base / "bin" / "cyclecloud"
    path.write_text(cli)
    path.chmod(0o755)
    store = base / "store.json"
    store.write_text(json.dumps(record or account_record()))
    return {"PATH": f"{base / 'bin'}:{os.environ['PATH']}", "FAKE_STORE": str(store), "CC_ACCOUNT": "azure",
            "CC_NEW_SECRET": NEW_SECRET, "TMPDIR": str(base)}


def _bash(script: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BASH, "-c", "\n".join(script)], env=env, text=True, capture_output=True, check=False,
                          timeout=60)


needs_tools = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("python3") and shutil.which("shred") and shutil.which("timeout")),
    reason="needs bash, python3, shred and timeout")


@needs_tools
def test_the_work_directory_is_in_dev_shm_and_stale_ones_are_shredded(tmp_path: Path) -> None:
    import os
    import uuid

    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    stale = base / f"ccr-cc.test{uuid.uuid4().hex[:8]}"
    fresh = base / f"ccr-cc.test{uuid.uuid4().hex[:8]}"
    for directory in (stale, fresh):
        directory.mkdir()
        (directory / "account.json").write_text('{"AzureRMApplicationSecret": "left-behind"}')
    old = os.stat(stale).st_mtime - 20 * 60
    os.utime(stale / "account.json", (old, old))
    os.utime(stale, (old, old))
    env = _stand_in(tmp_path)
    try:
        run = _bash(edit_script(), env)
        assert run.returncode == 0, run.stderr
        assert not stale.exists(), "a killed run's directory older than 10 minutes is removed"
        assert fresh.exists(), "a directory that may belong to a run in progress is left alone"
        work = Path((tmp_path / "store.json.work").read_text())
        assert work.parent == base and work.name.startswith("ccr-cc.") and not work.exists()
    finally:
        for directory in (stale, fresh):
            shutil.rmtree(directory, ignore_errors=True)


LEAKY_CLI = FAKE_CLI.replace(
    'elif args[:2] == ["account", "edit"]:\n',
    'elif args[:2] == ["account", "edit"]:\n'
    '    secret = json.load(open(args[args.index("-f") + 1]))["AzureRMApplicationSecret"]\n'
    '    print("Error: Invalid Azure credentials provided for secret " + secret)\n'
    '    print("old one was " + record["AzureRMApplicationSecret"] + " and Zz9Q~another-secret-shaped-value")\n'
    '    for i in range(10): print("trace line %d" % i)\n'
    '    sys.exit(1)\n')


@needs_tools
def test_cli_errors_are_sanitised_before_they_reach_the_instance_view(tmp_path: Path) -> None:
    run = _bash(edit_script(), _stand_in(tmp_path, LEAKY_CLI))
    assert run.returncode == 5 and "CCR-RESULT edit-rejected" in run.stdout
    assert "Invalid Azure credentials provided" in run.stderr and "***" in run.stderr
    assert_no_leak([run.stdout, run.stderr], NEW_SECRET, CURRENT_SECRET, "Zz9Q~another-secret-shaped-value")
    assert len(run.stderr.strip().splitlines()) <= 5


@needs_tools
def test_the_account_is_printed_as_an_allow_list(tmp_path: Path) -> None:
    from tests.world import account_record

    record = {**account_record(), "LockerPassword": "Locker-password-value-1"}
    run = _bash(show_script(), _stand_in(tmp_path, record=record))
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout.splitlines()[0].removeprefix("CCR-ACCOUNT "))
    assert "LockerPassword" not in shown
    assert_no_leak(run.stdout, "Locker-password-value-1")
    assert shown["AzureRMApplicationSecret"] == "Abc********" and shown["AzureRMApplicationId"] == APP_ID


@needs_tools
def test_a_hanging_cli_call_is_stopped_and_reported(tmp_path: Path) -> None:
    from shared.adapters.cyclecloud.runcommand import EXIT_CLI_TIMEOUT

    env = _stand_in(tmp_path, "#!/bin/sh\nsleep 30\n")
    real_timeout = shutil.which("timeout")
    # the script's own bound is 90 s; a stand-in `timeout` shortens it to 1 s and keeps real timeout semantics
    (tmp_path / "bin" / "timeout").write_text(f'#!/bin/sh\nshift 2\nexec {real_timeout} --kill-after=1 1 "$@"\n')
    (tmp_path / "bin" / "timeout").chmod(0o755)
    run = _bash(show_script(), env)
    assert run.returncode == EXIT_CLI_TIMEOUT and "CCR-RESULT cli-timeout" in run.stdout
