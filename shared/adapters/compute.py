"""Azure Compute: the CycleCloud VM's managed identity, and managed Run Commands on it.

A managed Run Command (`PUT .../virtualMachines/{vm}/runCommands/{name}`) is used rather than the action
`runCommand` because it has `protectedParameters`: the secret reaches the VM as an environment variable of the
script and is never returned by ARM. This module never logs parameter values, registers protected values with
the redaction filter, and deletes the run command afterwards so nothing lingers on the VM resource.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from ..clients import ClientFactory
from ..errors import BadRequestError, ServiceError
from ..redaction import register_secret, scrub
from .arm_errors import raise_arm_error

logger = logging.getLogger(__name__)

_VM_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute/"
    r"virtualMachines/(?P<vm>[^/]+)$", re.IGNORECASE)
POLLING_INTERVAL_SECONDS = 5  # ARM's Retry-After overrides it
DELETE_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class VmInfo:
    id: str
    name: str
    location: str
    identity_principal_id: str | None  # the system-assigned identity's object id; None = identity off
    identity_tenant_id: str | None
    user_assigned_identity_ids: tuple[str, ...] = ()  # attached user-assigned identities (resource ids)

    @property
    def has_system_identity(self) -> bool:
        return self.identity_principal_id is not None


@dataclass(frozen=True)
class RunCommandResult:
    name: str
    execution_state: str  # Succeeded | Failed | TimedOut | Canceled | Unknown
    exit_code: int | None
    stdout: str  # ARM keeps the last 4 KB
    stderr: str

    @property
    def succeeded(self) -> bool:
        return self.execution_state == "Succeeded" and self.exit_code == 0


def parse_vm_id(vm_id: str) -> tuple[str, str, str]:
    match = _VM_ID.match(vm_id.strip())
    if not match:
        raise BadRequestError(f"'{vm_id}' is not a virtual machine resource id.",
                              fix="Use /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Compute/"
                                  "virtualMachines/<name> (VM > Properties > Resource ID).")
    return match.group("sub"), match.group("rg"), match.group("vm")


def _get(obj: Any, attr: str) -> Any:
    """An attribute of an SDK model (or None), with SDK enums reduced to their wire value."""
    value = getattr(obj, attr, None) if obj is not None else None
    return getattr(value, "value", value) if isinstance(value, str) else value


class ComputeAdapter:
    def __init__(self, clients: ClientFactory) -> None:
        self.clients = clients

    async def get_vm(self, vm_id: str) -> VmInfo:
        sub, rg, name = parse_vm_id(vm_id)
        try:
            vm = await self.clients.compute(sub).virtual_machines.get(rg, name)
        except Exception as exc:
            raise_arm_error(exc, what=f"Reading virtual machine {vm_id}", scope=vm_id)
        identity = _get(vm, "identity")
        identity_type = str(_get(identity, "type") or "")
        principal = _get(identity, "principal_id") if "systemassigned" in identity_type.lower() else None
        return VmInfo(
            id=str(_get(vm, "id") or vm_id), name=str(_get(vm, "name") or name), location=str(_get(vm, "location")),
            identity_principal_id=str(principal).lower() if principal else None,
            identity_tenant_id=str(_get(identity, "tenant_id")).lower() if principal else None,
            user_assigned_identity_ids=tuple(sorted(_get(identity, "user_assigned_identities") or {})),
        )

    async def enable_system_identity(self, vm_id: str, timeout_seconds: float = 120.0) -> VmInfo:
        """Turn on the VM's system-assigned identity, keeping its user-assigned identities attached (a PATCH
        whose identity type omitted "UserAssigned" would detach them). Returns the VM as read back after the
        change; a VM whose system identity is already on is returned unchanged, without a write."""
        current = await self.get_vm(vm_id)
        if current.has_system_identity:
            return current
        sub, rg, name = parse_vm_id(vm_id)
        identity: dict[str, Any] = {"type": "SystemAssigned"}
        if current.user_assigned_identity_ids:
            identity = {"type": "SystemAssigned, UserAssigned",
                        "userAssignedIdentities": {i: {} for i in current.user_assigned_identity_ids}}
        body: Any = {"identity": identity}  # only identity: every other VM setting stays as it is
        what = f"Turning on the system-assigned identity of {vm_id}"
        logger.info("turning on the system-assigned identity of %s", vm_id)
        try:
            poller = await self.clients.compute(sub).virtual_machines.begin_update(
                rg, name, body, polling_interval=POLLING_INTERVAL_SECONDS)
            await asyncio.wait_for(poller.result(), timeout=timeout_seconds)
        except TimeoutError:
            raise ServiceError(f"{what} did not finish within {timeout_seconds:g} s.",
                               reason="ARM is still updating the VM.",
                               fix="Check the VM's Identity blade; calling again resumes.") from None
        except Exception as exc:
            raise_arm_error(exc, what=what, scope=vm_id)
        return await self.get_vm(vm_id)

    async def run_command(self, vm_id: str, name: str, script: list[str], parameters: dict[str, str],
                          protected_parameters: dict[str, str], timeout_seconds: float = 300.0,
                          *, location: str | None = None) -> RunCommandResult:
        """Run `script` (bash lines) on the VM as a managed Run Command; parameters arrive as environment
        variables. Waits at most `timeout_seconds`, returns the exit code and output, and deletes the run
        command afterwards (best effort). Protected values are never logged or returned."""
        for value in protected_parameters.values():
            register_secret(value)
        sub, rg, vm_name = parse_vm_id(vm_id)
        if location is None:
            location = (await self.get_vm(vm_id)).location
        client = self.clients.compute(sub)
        body: Any = {  # the SDK accepts the wire shape as a mapping
            "location": location,
            "properties": {
                "source": {"script": "\n".join(script)},
                "parameters": [{"name": k, "value": v} for k, v in parameters.items()],
                "protectedParameters": [{"name": k, "value": v} for k, v in protected_parameters.items()],
                "asyncExecution": False,
                "timeoutInSeconds": int(timeout_seconds),
                "treatFailureAsDeploymentFailure": False,
            },
        }
        what = f"Run Command '{name}' on {vm_id}"
        logger.info("starting run command %s on %s (parameters: %s; protected: %s)", name, vm_id,
                    ", ".join(parameters) or "none", ", ".join(protected_parameters) or "none")
        try:
            try:
                poller = await client.virtual_machine_run_commands.begin_create_or_update(
                    rg, vm_name, name, body, polling_interval=POLLING_INTERVAL_SECONDS)
                await asyncio.wait_for(poller.result(), timeout=timeout_seconds + 30)
                view_holder = await client.virtual_machine_run_commands.get_by_virtual_machine(
                    rg, vm_name, name, expand="instanceView")
            except TimeoutError:
                raise ServiceError(f"{what} did not finish within {timeout_seconds:g} s.",
                                   reason="The VM agent may be down or the script may be hanging.",
                                   fix="Check the VM's agent status (VM > Run command > history) and retry.",
                                   ) from None
            except Exception as exc:
                raise_arm_error(exc, what=what, scope=f"{vm_id}/runCommands/{name}")
        finally:
            await self._delete_quietly(client, rg, vm_name, name)
        view = _get(_get(view_holder, "properties"), "instance_view")
        exit_code = _get(view, "exit_code")
        result = RunCommandResult(
            name=name, execution_state=str(_get(view, "execution_state") or "Unknown"),
            exit_code=int(exit_code) if exit_code is not None else None,
            stdout=scrub(str(_get(view, "output") or ""), *protected_parameters.values()),
            stderr=scrub(str(_get(view, "error") or ""), *protected_parameters.values()),
        )
        logger.info("run command %s on %s: %s, exit code %s", name, vm_id, result.execution_state, result.exit_code)
        return result

    async def _delete_quietly(self, client: Any, rg: str, vm_name: str, name: str) -> None:
        try:
            poller = await client.virtual_machine_run_commands.begin_delete(
                rg, vm_name, name, polling_interval=POLLING_INTERVAL_SECONDS)
            await asyncio.wait_for(poller.result(), timeout=DELETE_TIMEOUT_SECONDS)
        except Exception as exc:  # clean-up must not hide the command's own outcome
            logger.warning("could not delete run command %s on %s: %s", name, vm_name,
                           scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
