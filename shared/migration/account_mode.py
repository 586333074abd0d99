"""Switch CycleCloud's cloud provider account between the VM's managed identity and a client secret, through
ARM Run Command on the CycleCloud VM (`cyclecloud account edit`), and read what CycleCloud then holds.

The script is the rotation's Run Command script (shared/adapters/cyclecloud/runcommand.py: memory-backed work
file, umask 077, shred, bounded CLI calls, allow-listed output) with one different edit: instead of replacing
only the secret it sets the authentication mode, from the plain parameter `CC_AUTH_MODE`:
- `managed_identity`: AzureRMUseManagedIdentity true, application id and secret cleared;
- `service_principal` (the rollback): AzureRMUseManagedIdentity false, application id from `CC_APP_ID`, the
  secret from the protected parameter `CC_NEW_SECRET` (never stored by ARM, never in the instance view).
CycleCloud validates the edited account before saving it, so a refused switch leaves the account as it was."""

from __future__ import annotations

import logging
import uuid

from ..adapters.compute import ComputeAdapter
from ..adapters.cyclecloud import CycleCloudAccount, CycleCloudRunCommandError, CycleCloudUpdateRejectedError

# the rotation's script pieces and output parsing: one script contract, checked by the twin
from ..adapters.cyclecloud.models import SECRET_FIELD, account_from_record
from ..adapters.cyclecloud.runcommand import (
    _PRELUDE,
    _PRINT_ACCOUNT,
    _SHOW,
    EXIT_EDIT_REJECTED,
    RUN_COMMAND_TIMEOUT_SECONDS,
    _edit,
    _first_line,
    _message,
    _record,
    _run_command_fix,
)
from ..redaction import register_secret, scrub

logger = logging.getLogger(__name__)

MANAGED_IDENTITY = "managed_identity"
SERVICE_PRINCIPAL = "service_principal"

_SET_MODE = [  # only the authentication fields change; every other field stays as CycleCloud has it
    "python3 - \"$work/account.json\" <<'PY'",
    "import json, os, sys",
    "record = json.load(open(sys.argv[1]))",
    f'if os.environ["CC_AUTH_MODE"] == "{MANAGED_IDENTITY}":',
    f'    record.update({{"AzureRMUseManagedIdentity": True, "AzureRMApplicationId": "", "{SECRET_FIELD}": ""}})',
    "else:",
    '    record.update({"AzureRMUseManagedIdentity": False, "AzureRMApplicationId": os.environ["CC_APP_ID"],',
    f'                   "{SECRET_FIELD}": os.environ["CC_NEW_SECRET"]}})',
    'json.dump(record, open(sys.argv[1], "w"))',
    "PY",
]


def switch_script() -> list[str]:
    return [*_PRELUDE, *_SHOW, *_SET_MODE, *_edit(dry_run=False), 'shred -u "$work/account.json"',
            *_SHOW, *_PRINT_ACCOUNT, 'echo "CCR-RESULT edited"']


async def switch_account(compute: ComputeAdapter, *, target: str, vm_id: str, account: str, mode: str,
                         app_id: str = "", secret: str | None = None) -> CycleCloudAccount:
    """Run the switch; returns the account as the script read it back after the edit. Raises
    CycleCloudUpdateRejectedError when CycleCloud's validation refuses it (nothing changed then)."""
    parameters = {"CC_ACCOUNT": account, "CC_AUTH_MODE": mode}
    protected: dict[str, str] = {}
    if mode == SERVICE_PRINCIPAL:
        if secret is None or not app_id:
            raise ValueError("switching back to a service principal needs its app id and secret")
        register_secret(secret)
        parameters["CC_APP_ID"] = app_id
        protected["CC_NEW_SECRET"] = secret
    name = f"ccr-mode-{uuid.uuid4().hex[:8]}"
    result = await compute.run_command(vm_id, name, switch_script(), parameters, protected,
                                       RUN_COMMAND_TIMEOUT_SECONDS)
    stdout, stderr = scrub(result.stdout, secret), scrub(result.stderr, secret)
    exit_code = result.exit_code if result.exit_code is not None else -1
    if exit_code == EXIT_EDIT_REJECTED and "CCR-RESULT edit-rejected" in stdout:
        raise CycleCloudUpdateRejectedError(
            f"CycleCloud refused to switch account '{account}' to {mode.replace('_', ' ')}.",
            reason=_message(stderr),
            fix="The account was left as it was. If the message names an authorization error, the identity's role "
                "assignment may still be propagating: call again in a few minutes.", target=target)
    if not result.succeeded:
        raise CycleCloudRunCommandError(
            f"The Run Command that switches CycleCloud account '{account}' failed.",
            reason=f"execution state {result.execution_state}, exit code {exit_code}: "
                   f"{_first_line(stderr) or '(no error output)'}",
            fix=_run_command_fix(exit_code), target=target,
            details={"execution_state": result.execution_state, "exit_code": exit_code})
    logger.info("CycleCloud account %s of %s switched to %s", account, target, mode)
    return account_from_record(_record(stdout, target), account)
