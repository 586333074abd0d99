"""Microsoft.Authorization: role definitions, role assignments, effective permissions and policy assignments.

Modelling choices (documented because they are simplifications of the real service):
- Role definitions are readable by any authenticated caller of the tenant (as in Azure, where every principal
  can list built-in roles). Role assignments and policy assignments need the matching `read` action at the
  scope. The effective-permissions endpoint answers for the caller only and needs no role (a caller with no
  role gets an empty list).
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
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from ...http import HttpError, Request, Response, empty, json_response
from ...state import PolicyAssignment, RoleAssignment, RoleDefinition, iso, scope_covers
from .base import AUTH, SUB_IN_SCOPE, ArmProvider, arm_error, guid_of, norm_scope

ROLE_ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"
_FILTER_PRINCIPAL = re.compile(r"principalId\s+eq\s+'([^']+)'", re.IGNORECASE)
_FILTER_ROLE_NAME = re.compile(r"roleName\s+eq\s+'([^']*)'", re.IGNORECASE)


class AuthorizationProvider(ArmProvider):
    """Role definitions and assignments, permissions and policy assignments at any scope."""

    # -- role definitions -----------------------------------------------------------------------------------

    def _role_body(self, role: RoleDefinition, scope: str) -> dict[str, Any]:
        base = "" if scope == "/" else scope.rstrip("/")
        sub = SUB_IN_SCOPE.match(scope)
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
        scope = norm_scope(request.params.get("scope", "/"))
        self._caller(request, scope)
        with self.state.lock:
            role = self.state.role_definitions.get(request.params["id"].lower())
        if role is None or not self._role_visible_at(role, scope):
            raise arm_error(404, "RoleDefinitionDoesNotExist", "The specified role definition with ID "
                            f"'{request.params['id']}' does not exist.")
        return json_response(200, self._role_body(role, scope))

    def list_role_definitions(self, request: Request) -> Response:
        scope = norm_scope(request.params.get("scope", "/"))
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
        sub = SUB_IN_SCOPE.match(ra.scope)
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
        scope = norm_scope(request.params.get("scope", "/"))
        info = self._caller(request, scope)
        self._authorize(info, "Microsoft.Authorization/roleAssignments/read", scope)
        with self.state.lock:
            ra = self._find_assignment(scope, request.params["name"])
        if ra is None:
            raise arm_error(404, "RoleAssignmentNotFound", f"The role assignment '{request.params['name']}' is not "
                            "found.")
        return json_response(200, self._assignment_body(ra))

    def list_role_assignments(self, request: Request) -> Response:
        scope = norm_scope(request.params.get("scope", "/"))
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
        scope = norm_scope(request.params.get("scope", "/"))
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
        match = SUB_IN_SCOPE.match(scope)
        if match:
            sub = self.state.subscriptions.get(match.group(1).lower())
            return sub.tenant_id if sub else None
        return None

    def delete_role_assignment(self, request: Request) -> Response:
        scope = norm_scope(request.params.get("scope", "/"))
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

    # -- effective permissions and policy -------------------------------------------------------------------

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
