"""Microsoft.Compute: virtual machines (read, and PATCH of their identity) and managed Run Commands.

Run Commands execute synchronously on PUT through `twin.run_command_executor` when set (the CycleCloud twin
installs one), else exit 127 `bash: cyclecloud: command not found`. The PUT answers 201 with an
`Azure-AsyncOperation` URL (status `Succeeded`) so azure-mgmt-compute's ARM poller completes. Protected
parameter values are handed to the executor and never stored.
"""

from __future__ import annotations

import uuid
from typing import Any

from ...http import HttpError, Request, Response, empty, json_response
from ...state import Principal, VirtualMachine, iso, new_guid
from .base import ArmProvider, arm_error

RUN_COMMAND_OUTPUT_LIMIT = 4096  # Run Command keeps the last 4 KB of stdout/stderr
RUN_COMMAND_RETRY_AFTER = "1"  # seconds the poller waits before asking the async-operation URL


class ComputeProvider(ArmProvider):
    """Virtual machines, their managed Run Commands and the async operations the SDK's poller reads."""

    def _vm_id(self, request: Request) -> str:
        p = request.params
        return (f"/subscriptions/{p['sub']}/resourceGroups/{p['rg']}/providers/Microsoft.Compute/"
                f"virtualMachines/{p['vm']}")

    def _vm_not_found(self, request: Request) -> HttpError:
        return arm_error(404, "ResourceNotFound", f"The Resource 'Microsoft.Compute/virtualMachines/"
                         f"{request.params['vm']}' under resource group '{request.params['rg']}' was not found. "
                         "For more details please go to https://aka.ms/ARMResourceNotFoundFix")

    def get_vm(self, request: Request) -> Response:
        vm_id = self._vm_id(request)
        info = self._caller(request, vm_id)
        self._authorize(info, "Microsoft.Compute/virtualMachines/read", vm_id)
        with self.state.lock:
            vm = self.state.vm(vm_id)
            if vm is None:
                raise self._vm_not_found(request)
            body: dict[str, Any] = {
                "name": vm.name, "id": vm.id, "type": "Microsoft.Compute/virtualMachines", "location": vm.location,
                "properties": {
                    "vmId": str(uuid.uuid5(uuid.NAMESPACE_URL, vm.id.lower())),
                    "hardwareProfile": {"vmSize": "Standard_D4s_v3"},
                    "storageProfile": {"osDisk": {"osType": "Linux", "name": f"{vm.name}-osdisk",
                                                  "createOption": "FromImage"}},
                    "osProfile": {"computerName": vm.name, "adminUsername": "cycleadmin",
                                  "linuxConfiguration": {"disablePasswordAuthentication": True}},
                    "provisioningState": "Succeeded",
                },
            }
            identity = _identity_body(vm)
            if identity:
                body["identity"] = identity
        return json_response(200, body)

    def update_vm(self, request: Request) -> Response:
        """PATCH a VM; only `identity` is modelled, with ARM's semantics: the type lists every kind the VM keeps
        (a type without "UserAssigned" detaches the user-assigned identities), turning SystemAssigned on creates
        a new principal (still replicating for a while), turning it off deletes it."""
        vm_id = self._vm_id(request)
        info = self._caller(request, vm_id)
        self._authorize(info, "Microsoft.Compute/virtualMachines/write", vm_id, log_failure=True)
        try:
            body = request.json() or {}
            identity = body.get("identity")
            kinds = {k.strip().lower() for k in str((identity or {}).get("type") or "").split(",")}
            user_assigned = dict((identity or {}).get("userAssignedIdentities") or {})
        except (ValueError, TypeError, AttributeError):
            raise arm_error(400, "InvalidRequestContent", "The request content was invalid and could not be "
                            "deserialized.") from None
        with self.state.lock:
            vm = self.state.vm(vm_id)
            if vm is None:
                raise self._vm_not_found(request)
            if identity is not None:
                if "systemassigned" in kinds and not vm.identity_principal_id:
                    sub = self.state.subscriptions.get(vm.subscription_id)
                    principal = Principal(object_id=new_guid(), tenant_id=sub.tenant_id if sub else info.tenant_id,
                                          kind="ServicePrincipal", display_name=vm.name, app_id=new_guid(),
                                          created_at=self.state.now())
                    self.state.principals[principal.object_id] = principal
                    vm.identity_principal_id, vm.identity_tenant_id = principal.object_id, principal.tenant_id
                elif "systemassigned" not in kinds and vm.identity_principal_id:
                    self.state.principals.pop(vm.identity_principal_id, None)
                    vm.identity_principal_id = vm.identity_tenant_id = None
                if "userassigned" in kinds:
                    kept = [i for i in vm.user_assigned_identities
                            if not any(k.lower() == i.lower() and v is None for k, v in user_assigned.items())]
                    added = [k for k, v in user_assigned.items() if v is not None
                             and k.lower() not in {i.lower() for i in kept}]
                    vm.user_assigned_identities = kept + added
                else:
                    vm.user_assigned_identities = []
        return self.get_vm(request)

    def _run_command_body(self, record: dict[str, Any], *, expand: bool) -> dict[str, Any]:
        props = {k: v for k, v in record["properties"].items()}
        if not expand:
            props.pop("instanceView", None)
        return {"name": record["name"], "id": record["id"], "type": "Microsoft.Compute/virtualMachines/runCommands",
                "location": record["location"], "properties": props}

    def put_run_command(self, request: Request) -> Response:
        vm_id = self._vm_id(request)
        name = request.params["name"]
        command_id = f"{vm_id}/runCommands/{name}"
        info = self._caller(request, vm_id)
        self._authorize(info, "Microsoft.Compute/virtualMachines/runCommands/write", command_id,
                        log_failure=True)
        with self.state.lock:
            vm = self.state.vm(vm_id)
            if vm is None:
                raise arm_error(404, "ParentResourceNotFound", "Can not perform requested operation on nested "
                                f"resource. Parent resource '{request.params['vm']}' not found.")
            existed = name.lower() in {k.lower() for k in vm.run_commands}
        try:
            body = request.json() or {}
            props = body.get("properties") or {}
            source = props.get("source") or {}
            script = source.get("script")
            if not isinstance(script, str) and not source.get("commandId") and not source.get("scriptUri"):
                raise ValueError("no script")
            parameters = {p["name"]: str(p.get("value", "")) for p in props.get("parameters") or []}
            protected = {p["name"]: str(p.get("value", "")) for p in props.get("protectedParameters") or []}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise arm_error(400, "InvalidParameter", "Required parameter 'source' is missing (null).",
                            target="runCommand") from None
        lines = (script or "").split("\n")
        started = self.state.now()
        executor = getattr(self.twin, "run_command_executor", None)
        if executor is not None:
            exit_code, stdout, stderr = executor(vm, lines, parameters, protected)
        else:
            exit_code, stdout, stderr = 127, "", "bash: cyclecloud: command not found\n"
        del protected  # handed to the executor only; never stored
        ended = self.state.now()
        failed = exit_code != 0
        deployment_failure = failed and bool(props.get("treatFailureAsDeploymentFailure"))
        operation = new_guid()
        record = {
            "name": name, "id": command_id, "location": body.get("location") or vm.location,
            "operation": operation, "operation_failed": deployment_failure,
            "started": iso(started), "ended": iso(ended),
            "properties": {
                "source": {"script": script} if script is not None else dict(source),
                "parameters": [{"name": k, "value": v} for k, v in parameters.items()],
                "asyncExecution": bool(props.get("asyncExecution", False)),
                "runAsUser": props.get("runAsUser"),
                "timeoutInSeconds": int(props.get("timeoutInSeconds") or 0),
                "treatFailureAsDeploymentFailure": bool(props.get("treatFailureAsDeploymentFailure", False)),
                "provisioningState": "Failed" if deployment_failure else "Succeeded",
                "instanceView": {
                    "executionState": "Failed" if failed else "Succeeded",
                    "executionMessage": f"Execution completed with exit code {exit_code}" if failed
                    else "Execution completed",
                    "exitCode": exit_code,
                    "output": stdout[-RUN_COMMAND_OUTPUT_LIMIT:],
                    "error": stderr[-RUN_COMMAND_OUTPUT_LIMIT:],
                    "startTime": iso(started), "endTime": iso(ended), "statuses": [],
                },
            },
        }
        with self.state.lock:
            for key in [k for k in vm.run_commands if k.lower() == name.lower()]:
                del vm.run_commands[key]
            vm.run_commands[name] = record
        reply = self._run_command_body(record, expand=False)
        reply["properties"]["provisioningState"] = "Updating" if existed else "Creating"
        sub = request.params["sub"]
        async_url = (f"https://{request.host}/subscriptions/{sub}/providers/Microsoft.Compute/locations/"
                     f"{record['location']}/operations/{operation}?p=runCommand&api-version="
                     f"{request.query.get('api-version', '2024-07-01')}")
        return json_response(200 if existed else 201, reply,
                             {"Azure-AsyncOperation": async_url, "Retry-After": RUN_COMMAND_RETRY_AFTER})

    def compute_operation(self, request: Request) -> Response:
        self._caller(request, f"/subscriptions/{request.params['sub']}")
        operation = request.params["operation"].lower()
        with self.state.lock:
            for vm in self.state.virtual_machines.values():
                for record in vm.run_commands.values():
                    if record.get("operation") == operation:
                        body: dict[str, Any] = {"startTime": record["started"], "endTime": record["ended"],
                                                "name": operation,
                                                "status": "Failed" if record["operation_failed"] else "Succeeded"}
                        if record["operation_failed"]:
                            view = record["properties"]["instanceView"]
                            body["error"] = {"code": "VMExtensionProvisioningError",
                                             "message": f"Run command '{record['name']}' failed with exit code "
                                                        f"{view['exitCode']}."}
                        return json_response(200, body)
        raise arm_error(404, "OperationNotFound", f"The operation '{operation}' was not found.")

    def get_run_command(self, request: Request) -> Response:
        vm_id = self._vm_id(request)
        name = request.params["name"]
        info = self._caller(request, vm_id)
        self._authorize(info, "Microsoft.Compute/virtualMachines/runCommands/read", f"{vm_id}/runCommands/{name}")
        with self.state.lock:
            vm = self.state.vm(vm_id)
            if vm is None:
                raise self._vm_not_found(request)
            record = next((r for k, r in vm.run_commands.items() if k.lower() == name.lower()), None)
        if record is None:
            raise arm_error(404, "ResourceNotFound", f"The Resource 'Microsoft.Compute/virtualMachines/"
                            f"{request.params['vm']}/runCommands/{name}' under resource group "
                            f"'{request.params['rg']}' was not found. For more details please go to "
                            "https://aka.ms/ARMResourceNotFoundFix")
        expand = "instanceview" in request.query.get("$expand", "").lower()
        return json_response(200, self._run_command_body(record, expand=expand))

    def delete_run_command(self, request: Request) -> Response:
        vm_id = self._vm_id(request)
        name = request.params["name"]
        info = self._caller(request, vm_id)
        self._authorize(info, "Microsoft.Compute/virtualMachines/runCommands/delete", f"{vm_id}/runCommands/{name}",
                        log_failure=True)
        with self.state.lock:
            vm = self.state.vm(vm_id)
            if vm is None:
                return empty(204)
            keys = [k for k in vm.run_commands if k.lower() == name.lower()]
            for key in keys:
                del vm.run_commands[key]
        return empty(200 if keys else 204)


def _identity_body(vm: VirtualMachine) -> dict[str, Any] | None:
    """The VM's `identity` as ARM shows it (None when it has none)."""
    kinds = (["SystemAssigned"] if vm.identity_principal_id else []) + (
        ["UserAssigned"] if vm.user_assigned_identities else [])
    if not kinds:
        return None
    body: dict[str, Any] = {"type": ", ".join(kinds)}
    if vm.identity_principal_id:
        body |= {"principalId": vm.identity_principal_id, "tenantId": vm.identity_tenant_id}
    if vm.user_assigned_identities:
        body["userAssignedIdentities"] = {
            i: {"principalId": str(uuid.uuid5(uuid.NAMESPACE_OID, i.lower())),
                "clientId": str(uuid.uuid5(uuid.NAMESPACE_URL, i.lower()))}
            for i in vm.user_assigned_identities}
    return body
