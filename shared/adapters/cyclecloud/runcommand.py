"""The `runcommand` transport: ARM managed Run Command on the CycleCloud VM, running the documented CLI
(`cyclecloud account show` / `cyclecloud account edit <name> -f <file>`) as root.

The script is generated here and is the same for every target; values arrive as Run Command parameters, which
the VM agent exposes as environment variables: `CC_ACCOUNT` (plain) and `CC_NEW_SECRET` (a protected
parameter: never stored by ARM, never shown in the instance view). What the script promises (the twin checks
each of these, so a regression fails a test):

- the account file (it holds the secret) lives in memory-backed storage (`/dev/shm`; the temp directory only
  where /dev/shm is absent), in a private directory created with umask 077, and is shredded on exit;
- work directories of runs killed before their cleanup (older than STALE_MINUTES) are shredded first;
- every CLI call is bounded by `timeout` (TERM after CLI_TIMEOUT_SECONDS, KILL 5 s later), so the calls of one
  script fit in the Run Command's own limit;
- nothing the CLI prints is copied to the output (the instance view keeps it): the account is printed as an
  allow-list of fields with the secret reduced to its hint, and a CLI error as at most 5 short lines with every
  secret value and anything shaped like a client secret masked.

Output contract:

    CCR-ACCOUNT <json>     the allow-listed fields of the account record, secret reduced to its 3-character hint
    CCR-RESULT <word>      shown | edited | dry-run-ok | account-missing | edit-rejected | cli-timeout
    exit 0 ok, 3 account missing, 4 the CLI failed, 5 CycleCloud rejected the edit (its message on stderr),
    6 a CLI call timed out
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from ...errors import RemediatorError
from ...redaction import register_secret, scrub
from .errors import (
    CycleCloudAccountMissingError,
    CycleCloudRunCommandError,
    CycleCloudUpdateRejectedError,
)
from .models import SECRET_FIELD, CheckStatus, ProbeCheck

logger = logging.getLogger(__name__)

CLI_TIMEOUT_SECONDS = 90  # per CLI call; an edit script makes three calls, within RUN_COMMAND_TIMEOUT_SECONDS
CLI_KILL_AFTER_SECONDS = 5
RUN_COMMAND_TIMEOUT_SECONDS = 300
STALE_MINUTES = 10  # a work directory this old belongs to a run that was killed (runs end within 5 minutes)
WORK_PREFIX = "ccr-cc."
EXIT_ACCOUNT_MISSING, EXIT_CLI_FAILED, EXIT_EDIT_REJECTED, EXIT_CLI_TIMEOUT = 3, 4, 5, 6
# the only account fields that leave the VM (what the product reads: identity of the credential, not secrets)
ACCOUNT_FIELDS = ("Name", "Provider", "ProviderId", "Location", "AzureRMTenantId", "AzureRMApplicationId",
                  "AzureRMSubscriptionId", "AzureRMUseManagedIdentity")

_CLI = f"timeout --kill-after={CLI_KILL_AFTER_SECONDS} {CLI_TIMEOUT_SECONDS} cyclecloud"

_PRELUDE = [
    "#!/bin/bash",
    "# CycleCloud Credential Remediator (generated). Values arrive as Run Command parameters:",
    "# CC_ACCOUNT (plain) and CC_NEW_SECRET (protected). Nothing here echoes the secret or the CLI's output.",
    "set -euo pipefail",
    "umask 077",
    "# the account file holds the secret: memory-backed storage, never disk unless /dev/shm is absent",
    "base=/dev/shm",
    'if [ ! -d "$base" ] || [ ! -w "$base" ]; then base="${TMPDIR:-/tmp}"; fi',
    f"# work directories of runs killed before their cleanup (older than {STALE_MINUTES} minutes)",
    f"find \"$base\" -maxdepth 1 -type d -name '{WORK_PREFIX}*' -mmin +{STALE_MINUTES} -print0 2>/dev/null |",
    "  while IFS= read -r -d '' old; do find \"$old\" -type f -exec shred -u {} + 2>/dev/null || true;"
    ' rm -rf "$old"; done || true',
    f'work="$(mktemp -d "$base/{WORK_PREFIX}XXXXXXXX")"',
    "trap 'find \"$work\" -type f -exec shred -u {} + 2>/dev/null || true; rm -rf \"$work\"' EXIT",
    "# a CLI message, sanitised: every secret value and anything shaped like a client secret masked, 5 lines",
    "print_error() {",
    "  python3 - \"$1\" \"$work/account.json\" <<'PY' >&2",
    "import json, os, re, sys",
    'text = open(sys.argv[1], errors="replace").read()',
    'values = [os.environ.get("CC_NEW_SECRET") or ""]',
    "try:",
    f'    values.append(str(json.load(open(sys.argv[2])).get("{SECRET_FIELD}") or ""))',
    "except (OSError, ValueError):",
    "    pass",
    "for value in sorted(values, key=len, reverse=True):",
    "    if len(value.strip()) >= 6:",
    '        text = text.replace(value, "***").replace(value.strip(), "***")',
    'text = re.sub(r"[0-9A-Za-z._~-]*[0-9]Q~[0-9A-Za-z._~-]{10,}", "***", text)',
    'print("\\n".join([line.strip()[:300] for line in text.splitlines() if line.strip()][:5]))',
    "PY",
    "}",
]


def _run_cli(args: str, output: str) -> str:
    """One bounded CLI call; its exit status lands in `rc` (the script must not stop at `set -e`)."""
    return f'rc=0; {_CLI} {args} >"$work/{output}" 2>&1 || rc=$?'


_TIMED_OUT = [
    f'  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "CCR-RESULT cli-timeout"; exit {EXIT_CLI_TIMEOUT}; fi',
]
# `account show -o` writes the account's definition (secret included, on the VM only) to the private file
_SHOW = [
    _run_cli('account show "$CC_ACCOUNT" -o "$work/account.json"', "show.txt"),
    'if [ "$rc" -ne 0 ]; then',
    *_TIMED_OUT,
    f'  if grep -qi "not found" "$work/show.txt"; then echo "CCR-RESULT account-missing"; exit {EXIT_ACCOUNT_MISSING};'
    " fi",
    f'  print_error "$work/show.txt"; exit {EXIT_CLI_FAILED}',
    "fi",
]
_PRINT_ACCOUNT = [  # an allow-list of fields: nothing else from the definition reaches the output
    "python3 - \"$work/account.json\" <<'PY'",
    "import json, sys",
    f"allowed = {json.dumps(list(ACCOUNT_FIELDS))}",
    "record = json.load(open(sys.argv[1]))",
    "shown = {key: record[key] for key in allowed if key in record}",
    f'secret = record.get("{SECRET_FIELD}") or ""',
    f'shown["{SECRET_FIELD}"] = secret[:3] + "*" * 8 if isinstance(secret, str) and secret.strip() else ""',
    'print("CCR-ACCOUNT " + json.dumps(shown))',
    "PY",
]
_SET_SECRET = [  # only the secret changes; every other field stays as CycleCloud has it
    "python3 - \"$work/account.json\" <<'PY'",
    "import json, os, sys",
    "record = json.load(open(sys.argv[1]))",
    f'record["{SECRET_FIELD}"] = os.environ["CC_NEW_SECRET"]',
    'json.dump(record, open(sys.argv[1], "w"))',
    "PY",
]


def _edit(dry_run: bool) -> list[str]:
    flag = " --dry-run" if dry_run else ""
    return [
        _run_cli(f'account edit "$CC_ACCOUNT"{flag} -f "$work/account.json"', "edit.txt"),
        'if [ "$rc" -ne 0 ]; then',
        *_TIMED_OUT,
        f'  print_error "$work/edit.txt"; shred -u "$work/account.json"; echo "CCR-RESULT edit-rejected";'
        f" exit {EXIT_EDIT_REJECTED}",
        "fi",
    ]


def show_script() -> list[str]:
    return [*_PRELUDE, *_SHOW, *_PRINT_ACCOUNT, 'echo "CCR-RESULT shown"']


def dry_run_script() -> list[str]:
    """`account edit --dry-run` with the account's current definition: validates, changes nothing - on a CLI
    that honours --dry-run, which is why the probe sends it only when the target declares supports_dry_run."""
    return [*_PRELUDE, *_SHOW, *_edit(dry_run=True), 'shred -u "$work/account.json"', 'echo "CCR-RESULT dry-run-ok"']


def edit_script() -> list[str]:
    return [*_PRELUDE, *_SHOW, *_SET_SECRET, *_edit(dry_run=False), 'shred -u "$work/account.json"',
            *_SHOW, *_PRINT_ACCOUNT, 'echo "CCR-RESULT edited"']


class RunCommandTransport:
    name = "runcommand"

    def __init__(self, target_name: str, account: str, vm_resource_id: str, compute: Any, *,
                 supports_dry_run: bool = False) -> None:
        self.target_name = target_name
        self.account = account
        self.vm_resource_id = vm_resource_id
        # only then does the probe run `account edit --dry-run`: a CLI that ignored the flag would apply the edit
        self.supports_dry_run = supports_dry_run
        self.description = f"VM {vm_resource_id.rsplit('/', 1)[-1]} (Run Command)"
        self._compute = compute  # shared.adapters.compute.ComputeAdapter
        self.probed_record: dict[str, Any] | None = None

    async def close(self) -> None:
        return None

    async def _run(self, operation: str, script: list[str], secret: str | None = None) -> tuple[int, str, str]:
        protected = {"CC_NEW_SECRET": secret} if secret is not None else {}
        name = f"ccr-{operation}-{uuid.uuid4().hex[:8]}"
        result = await self._compute.run_command(self.vm_resource_id, name, script, {"CC_ACCOUNT": self.account},
                                                 protected, RUN_COMMAND_TIMEOUT_SECONDS)
        stdout = scrub(str(result.stdout or ""), secret)
        stderr = scrub(str(result.stderr or ""), secret)
        exit_code = result.exit_code if result.exit_code is not None else -1
        logger.info("Run Command %s on %s: state %s, exit %s", operation, self.description, result.execution_state,
                    exit_code)
        if exit_code == EXIT_ACCOUNT_MISSING and "CCR-RESULT account-missing" in stdout:
            raise CycleCloudAccountMissingError(
                f"CycleCloud has no account named '{self.account}'.", reason=_first_line(stderr) or "Account not found",
                fix="Set cyclecloud.account to the name `cyclecloud account list` shows on the CycleCloud VM (often "
                    "'azure').", target=self.target_name)
        if exit_code == EXIT_EDIT_REJECTED and "CCR-RESULT edit-rejected" in stdout:
            return exit_code, stdout, stderr
        if exit_code != 0 or str(result.execution_state).lower() not in {"succeeded", "executionstate.succeeded"}:
            raise CycleCloudRunCommandError(
                f"The Run Command '{operation}' on {self.description} failed.",
                reason=f"execution state {result.execution_state}, exit code {exit_code}: "
                       f"{_first_line(stderr) or '(no error output)'}",
                fix=_run_command_fix(exit_code), target=self.target_name,
                details={"execution_state": str(result.execution_state), "exit_code": exit_code})
        return exit_code, stdout, stderr

    async def read_record(self) -> dict[str, Any]:
        _, stdout, _ = await self._run("show", show_script())
        return _record(stdout, self.target_name)

    async def update_secret(self, secret: str) -> dict[str, Any]:
        register_secret(secret)
        exit_code, stdout, stderr = await self._run("edit", edit_script(), secret)
        if exit_code == EXIT_EDIT_REJECTED:
            raise CycleCloudUpdateRejectedError(
                "CycleCloud rejected the new credential.", reason=_message(stderr),
                fix="The account keeps its previous secret. If CycleCloud's message names an AADSTS code, the new "
                    "secret is not usable yet or is wrong (run `validate`); if it names an authorization error, "
                    "repair the role assignments (run `roles`).", target=self.target_name)
        return _record(stdout, self.target_name)

    async def probe(self) -> list[ProbeCheck]:
        checks = [ProbeCheck("tls", CheckStatus.SKIPPED,
                             "not used: the CLI on the VM talks to its own server; ARM's TLS is verified by the SDK")]

        def result(*items: ProbeCheck) -> list[ProbeCheck]:
            order = {"reachable": 0, "tls": 1, "login": 2, "account": 3, "update_path": 4}
            return sorted([*checks, *items], key=lambda c: order[c.name])

        try:
            record = await self.read_record()
        except CycleCloudAccountMissingError as exc:
            return result(ProbeCheck("reachable", CheckStatus.OK, f"Run Command ran on {self.description}"),
                          ProbeCheck("login", CheckStatus.OK, "the CycleCloud CLI on the VM is initialised"),
                          ProbeCheck("account", CheckStatus.FAILED, f"{exc.message} {exc.reason}", exc.fix),
                          ProbeCheck("update_path", CheckStatus.SKIPPED, "not tried: the account is missing"))
        except CycleCloudRunCommandError as exc:
            return result(ProbeCheck("reachable", CheckStatus.OK, f"Run Command ran on {self.description}"),
                          ProbeCheck("login", CheckStatus.FAILED, f"{exc.message} {exc.reason}", exc.fix),
                          ProbeCheck("account", CheckStatus.SKIPPED, "not tried: the CLI failed"),
                          ProbeCheck("update_path", CheckStatus.SKIPPED, "not tried: the CLI failed"))
        except RemediatorError as exc:
            return result(ProbeCheck("reachable", CheckStatus.FAILED, f"{exc.message} {exc.reason}", exc.fix),
                          *(ProbeCheck(n, CheckStatus.SKIPPED, "not tried: Run Command is not available")
                            for n in ("login", "account", "update_path")))
        self.probed_record = record
        ok = [ProbeCheck("reachable", CheckStatus.OK, f"Run Command ran on {self.description}"),
              ProbeCheck("login", CheckStatus.OK, "the CycleCloud CLI on the VM is initialised"),
              ProbeCheck("account", CheckStatus.OK, f"account '{self.account}' found")]
        if not self.supports_dry_run:
            return result(*ok, ProbeCheck(
                "update_path", CheckStatus.SKIPPED,
                "not checked: `cyclecloud account edit` is only run to rotate (read-only probe; set "
                "cyclecloud.supports_dry_run: true if this CLI honours `account edit --dry-run`)"))
        try:
            exit_code, _, stderr = await self._run("dryrun", dry_run_script())
        except RemediatorError as exc:
            return result(*ok, ProbeCheck("update_path", CheckStatus.FAILED, f"{exc.message} {exc.reason}", exc.fix))
        if exit_code == EXIT_EDIT_REJECTED:
            return result(*ok, ProbeCheck(
                "update_path", CheckStatus.FAILED,
                f"`cyclecloud account edit --dry-run` rejected the current definition: {_message(stderr)}",
                "CycleCloud's validation fails with the credential it holds now: run `validate` for the cause."))
        return result(*ok, ProbeCheck("update_path", CheckStatus.OK,
                                      "`cyclecloud account edit --dry-run` accepted the current definition"))


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:300]


def _message(stderr: str) -> str:
    return _first_line(stderr).removeprefix("Error:").strip() or "(no message)"


def _record(stdout: str, target: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("CCR-ACCOUNT ")]
    try:
        record = json.loads(lines[-1].removeprefix("CCR-ACCOUNT "))
    except (IndexError, ValueError):
        record = None
    if not isinstance(record, dict):
        raise CycleCloudRunCommandError(
            "The Run Command finished but printed no account record.",
            reason="no 'CCR-ACCOUNT' line in its output (the output may have been truncated)",
            fix="Run `cyclecloud account show <name>` on the VM as root to see what the CLI says.", target=target)
    return record


def _run_command_fix(exit_code: int) -> str:
    if exit_code == EXIT_CLI_TIMEOUT:
        return (f"A `cyclecloud` call on the VM did not finish within {CLI_TIMEOUT_SECONDS} s and was stopped. Check "
                "that cycle_server is running and responsive (`/opt/cycle_server/cycle_server status`); an "
                "interrupted `account edit` may or may not have been applied, so read the account back before "
                "relying on either secret.")
    if exit_code == 127:
        return ("Install and initialise the CycleCloud CLI for root on the CycleCloud VM (`cyclecloud initialize "
                "--batch ...`), so `cyclecloud` is on root's PATH.")
    if exit_code == EXIT_CLI_FAILED:
        return ("The CycleCloud CLI on the VM failed (see the reason); check that it is initialised for root and that "
                "cycle_server is running (`/opt/cycle_server/cycle_server status`).")
    return ("Look at the Run Command's output in the portal (VM > Run command) or `az vm run-command show "
            "--instance-view`; make sure the VM is running and its agent is ready.")
