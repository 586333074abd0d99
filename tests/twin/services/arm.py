"""Azure Resource Manager: subscriptions, role definitions and assignments, effective permissions, policy
assignments, the Activity Log, virtual machines and managed Run Commands.

Every route authenticates the caller by its bearer token (audience = the ARM endpoint) and authorises it with
the twin's RBAC evaluation (`State.is_allowed`), answering with ARM's real error bodies:
`{"error": {"code", "message", "target"?, "details"?, "additionalInfo"?}}`. Each route accepts the api-versions
of `arm_versions.ACCEPTED` and answers any other as ARM does (checked before authentication, as ARM routes by
api-version before the provider sees the request).

Modelling choices (documented because they are simplifications of the real service):
- Tenant: a token from another tenant than the subscription's gets 401 `InvalidAuthenticationTokenTenant`
  with ARM's `WWW-Authenticate` header; an unknown subscription gets 404 `SubscriptionNotFound`.
- Role definitions are readable by any authenticated caller of the tenant (as in Azure, where every principal
  can list built-in roles). Role assignments, policy assignments, the Activity Log and VMs need the matching
  `read` action at the scope. The effective-permissions endpoint answers for the caller only and needs no
  role (a caller with no role gets an empty list).
- Creating a role assignment: RBAC (`roleAssignments/write` at the scope) -> Azure Policy
  (`state.policy_assignments`: a deny on role assignments for the listed role ids / principal types, empty =
  all) -> the provider's checks: role definition exists, `RoleAssignmentUpdateNotPermitted` (same name,
  different principal/role/scope), `RoleAssignmentExists` (same principal+role+scope under another name, 409),
  `PrincipalNotFound` (400). ABAC conditions on the caller's own assignments are not evaluated.
- Replication delay: a principal younger than `propagation.principal_replication_seconds` is invisible; ARM
  only looks the principal up when the request has no `principalType` (real behaviour: setting it skips the
  lookup). A principal younger than `propagation.principal_not_found_seconds` gets `PrincipalNotFound` even
  with `principalType` set (the stubborn case some tenants see); both use the principal's `created` time.
- New assignments get `created_at`, so `propagation.role_assignment_seconds` delays their effect.
- Management groups are not modelled: ancestors of a subscription are the root scope `/` only.
- Failed writes (authorization, policy) are appended to the Activity Log with the caller's client id as
  `caller`, as the Activity Log records service principals; the object id is only in the event's `claims`.
  Scenario events (`activity_log`) can carry any ARM error as `message` (e.g. a `RequestDisallowedByPolicy`
  for a VM that CycleCloud tried to create).
- Run Commands execute synchronously on PUT through `twin.run_command_executor` when set (the CycleCloud
  twin installs one), else exit 127 `bash: cyclecloud: command not found`. The PUT answers 201 with an
  `Azure-AsyncOperation` URL (status `Succeeded`) so azure-mgmt-compute's ARM poller completes. Protected
  parameter values are handed to the executor and never stored.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from ..http import HttpError, Request, Response, Router, empty, json_response
from ..server import ARM_HOSTS, Service
from ..state import (
    ActivityLogEvent,
    PolicyAssignment,
    Principal,
    RoleAssignment,
    RoleDefinition,
    Subscription,
    VirtualMachine,
    iso,
    new_guid,
    scope_covers,
)
from ..tokens import TokenInfo
from . import activity_log
from .arm_versions import api_version_error
from .common import require_token

AUTH = "/providers/Microsoft.Authorization"
ROLE_ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"
RUN_COMMAND_OUTPUT_LIMIT = 4096  # Run Command keeps the last 4 KB of stdout/stderr
RUN_COMMAND_RETRY_AFTER = "1"  # seconds the poller waits before asking the async-operation URL
_GUID_TAIL = re.compile(r"([0-9a-fA-F-]{36})$")
_FILTER_PRINCIPAL = re.compile(r"principalId\s+eq\s+'([^']+)'", re.IGNORECASE)
_FILTER_ROLE_NAME = re.compile(r"roleName\s+eq\s+'([^']*)'", re.IGNORECASE)
_SUB_IN_SCOPE = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)
_RG_IN_SCOPE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/([^/]+)", re.IGNORECASE)


def arm_error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
              **extra: Any) -> HttpError:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return HttpError(json_response(status, {"error": body}, headers))


def guid_of(value: str) -> str:
    """Role definition ids arrive as a GUID or a full id; compare by the trailing GUID."""
    match = _GUID_TAIL.search(value.strip())
    return (match.group(1) if match else value.rsplit("/", 1)[-1]).lower()


def _norm_scope(scope: str) -> str:
    scope = "/" + scope.strip("/")
    return scope


class ArmService(Service):
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

    # -- callers --------------------------------------------------------------------------------------------

    def _audiences(self, request: Request) -> set[str]:
        own = f"https://{request.host}"
        return {own, "https://management.core.windows.net"} if request.host == "management.azure.com" else {own}

    def _caller(self, request: Request, scope: str | None = None) -> TokenInfo:
        """Authenticate; when `scope` lies in a subscription, check that it exists and the token's tenant."""
        if request.bearer is None:
            raise arm_error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is "
                            "missing.", headers={"WWW-Authenticate": 'Bearer authorization_uri="https://login.'
                                                 'windows.net/", error="invalid_token", error_description="The '
                                                 'authentication failed because of missing \'Authorization\' '
                                                 'header."'})
        info = self.twin.tokens.lookup(request.bearer)
        if info is None or info.audience.rstrip("/") not in self._audiences(request):
            info = require_token(self.twin, request, f"https://{request.host}")
        if info.expires < self.state.now():
            raise arm_error(401, "ExpiredAuthenticationToken", "The access token expiry UTC time '"
                            f"{iso(info.expires)}' is earlier than current UTC time '{iso(self.state.now())}'.")
        if scope is not None:
            match = _SUB_IN_SCOPE.match(scope)
            if match:
                self._subscription_for(info, match.group(1))
        return info

    def _subscription_for(self, info: TokenInfo, sub_id: str) -> Subscription:
        with self.state.lock:
            sub = self.state.subscriptions.get(sub_id.lower())
        if sub is None:
            raise arm_error(404, "SubscriptionNotFound", f"The subscription '{sub_id}' could not be found.")
        if sub.tenant_id != info.tenant_id.lower():
            raise arm_error(
                401, "InvalidAuthenticationTokenTenant",
                f"The access token is from the wrong issuer 'https://sts.windows.net/{info.tenant_id}/'. It must "
                f"match the tenant 'https://sts.windows.net/{sub.tenant_id}/' associated with this subscription. "
                f"Please use the authority (URL) 'https://login.windows.net/{sub.tenant_id}' to get the token. "
                "Note, if the subscription is transferred to another tenant there is no impact to the services, "
                "but information about new tenant could take time to propagate (up to an hour). If you just "
                "transferred your subscription and see this error message, please try back later.",
                headers={"WWW-Authenticate": f'Bearer authorization_uri="https://login.windows.net/{sub.tenant_id}'
                                             '", error="invalid_token", error_description="The access token is '
                                             'from the wrong issuer. It must match the tenant associated with this '
                                             'subscription. Please use correct authority to get the token."'},
            )
        return sub

    def _authorize(self, info: TokenInfo, action: str, scope: str, *, reported_scope: str | None = None,
                   log_failure: bool = False) -> None:
        with self.state.lock:
            allowed = self.state.is_allowed(info.object_id, action, scope)
        if allowed:
            return
        shown = reported_scope or scope
        message = (f"The client '{self._client_name(info)}' with object id '{info.object_id}' does not have "
                   "authorization to "
                   f"perform action '{action}' over scope '{shown}' or the scope is invalid. If access was "
                   "recently granted, please refresh your credentials.")
        if log_failure:
            self._log_failure(info, action, shown, {"error": {"code": "AuthorizationFailed", "message": message}})
        raise arm_error(403, "AuthorizationFailed", message)

    def _client_name(self, info: TokenInfo) -> str:
        """Who ARM names as 'the client' in AuthorizationFailed: a service principal (managed identities included)
        by its object id, twice ("The client '63df…' with object id '63df…'", Azure/azure-sdk-for-net#1157,
        microsoft/azure-tools-for-java#3643), a user by sign-in name (Azure/azure-powershell#16319)."""
        with self.state.lock:
            principal = self.state.principals.get(info.object_id.lower())
        if principal is not None and principal.kind == "User":
            return principal.display_name
        return info.object_id

    def _log_failure(self, info: TokenInfo, action: str, resource_id: str, error: dict[str, Any]) -> None:
        match = _SUB_IN_SCOPE.match(resource_id)
        if not match:
            return
        with self.state.lock:
            self.state.activity_log.append(ActivityLogEvent(
                subscription_id=match.group(1).lower(), caller=info.app_id.lower(), operation_name=action,
                resource_id=resource_id, status="Failed", message=json.dumps(error), timestamp=self.state.now(),
            ))

    # -- subscriptions --------------------------------------------------------------------------------------

    def _subscription_body(self, sub: Subscription) -> dict[str, Any]:
        return {
            "id": f"/subscriptions/{sub.id}", "authorizationSource": "RoleBased", "managedByTenants": [],
            "subscriptionId": sub.id, "tenantId": sub.tenant_id, "displayName": sub.display_name,
            "state": sub.state, "tags": {},
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                     "quotaId": "EnterpriseAgreement_2014-09-01", "spendingLimit": "Off"},
        }

    def _has_any_role_in(self, principal_id: str, sub_id: str) -> bool:
        """ARM shows a subscription to anyone holding a role at, above or anywhere below it."""
        scope = f"/subscriptions/{sub_id}"
        with self.state.lock:
            return any(ra.principal_id == principal_id
                       and (scope_covers(ra.scope, scope) or scope_covers(scope, ra.scope))
                       for ra in self.state.role_assignments.values())

    def list_subscriptions(self, request: Request) -> Response:
        info = self._caller(request)
        with self.state.lock:
            subs = [s for s in self.state.subscriptions.values() if s.tenant_id == info.tenant_id.lower()]
        value = [self._subscription_body(s) for s in subs if self._has_any_role_in(info.object_id, s.id)]
        return json_response(200, {"value": value, "count": {"type": "Total", "value": len(value)}})

    def get_subscription(self, request: Request) -> Response:
        sub_id = request.params["sub"]
        info = self._caller(request)
        sub = self._subscription_for(info, sub_id)
        if not self._has_any_role_in(info.object_id, sub.id):
            self._authorize(info, "Microsoft.Resources/subscriptions/read", f"/subscriptions/{sub.id}")
        return json_response(200, self._subscription_body(sub))

    # -- role definitions -----------------------------------------------------------------------------------

    def _role_body(self, role: RoleDefinition, scope: str) -> dict[str, Any]:
        base = "" if scope == "/" else scope.rstrip("/")
        sub = _SUB_IN_SCOPE.match(scope)
        if sub:  # ARM reports definitions under the subscription, whatever the child scope asked
            base = f"/subscriptions/{sub.group(1)}"
        return {
            "id": f"{base}{AUTH}/roleDefinitions/{role.id}", "name": role.id,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {
                "roleName": role.name, "type": role.role_type, "description": role.description,
                "assignableScopes": list(role.assignable_scopes),
                "permissions": [{"actions": list(role.actions), "notActions": list(role.not_actions),
                                 "dataActions": list(role.data_actions),
                                 "notDataActions": list(role.not_data_actions)}],
                "createdOn": "2015-02-02T21:55:09.8806423Z", "updatedOn": "2021-11-11T20:13:47.8628684Z",
                "createdBy": None, "updatedBy": None,
            },
        }

    def _role_visible_at(self, role: RoleDefinition, scope: str) -> bool:
        return any(scope_covers(s, scope) for s in role.assignable_scopes) or role.role_type == "BuiltInRole"

    def get_role_definition(self, request: Request) -> Response:
        scope = _norm_scope(request.params.get("scope", "/"))
        self._caller(request, scope)
        with self.state.lock:
            role = self.state.role_definitions.get(request.params["id"].lower())
        if role is None or not self._role_visible_at(role, scope):
            raise arm_error(404, "RoleDefinitionDoesNotExist", "The specified role definition with ID "
                            f"'{request.params['id']}' does not exist.")
        return json_response(200, self._role_body(role, scope))

    def list_role_definitions(self, request: Request) -> Response:
        scope = _norm_scope(request.params.get("scope", "/"))
        self._caller(request, scope)
        flt = request.query.get("$filter", "")
        name = _FILTER_ROLE_NAME.search(flt)
        with self.state.lock:
            roles = [r for r in self.state.role_definitions.values() if self._role_visible_at(r, scope)]
        if name:
            roles = [r for r in roles if r.name.lower() == name.group(1).lower()]
        if "type eq 'customrole'" in flt.lower():
            roles = [r for r in roles if r.role_type == "CustomRole"]
        if "type eq 'builtinrole'" in flt.lower():
            roles = [r for r in roles if r.role_type == "BuiltInRole"]
        return json_response(200, {"value": [self._role_body(r, scope) for r in roles]})

    # -- role assignments -----------------------------------------------------------------------------------

    def _assignment_body(self, ra: RoleAssignment) -> dict[str, Any]:
        sub = _SUB_IN_SCOPE.match(ra.scope)
        role_base = f"/subscriptions/{sub.group(1)}" if sub else ""
        created = iso(ra.created_at) if ra.created_at else "2024-01-01T00:00:00Z"
        return {
            "id": ra.id, "name": ra.name, "type": "Microsoft.Authorization/roleAssignments",
            "properties": {
                "scope": ra.scope, "roleDefinitionId": f"{role_base}{AUTH}/roleDefinitions/{ra.role_definition_id}",
                "principalId": ra.principal_id, "principalType": ra.principal_type,
                "description": ra.description, "condition": None, "conditionVersion": None,
                "createdOn": created, "updatedOn": created, "createdBy": ra.created_by, "updatedBy": ra.created_by,
                "delegatedManagedIdentityResourceId": None,
            },
        }

    def _find_assignment(self, scope: str, name: str) -> RoleAssignment | None:
        ra = self.state.role_assignments.get(name.lower())
        if ra is not None and ra.scope.rstrip("/").lower() == scope.rstrip("/").lower():
            return ra
        return None

    def get_role_assignment(self, request: Request) -> Response:
        scope = _norm_scope(request.params.get("scope", "/"))
        info = self._caller(request, scope)
        self._authorize(info, "Microsoft.Authorization/roleAssignments/read", scope)
        with self.state.lock:
            ra = self._find_assignment(scope, request.params["name"])
        if ra is None:
            raise arm_error(404, "RoleAssignmentNotFound", f"The role assignment '{request.params['name']}' is not "
                            "found.")
        return json_response(200, self._assignment_body(ra))

    def list_role_assignments(self, request: Request) -> Response:
        scope = _norm_scope(request.params.get("scope", "/"))
        info = self._caller(request, scope)
        self._authorize(info, "Microsoft.Authorization/roleAssignments/read", scope)
        flt = request.query.get("$filter", "").strip()
        principal = _FILTER_PRINCIPAL.search(flt)
        at_scope = "atscope()" in flt.lower()
        leftover = _FILTER_PRINCIPAL.sub("", flt.lower()).replace("atscope()", "").replace(" and ", "").strip()
        if leftover:
            raise arm_error(400, "UnsupportedQuery", f"The filter '{flt}' is not supported. Supported filters are "
                            "either 'atScope()' or 'principalId eq '{value}' ' or 'assignedTo('{value}')'.")
        with self.state.lock:
            items = list(self.state.role_assignments.values())
        out = []
        for ra in items:
            above = scope_covers(ra.scope, scope)
            below = scope_covers(scope, ra.scope)
            if at_scope and not above:
                continue
            if not (above or below):
                continue
            if principal and ra.principal_id != principal.group(1).lower():
                continue
            out.append(self._assignment_body(ra))
        return json_response(200, {"value": out, "nextLink": None})

    def _policy_denial(self, scope: str, role_id: str, principal_type: str) -> PolicyAssignment | None:
        with self.state.lock:
            for policy in self.state.policy_assignments:
                if not scope_covers(policy.scope, scope):
                    continue
                if policy.denied_role_definition_ids and role_id not in [
                        r.lower() for r in policy.denied_role_definition_ids]:
                    continue
                if policy.denied_principal_types and principal_type.lower() not in [
                        t.lower() for t in policy.denied_principal_types]:
                    continue
                return policy
        return None

    def _principal_error(self, principal_id: str, tenant_id: str) -> HttpError:
        return arm_error(
            400, "PrincipalNotFound",
            f"Principal {principal_id.replace('-', '')} does not exist in the directory {tenant_id}. Check that "
            "you have the correct principal ID. If you are creating this principal and then immediately assigning "
            "a role, this error might be related to a replication delay. In this case, set the role assignment "
            "principalType property to a value, such as ServicePrincipal, User, or Group.  See "
            "https://aka.ms/docs-principaltype",
        )

    def create_role_assignment(self, request: Request) -> Response:
        scope = _norm_scope(request.params.get("scope", "/"))
        name = request.params["name"].lower()
        info = self._caller(request, scope)
        assignment_id = f"{'' if scope == '/' else scope}{AUTH}/roleAssignments/{name}"
        self._authorize(info, ROLE_ASSIGNMENT_WRITE, scope, reported_scope=assignment_id, log_failure=True)
        try:
            uuid.UUID(name)
        except ValueError:
            raise arm_error(400, "InvalidRoleAssignmentId", f"The role assignment ID '{name}' is not valid. The "
                            "role assignment ID must be a GUID.") from None
        try:
            body = request.json() or {}
            props = body["properties"]
            role_id = guid_of(props["roleDefinitionId"])
            principal_id = str(props["principalId"]).lower()
        except (ValueError, KeyError, TypeError, AttributeError):
            raise arm_error(400, "InvalidRequestContent", "The request content was invalid and could not be "
                            "deserialized: 'properties.roleDefinitionId' and 'properties.principalId' are "
                            "required.") from None
        principal_type = props.get("principalType")

        policy = self._policy_denial(scope, role_id, principal_type or "User")
        if policy is not None:
            identifiers = json.dumps([{
                "policyAssignment": {"name": policy.display_name, "id": policy.id},
                "policyDefinition": {"name": policy.definition_name, "id": policy.definition_id},
            }], separators=(",", ":"))
            error = {
                "code": "RequestDisallowedByPolicy", "target": name,
                "message": f"Resource '{name}' was disallowed by policy. Policy identifiers: '{identifiers}'.",
                "additionalInfo": [{"type": "PolicyViolation", "info": {
                    "evaluationDetails": {"evaluatedExpressions": [{
                        "result": "True", "expressionKind": "Field",
                        "expression": "Microsoft.Authorization/roleAssignments/roleDefinitionId",
                        "path": "properties.roleDefinitionId", "expressionValue": props["roleDefinitionId"],
                        "targetValue": policy.denied_role_definition_ids, "operator": "In"}]},
                    "policyDefinitionId": policy.definition_id, "policyDefinitionName": policy.definition_name,
                    "policyDefinitionDisplayName": policy.display_name, "policyDefinitionEffect": "deny",
                    "policyAssignmentId": policy.id, "policyAssignmentName": policy.name,
                    "policyAssignmentDisplayName": policy.display_name, "policyAssignmentScope": policy.scope,
                    "policyAssignmentParameters": self._policy_parameters(policy), "policyExemptionIds": [],
                }}],
            }
            self._log_failure(info, ROLE_ASSIGNMENT_WRITE, assignment_id, {"error": error})
            raise HttpError(json_response(403, {"error": error}))

        with self.state.lock:
            if role_id not in self.state.role_definitions:
                raise arm_error(400, "RoleDefinitionDoesNotExist", f"The specified role definition with ID "
                                f"'{role_id}' does not exist.")
            existing = self.state.role_assignments.get(name)
            if existing is not None:
                same = (existing.principal_id == principal_id and existing.role_definition_id == role_id
                        and existing.scope.rstrip("/").lower() == scope.rstrip("/").lower())
                if not same:
                    raise arm_error(400, "RoleAssignmentUpdateNotPermitted", "Tenant ID, application ID, principal "
                                    "ID, and scope are not allowed to be updated.")
                existing.description = props.get("description", existing.description)
                return json_response(200, self._assignment_body(existing))
            for ra in self.state.role_assignments.values():
                if (ra.principal_id == principal_id and ra.role_definition_id == role_id
                        and ra.scope.rstrip("/").lower() == scope.rstrip("/").lower()):
                    raise arm_error(409, "RoleAssignmentExists", "The role assignment already exists. The ID of "
                                    f"the existing role assignment is {ra.name.replace('-', '')}.")
            principal = self.state.principals.get(principal_id)
            tenant = self._tenant_of_scope(scope) or info.tenant_id
            if principal is not None and principal.created_at is not None:
                age = (self.state.now() - principal.created_at).total_seconds()
                if age < self.state.propagation.principal_not_found_seconds:
                    raise self._principal_error(principal_id, tenant)
            if not principal_type and not self.state.principal_visible(principal_id):
                raise self._principal_error(principal_id, tenant)
            ra = RoleAssignment(
                name=name, scope=scope, role_definition_id=role_id, principal_id=principal_id,
                principal_type=principal_type or "User", description=props.get("description"),
                created_at=self.state.now(), created_by=info.object_id,
            )
            self.state.role_assignments[name] = ra
            return json_response(201, self._assignment_body(ra))

    def _tenant_of_scope(self, scope: str) -> str | None:
        match = _SUB_IN_SCOPE.match(scope)
        if match:
            sub = self.state.subscriptions.get(match.group(1).lower())
            return sub.tenant_id if sub else None
        return None

    def delete_role_assignment(self, request: Request) -> Response:
        scope = _norm_scope(request.params.get("scope", "/"))
        info = self._caller(request, scope)
        name = request.params["name"].lower()
        assignment_id = f"{'' if scope == '/' else scope}{AUTH}/roleAssignments/{name}"
        self._authorize(info, "Microsoft.Authorization/roleAssignments/delete", scope, reported_scope=assignment_id,
                        log_failure=True)
        with self.state.lock:
            ra = self._find_assignment(scope, name)
            if ra is None:
                return empty(204)
            del self.state.role_assignments[ra.name]
        return json_response(200, self._assignment_body(ra))

    # -- effective permissions, policy, activity log --------------------------------------------------------

    def permissions(self, request: Request) -> Response:
        scope = f"/subscriptions/{request.params['sub']}"
        if "rg" in request.params:
            scope += f"/resourceGroups/{request.params['rg']}"
        if "vm" in request.params:
            scope += f"/providers/Microsoft.Compute/virtualMachines/{request.params['vm']}"
        info = self._caller(request, scope)
        with self.state.lock:
            value = self.state.permissions_at(info.object_id, scope)
        return json_response(200, {"value": value, "nextLink": None})

    @staticmethod
    def _policy_parameters(policy: PolicyAssignment) -> dict[str, Any]:
        return {"deniedRoleDefinitionIds": {"value": list(policy.denied_role_definition_ids)},
                "deniedPrincipalTypes": {"value": list(policy.denied_principal_types)}}

    def policy_assignments(self, request: Request) -> Response:
        scope = f"/subscriptions/{request.params['sub']}"
        info = self._caller(request, scope)
        self._authorize(info, "Microsoft.Authorization/policyAssignments/read", scope)
        at_scope = "atscope()" in request.query.get("$filter", "").lower()
        with self.state.lock:
            policies = [p for p in self.state.policy_assignments
                        if scope_covers(p.scope, scope) or (not at_scope and scope_covers(scope, p.scope))]
        value = [{
            "id": p.id, "name": p.name, "type": "Microsoft.Authorization/policyAssignments", "location": None,
            "identity": None,
            "properties": {
                "displayName": p.display_name, "policyDefinitionId": p.definition_id, "scope": p.scope,
                "notScopes": [], "parameters": self._policy_parameters(p), "enforcementMode": "Default",
                "description": "Denies role assignments for the listed role definitions and principal types "
                               "(empty = all).",
                "metadata": {"assignedBy": "Security team"}, "nonComplianceMessages": [],
            },
        } for p in policies]
        return json_response(200, {"value": value, "nextLink": None})

    def activity_log(self, request: Request) -> Response:
        """Filtered by Azure's restricted `$filter` grammar and paged with `nextLink` (services/activity_log.py)."""
        sub_id = request.params["sub"].lower()
        scope = f"/subscriptions/{sub_id}"
        info = self._caller(request, scope)
        self._authorize(info, "Microsoft.Insights/eventtypes/values/read", scope)
        flt = request.query.get("$filter", "")
        wanted = activity_log.parse_filter(flt, self.state.now())
        offset = activity_log.offset_of(request.query.get("$skiptoken") or request.query.get("$skipToken"))
        with self.state.lock:
            events = [e for e in self.state.activity_log if e.subscription_id == sub_id]
            page_size = self.state.switches.activity_log_page_size
        matching = [e for e in sorted(events, key=lambda e: (e.timestamp, e.correlation_id), reverse=True)
                    if wanted.accepts(timestamp=e.timestamp, caller=e.caller, status=e.status,
                                      resource_id=e.resource_id, operation=e.operation_name,
                                      correlation_id=e.correlation_id)]
        page = matching[offset:offset + page_size]
        more = offset + page_size < len(matching)
        link = activity_log.next_link(request.host, f"/subscriptions/{request.params['sub']}/providers/"
                                      "Microsoft.Insights/eventtypes/management/values",
                                      request.query.get("api-version", ""), flt, offset + page_size) if more else None
        return json_response(200, {"value": [self._event_body(e) for e in page], "nextLink": link})

    def _claims(self, caller: str) -> dict[str, str]:
        """The token claims Azure copies into an event: for a service principal (managed identities included) the
        client id is `appid` (also the event's `caller`) and the object id is only here."""
        with self.state.lock:
            principal = next((p for p in self.state.principals.values()
                              if (p.app_id or "").lower() == caller.lower() or p.object_id == caller.lower()), None)
            if principal is None:
                return {}
            return {"appid": (principal.app_id or "").lower(), "idtyp": "app",
                    "http://schemas.microsoft.com/identity/claims/objectidentifier": principal.object_id,
                    "http://schemas.microsoft.com/identity/claims/tenantid": principal.tenant_id}

    def _event_body(self, event: ActivityLogEvent) -> dict[str, Any]:
        event_id = new_guid()
        rg = _RG_IN_SCOPE.match(event.resource_id)
        failed = event.status.lower() == "failed"
        return {
            "authorization": {"action": event.operation_name, "scope": event.resource_id},
            "caller": event.caller, "claims": self._claims(event.caller), "channels": "Operation",
            "correlationId": event.correlation_id,
            "eventDataId": event_id, "eventName": {"value": "EndRequest", "localizedValue": "End request"},
            "category": {"value": "Administrative", "localizedValue": "Administrative"},
            "eventTimestamp": activity_log.timestamp(event.timestamp, event.correlation_id),
            "id": f"{event.resource_id}/events/{event_id}/ticks/{activity_log.dotnet_ticks(event.timestamp)}",
            "level": "Error" if failed else "Informational", "operationId": event.correlation_id,
            "operationName": {"value": event.operation_name, "localizedValue": event.operation_name},
            "resourceGroupName": rg.group(1) if rg else None,
            "resourceProviderName": {"value": event.operation_name.split("/")[0],
                                     "localizedValue": event.operation_name.split("/")[0]},
            "resourceId": event.resource_id,
            "status": {"value": event.status, "localizedValue": event.status},
            "subStatus": {"value": "Forbidden" if failed else "", "localizedValue": ""},
            "submissionTimestamp": activity_log.timestamp(event.timestamp, event_id),
            "subscriptionId": event.subscription_id,
            "properties": {"statusCode": "Forbidden" if failed else "OK", "statusMessage": event.message,
                           "eventCategory": "Administrative"},
        }

    # -- virtual machines and Run Command -------------------------------------------------------------------

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

    def _run_command_body(self, request: Request, record: dict[str, Any], *, expand: bool) -> dict[str, Any]:
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
        reply = self._run_command_body(request, record, expand=False)
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
        return json_response(200, self._run_command_body(request, record, expand=expand))

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
