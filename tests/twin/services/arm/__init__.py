"""Azure Resource Manager: one twin service for management.azure.com, combining one module per resource
provider: `resources` (subscriptions), `authorization` (role definitions and assignments, effective permissions,
policy assignments), `insights` (the Activity Log) and `compute` (virtual machines and managed Run Commands);
`base` holds what they share (authentication, authorisation, ARM's error body).

Every route authenticates the caller by its bearer token (audience = the ARM endpoint) and authorises it with
the twin's RBAC evaluation (`State.is_allowed`), answering with ARM's real error bodies:
`{"error": {"code", "message", "target"?, "details"?, "additionalInfo"?}}`. Each route accepts the api-versions
of `arm_versions.ACCEPTED` and answers any other as ARM does (checked before authentication, as ARM routes by
api-version before the provider sees the request). Each provider module documents its modelling choices.
"""

from __future__ import annotations

from ...http import HttpError, Request, Router, json_response
from ...server import ARM_HOSTS
from ..arm_versions import api_version_error
from .authorization import AuthorizationProvider
from .base import AUTH, arm_error, guid_of
from .compute import ComputeProvider
from .insights import InsightsProvider
from .resources import ResourcesProvider

__all__ = ["ArmService", "arm_error", "guid_of"]


class ArmService(ResourcesProvider, AuthorizationProvider, InsightsProvider, ComputeProvider):
    """The ARM endpoint: routes each request to its provider after checking its api-version."""

    name = "arm"

    def serves(self, host: str) -> bool:
        return host in ARM_HOSTS

    def check(self, request: Request) -> None:
        location = "eastus"
        if "vm" in request.params:
            with self.state.lock:
                vm = self.state.vm(self._vm_id(request))
                location = vm.location if vm else location
        elif "location" in request.params:
            location = request.params["location"]
        refusal = api_version_error(request.operation, request.query.get("api-version"), location=location,
                                    narrowed=self.state.switches.arm_api_versions)
        if refusal is not None:
            status, error = refusal
            raise HttpError(json_response(status, {"error": error}))

    def register(self, router: Router) -> None:
        sub = "/subscriptions/{sub}"
        vm = sub + "/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}"
        router.add("GET", "/subscriptions", "listSubscriptions", self.list_subscriptions)
        router.add("GET", sub, "getSubscription", self.get_subscription)
        router.add("GET", sub + AUTH + "/permissions", "listPermissions", self.permissions)
        router.add("GET", sub + "/resourceGroups/{rg}" + AUTH + "/permissions", "listPermissions", self.permissions)
        # Permissions - List For Resource (the VM a Run Command target pushes through)
        router.add("GET", sub + "/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}" + AUTH
                   + "/permissions", "listPermissions", self.permissions)
        router.add("GET", sub + AUTH + "/policyAssignments", "listPolicyAssignments", self.policy_assignments)
        router.add("GET", sub + "/providers/Microsoft.Insights/eventtypes/management/values", "listActivityLog",
                   self.activity_log)
        router.add("GET", vm, "getVirtualMachine", self.get_vm)
        router.add("PATCH", vm, "updateVirtualMachine", self.update_vm)
        router.add("PUT", vm + "/runCommands/{name}", "createRunCommand", self.put_run_command)
        router.add("GET", vm + "/runCommands/{name}", "getRunCommand", self.get_run_command)
        router.add("DELETE", vm + "/runCommands/{name}", "deleteRunCommand", self.delete_run_command)
        router.add("GET", sub + "/providers/Microsoft.Compute/locations/{location}/operations/{operation}",
                   "getComputeOperation", self.compute_operation)
        for prefix in ("{scope:path}", ""):
            router.add("GET", prefix + AUTH + "/roleDefinitions/{id}", "getRoleDefinition", self.get_role_definition)
            router.add("GET", prefix + AUTH + "/roleDefinitions", "listRoleDefinitions", self.list_role_definitions)
            router.add("PUT", prefix + AUTH + "/roleAssignments/{name}", "createRoleAssignment",
                       self.create_role_assignment)
            router.add("GET", prefix + AUTH + "/roleAssignments/{name}", "getRoleAssignment",
                       self.get_role_assignment)
            router.add("DELETE", prefix + AUTH + "/roleAssignments/{name}", "deleteRoleAssignment",
                       self.delete_role_assignment)
            router.add("GET", prefix + AUTH + "/roleAssignments", "listRoleAssignments", self.list_role_assignments)
