"""Every command README.md and docs/*.md show in a fenced block is run here, or listed in ALLOWED with the reason it
cannot run in a test; a newly documented command that is neither fails `test_every_documented_command_is_run_or_
allowed`. (docs/scenarios/ is not read: its pages are the CLI's real output, checked by tests/test_scenarios.py.)

What counts as a command: each line of a `bash`/`sh`/`shell` block (backslash continuations joined, comments
apart), and in a block without a language each line that starts with `python -m`, `.venv/bin/python -m` or a `$ `
prompt (a transcript). A transcript's `$ echo $?` gives the exit code of the command before it; a comment that
starts with `exit N` gives it too; any other command must succeed (exit 0).

The CLI lines (`python -m shared ...`) run in this process through `shared.cli.main`, the code `python -m shared`
runs, against the twin, each distinct invocation once: `<target>` is hpc-prod, `SECONDS` 60, and a synopsis's
optional `[--a] [--b | --c]` runs bare and with each option alone. They run in three worlds, in the order the
documents give them:
- transcripts (`$ python -m shared ...`) show the seed's incident, `make demo`'s world (tests/demo.py): an expired
  secret, Contributor removed, CycleCloud holding an older secret;
- `migrate` lines run where a migration can: the runcommand transport, the VM's identity off (tests/test_migration);
- every other line runs against the canonical healthy world (tests/world.py).
The standalone twin workflow of docs/twin.md runs as written, in a shell, from a scratch directory.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.cli import main
from shared.migration import runner as migration_runner
from tests.demo import PREVIOUS_SECRET, demo_scenario
from tests.leaks import assert_no_leak
from tests.rotation_support import apply_env, rotation_env
from tests.test_migration import identity_off
from tests.twin import Twin
from tests.world import APP_ID, CC_PASSWORD, CURRENT_SECRET, SUBSCRIPTION, TARGET, TENANT, VAULT_NAME, World

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SHELL_BLOCKS = {"bash", "sh", "shell"}
PLACEHOLDERS = {"<target>": TARGET, "SECONDS": "60"}

# documented commands a test cannot run, matched from the start of the command as written, and why
ALLOWED: tuple[tuple[str, str], ...] = (
    (r"make test\b", "the whole set-up, lint, type check and suite: this test is part of it (.ci/run runs it)"),
    (r"make setup\b", "installs the venv and npm packages; every make target runs it first"),
    (r"make demo\b", "11 fresh processes against the twin, over a minute; this file runs the transcripts' "
                     "commands in-process in the demo's own world (tests.demo.demo_scenario)"),
    (r"make chaos\b", "a simulated year: hours; tests/test_chaos.py runs two weeks of it"),
    (r"(\.venv/bin/)?python -m tests\.chaos ", "simulated months under chaos: tens of minutes to hours; "
                                               "tests/test_chaos.py runs the short run"),
    (r"(\.venv/bin/python -m )?pytest tests/test_chaos\.py|CHAOS_\w+=.* pytest tests/test_chaos\.py",
     "a test of the suite: `make test` runs it"),
    (r"azd ", "deploys to an Azure subscription"),
    (r"az ", "the Azure CLI against a real tenant and subscription"),
    (r"app=\$\(azd |url=\$\(azd |key=\$\(az |principal=\$\(azd ", "reads a real deployment's values"),
    (r"for sub in .*\n\s*az role assignment delete", "removes grants in a real subscription"),
    (r"kv=\$\(azd |master=\$\(az ", "reads a real deployment's values"),
    (r"read -rsp ", "asks the operator for a password, for the `az keyvault secret set` after it"),
    (r"git clone ", "clones the repository from its remote"),
    (r"python3\.13 -m venv \.venv && \.venv/bin/pip install ", "installs from PyPI; the targets check below runs "
                                                              "with the repository's own .venv"),
    (r"infra/scripts/grant-graph-permissions\.sh ", "an Entra admin's script against a real tenant (az); "
                                                   "tests/test_infra.py checks what it grants"),
    (r"curl ", "calls a running Function app (deployed, or `func start` with Core Tools, which build machines lack); "
               "tests/test_function_app.py drives the same routes through the real worker"),
    (r"source \.venv/bin/activate && func start", "Azure Functions Core Tools are not installed on build machines"),
    (r"node_modules/\.bin/azurite ", "a server; the suite's fixture (tests/azurite.py) starts Azurite itself"),
    (r"cp local\.settings\.sample\.json local\.settings\.json", "writes the operator's own settings file; "
                                                                "tests/test_infra.py checks the sample"),
    (r"git pull", "updates a checkout from its remote"),
    (r"infra/scripts/onboard-tenant\.sh ", "an Entra admin's script against another tenant (az); "
                                           "tests/test_tenants_onboarding.py checks what it does"),
    (r"#!/usr/bin/env bash\nset -euo pipefail\nbase=\"https://func-remediator", "a runbook against a deployed "
                                                                                "Function app"),
)
# documented commands a test below runs as written, in a shell, from a scratch directory: (document, start)
AS_WRITTEN: dict[str, tuple[tuple[str, str], ...]] = {
    "twin": (("docs/twin.md", r"\.venv/bin/python -m tests\.twin "), ("docs/twin.md", r"source twin\.env && ")),
    "targets check": (("docs/deploy.md", r"cat > targets\.json <<'EOF'"),
                      ("docs/deploy.md", r'TARGETS="\$\(cat targets\.json\)" ')),
}


@dataclass(frozen=True)
class Documented:
    where: str  # file:line
    text: str  # the command, continuations joined, without its comment
    comment: str
    transcript: bool  # shown after a `$ ` prompt
    exit_code: int | None  # what the document says it exits with, if it says

    @property
    def expected(self) -> int:
        return 0 if self.exit_code is None else self.exit_code


def fenced_blocks(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line of the block's first line, its language, its lines) for each fenced block of a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^ {0,3}```(\w*)\s*$", lines[i])
        if opening is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if re.match(r"^ {0,3}```\s*$", lines[j])), None)
        assert end is not None, f"{path.name}:{i + 1}: a fenced block that never closes"
        yield i + 2, opening.group(1), lines[i + 1:end]
        i = end + 1


def split_comment(line: str) -> tuple[str, str]:
    """A shell line's command and its trailing comment (a `#` after whitespace, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def compound_end(line: str) -> str | None:
    """The line that ends the command `line` opens and that spans lines: a heredoc's delimiter, a loop's `done`."""
    heredoc = re.search(r"<<-?\s*'?(\w+)'?", split_comment(line)[0])
    if heredoc:
        return heredoc.group(1)
    if re.match(r"(for|while|until) .*; do$", split_comment(line)[0]):
        return "done"
    return None


def stated_exit(comment: str) -> int | None:
    found = re.match(r"exit (\d+)\b(?!/)", comment)
    return int(found.group(1)) if found else None


def documented(path: Path) -> list[Documented]:
    name = path.relative_to(ROOT).as_posix()
    found: list[Documented] = []
    for first, language, lines in fenced_blocks(path):
        if language in SHELL_BLOCKS and lines and lines[0].startswith("#!"):  # a script: one command
            found.append(Documented(f"{name}:{first}", "\n".join(lines), "", False, None))
            continue
        if language not in SHELL_BLOCKS and language != "":
            continue
        pending, closing = "", None
        for offset, raw in enumerate(lines):
            line = pending + raw.strip()
            if closing is not None:  # inside a heredoc or a loop: one command until its end
                if raw.strip() != closing:
                    pending = line + "\n"
                    continue
                closing = None
            elif line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            elif language in SHELL_BLOCKS and (opened := compound_end(line)):
                closing, pending = opened, line + "\n"
                continue
            pending = ""
            _add_line(found, f"{name}:{first + offset}", language, line, lines[offset + 1:offset + 2])
    return found


def _add_line(found: list[Documented], where: str, language: str, line: str, following: list[str]) -> None:
    """One whole line of a block: a command (with its comment), or in a plain block a transcript's `$ echo $?`
    whose answer (the `following` line) is the exit code of the command before it."""
    transcript = line.startswith("$ ")
    if language == "":
        if transcript and line == "$ echo $?" and found:
            code = following[0].strip() if following else ""
            found[-1] = Documented(found[-1].where, found[-1].text, found[-1].comment, True, int(code))
            return
        if not (transcript or line.startswith(("python -m", ".venv/bin/python -m"))):
            return
    command, comment = split_comment(line.removeprefix("$ "))
    if command:
        found.append(Documented(where, command, comment, transcript, stated_exit(comment)))


def all_documented() -> list[Documented]:
    return [c for path in DOCUMENTS for c in documented(path)]


def cli_args(command: Documented) -> str | None:
    """The arguments after `python -m shared`, or None for another command."""
    found = re.match(r"^(?:\.venv/bin/)?python -m shared (.+)$", command.text)
    return found.group(1) if found else None


def invocations(args: str) -> list[tuple[str, ...]]:
    """A synopsis's invocations: bare, then with each optional argument (or alternative) alone."""
    for placeholder, value in PLACEHOLDERS.items():
        args = args.replace(placeholder, value)
    assert args.count("[") == args.count("]") and not re.search(r"\[[^\]]*\[", args), f"nested brackets: {args}"
    options = re.findall(r"\[([^\]]*)\]", args)
    bare = tuple(shlex.split(re.sub(r"\s*\[[^\]]*\]", "", args)))
    return [bare, *[(*bare, *shlex.split(alternative)) for group in options for alternative in group.split("|")]]


def allowed(command: Documented) -> str | None:
    return next((reason for pattern, reason in ALLOWED if re.match(pattern, command.text)), None)


def as_written(workflow: str) -> list[Documented]:
    return [c for c in all_documented() if any(c.where.startswith(f"{document}:") and re.match(start, c.text)
                                               for document, start in AS_WRITTEN[workflow])]


def run_as_written(command: Documented) -> bool:
    return any(command.where.startswith(f"{document}:") and re.match(start, command.text)
               for steps in AS_WRITTEN.values() for document, start in steps)


def scratch(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """bash, and the environment of an operator's shell in `tmp_path`, which links the repository's .venv, shared/
    and tests/: their own Azure variables set (what the twin's environment clears), nothing of this process's."""
    for name in (".venv", "shared", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
           "AZURE_CLIENT_SECRET": "not-a-twin-secret", "AZURE_TENANT_ID": "common"}
    return shutil.which("bash") or "/bin/bash", env


def world_of(command: Documented, argv: tuple[str, ...]) -> str:
    if command.transcript:
        return "seed"
    return "migration" if argv[0] == "migrate" else "healthy"


# -- what every documented command is --------------------------------------------------------------------------


def test_every_documented_command_is_run_or_allowed() -> None:
    commands = all_documented()
    assert len(commands) > 40  # the parser finds the documents' commands
    unaccounted = [f"{c.where}: {c.text}" for c in commands
                   if cli_args(c) is None and allowed(c) is None and not run_as_written(c)]
    assert not unaccounted, ("documented commands that no test runs; run them in tests/test_docs_commands.py or "
                             "add them to its ALLOWED with the reason:\n" + "\n".join(unaccounted))
    unused = [pattern for pattern, _ in ALLOWED if not any(re.match(pattern, c.text) for c in commands)]
    assert not unused, f"ALLOWED entries no document needs any more (remove them): {unused}"


def test_every_documented_make_target_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    documented_targets = {m.group(1): c.where for c in all_documented() if (m := re.match(r"make ([\w-]+)", c.text))}
    assert documented_targets
    missing = {t: where for t, where in documented_targets.items() if t not in targets}
    assert not missing, f"documented make targets the Makefile does not have: {missing}"


def test_the_parser_reads_synopses_transcripts_and_stated_exit_codes() -> None:
    """The rules above, on the documents' own forms (so a parsing slip cannot quietly skip a command)."""
    assert invocations("migrate <target> [--apply | --rollback]") == [
        ("migrate", TARGET), ("migrate", TARGET, "--apply"), ("migrate", TARGET, "--rollback")]
    timeout = invocations("validate <target> [--json] [--timeout SECONDS]")[-1]
    assert timeout == ("validate", TARGET, "--timeout", "60")
    assert stated_exit("exit 0 healthy, 1 degraded, 2 failing") == 0
    assert stated_exit("exit 0/1/2 = healthy/degraded/failing") is None
    assert stated_exit("every target at a glance; exit 1 when one needs a person") is None
    transcripts = [c for c in all_documented() if c.transcript and cli_args(c)]
    assert any(c.where.startswith("README.md") and c.exit_code == 2 for c in transcripts)
    assert [(c.text, c.exit_code) for c in transcripts if c.where.startswith("docs/remediation.md")] == [
        ("python -m shared remediate hpc-prod --dry-run", 2), ("python -m shared remediate hpc-prod", 0),
        ("python -m shared validate hpc-prod", 0)]


# -- the CLI lines, against the twin --------------------------------------------------------------------------


def cli(*argv: str) -> tuple[int, str]:
    """`python -m shared <argv>` in this process: its exit code and everything it printed."""
    from shared.adapters.cyclecloud import login_guard

    login_guard.reset()  # a fresh process starts without the previous command's login failures
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue() + err.getvalue()


def seed_environment(twin: Twin, cc_ca: str, azurite: str) -> dict[str, str]:
    """`make demo`'s world: the seed's incident on hpc-prod (and hpc-dev, healthy)."""
    scenario, targets = demo_scenario()
    twin.load(scenario)
    for target in targets:
        target["cyclecloud"]["ca_bundle"] = str(twin.cyclecloud_ca_path(target["cyclecloud"]["url"]
                                                                        .removeprefix("https://")))
        target["rotation"] = {"test_successes": 1, "test_timeout_seconds": 20, "grace_hours": 0}
    env = World().env(ca_bundle=cc_ca, storage=azurite)
    env.update(TARGETS=json.dumps(targets), KEY_VAULT_URL=f"https://{VAULT_NAME}.vault.azure.net",
               STATE_CONTAINER=f"docs-seed-{os.getpid()}-{time.monotonic_ns()}"[:63])
    return env


def operator_switches_to_managed_identity(argv: tuple[str, ...]) -> None:
    """docs/migration.md before `--apply --remove-secrets`: the migration applied (again, after a rollback), then
    the operator sets the target's mode to managed_identity; grace_hours is 0 in this world."""
    if argv[-2:] != ("--apply", "--remove-secrets"):
        return
    code, out = cli("migrate", TARGET, "--apply")
    assert code == 0, out
    targets = json.loads(os.environ["TARGETS"])
    targets[0]["mode"] = "managed_identity"
    targets[0].pop("secret_name")
    os.environ["TARGETS"] = json.dumps(targets)


WORLDS: dict[str, Callable[[Twin, str, str], dict[str, str]]] = {
    "healthy": lambda twin, cc_ca, azurite: rotation_env(twin, World(), cc_ca, azurite,
                                                         rotation={"test_successes": 1}),
    "seed": seed_environment,
    "migration": lambda twin, cc_ca, azurite: rotation_env(twin, World(transport="runcommand"), cc_ca, azurite,
                                                           rotation={"test_successes": 1}, edit=identity_off),
}


def planned() -> dict[str, list[tuple[tuple[str, ...], int, str]]]:
    """World -> its distinct invocations in document order: (argv, expected exit code, where documented)."""
    plan: dict[str, list[tuple[tuple[str, ...], int, str]]] = {name: [] for name in WORLDS}
    for command in all_documented():
        args = cli_args(command)
        if args is None:
            continue
        for argv in invocations(args):
            steps = plan[world_of(command, argv)]
            if not any(argv == seen and command.expected == code for seen, code, _ in steps):
                steps.append((argv, command.expected, f"{command.where}: {command.text}"))
    return plan


@pytest.mark.parametrize("world", list(WORLDS))
def test_documented_cli_lines_exit_as_documented(world: str, twin: Twin, cc_ca: str, azurite: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    steps = planned()[world]
    assert steps, f"no documented command runs in the {world} world"
    monkeypatch.setattr(migration_runner, "ROLE_PROPAGATION_SECONDS", 0.0)  # roles apply at once in the twin
    apply_env(monkeypatch, WORLDS[world](twin, cc_ca, azurite))
    wrong = []
    for argv, expected, where in steps:
        operator_switches_to_managed_identity(argv)
        code, out = cli(*argv)
        assert_no_leak(out, CURRENT_SECRET, CC_PASSWORD, PREVIOUS_SECRET)
        if code != expected:
            wrong.append(f"{where}\n  `python -m shared {' '.join(argv)}` exited {code}, not {expected}:\n"
                         + "\n".join("    " + line for line in out.splitlines()[:30]))
    assert not wrong, "documented commands that do not do what the documents say:\n" + "\n".join(wrong)


# -- docs/twin.md: the standalone twin, as written -------------------------------------------------------------


def test_the_standalone_twin_workflow_runs_as_written(tmp_path: Path) -> None:
    """Shell 1 starts the twin and writes twin.env; shell 2 sources it and validates the example's healthy target.
    Both run from a scratch directory (twin.env is written to the working directory) holding links to the repo's
    .venv, shared/ and tests/, in a shell set up as an operator's: their own Azure variables, which twin.env
    clears."""
    lines = as_written("twin")
    assert [("shell 1" in c.comment, "shell 2" in c.comment) for c in lines] == [(True, False), (False, True)]
    shell1, shell2 = (c.text for c in lines)
    bash, env = scratch(tmp_path)
    twin_shell = subprocess.Popen([bash, "-c", f"exec {shell1}"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "twin.env").exists() and time.monotonic() < deadline and twin_shell.poll() is None:
            time.sleep(0.1)
        assert (tmp_path / "twin.env").exists(), f"shell 1 wrote no twin.env (exit {twin_shell.poll()})"
        done = subprocess.run([bash, "-c", shell2], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
    finally:
        os.killpg(twin_shell.pid, signal.SIGTERM)
        _, err = twin_shell.communicate(timeout=20)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Target {TARGET} (service_principal): HEALTHY" in done.stdout, done.stdout
    assert_no_leak([done.stdout, done.stderr, err], World().secret)
    assert twin_shell.returncode == 0, err  # it stops cleanly on SIGTERM, as shell 1's Ctrl-C would


# -- docs/deploy.md: the targets file, checked with the product's own validation before deploying ----------------


def test_the_deploy_guides_targets_check_runs_as_written(tmp_path: Path) -> None:
    """Step 2 of docs/deploy.md writes targets.json and runs `config check` on it. Its placeholders are an
    operator's to fill in: here with the canonical world's ids; then the check must pass (exit 0), so the example's
    fields and the command line are ones the product accepts."""
    lines = as_written("targets check")
    assert len(lines) == 2 and lines[0].text.startswith("cat > targets.json")
    filled = {"<Directory (tenant) ID>": TENANT, "<CycleCloud app's Application (client) ID>": APP_ID,
              "<subscription CycleCloud deploys into>": SUBSCRIPTION}
    script = "\n".join(c.text for c in lines)
    for placeholder, value in filled.items():
        assert placeholder in script, f"docs/deploy.md no longer says {placeholder}: update this test's values"
        script = script.replace(placeholder, value)
    assert "<" not in script.replace("<<'EOF'", ""), f"a placeholder this test does not fill: {script}"
    bash, env = scratch(tmp_path)
    done = subprocess.run([bash, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hpc-prod" in done.stdout
