"""Azure Resource Manager authorization: subscriptions, role definitions and assignments, the caller's
effective permissions, policy assignments and the Activity Log.

Typed SDK clients where the SDKs we ship have the operation (AuthorizationManagementClient, SubscriptionClient);
the factory's raw ARM pipeline (same auth, retry and timeouts) for subscription-scope permissions, policy
assignments and the Activity Log. Returns frozen dataclasses; every SDK failure becomes a domain error here
(see `arm_errors`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..clients import ClientFactory
from ..config import is_guid
from ..errors import NotFoundError, ServiceError
from .arm_errors import raise_arm_error

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

logger = logging.getLogger(__name__)

AUTH = "/providers/Microsoft.Authorization"
PERMISSIONS_API = "2022-04-01"
POLICY_API = "2023-04-01"
ACTIVITY_LOG_API = "2015-04-01"
MAX_PAGES = 50  # bound on nextLink paging for the raw reads
_SUB = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)
_NO_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"  # operations at other scopes ignore the client's sub


def subscription_of(scope: str) -> str | None:
    match = _SUB.match(scope)
    return match.group(1).lower() if match else None


def guid_of(role_definition_id: str) -> str:
    """Role definition ids come as a GUID or a full id (subscription-scoped or not); compare by the GUID."""
    return role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()


def same_scope(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def scope_covers(ancestor: str, scope: str) -> bool:
    """True when an assignment at `ancestor` applies at `scope` (same scope or a parent of it)."""
    a, s = ancestor.rstrip("/").lower(), scope.rstrip("/").lower()
    return a == "" or s == a or s.startswith(a + "/")


@lru_cache(maxsize=1024)
def _action_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(pattern).replace(r"\*", ".*") + "$", re.IGNORECASE)


def action_matches(pattern: str, action: str) -> bool:
    """ARM action patterns: case-insensitive; `*` matches any run of characters, slashes included."""
    return bool(_action_regex(pattern).match(action))


# -- domain types -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionInfo:
    subscription_id: str
    tenant_id: str
    display_name: str
    state: str


@dataclass(frozen=True)
class RoleDefinitionInfo:
    id: str  # the GUID
    name: str  # roleName, e.g. "Contributor"
    role_type: str  # BuiltInRole | CustomRole
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoleAssignmentInfo:
    id: str
    name: str
    scope: str
    role_definition_id: str  # the GUID
    principal_id: str
    principal_type: str | None
    description: str | None
    created_on: datetime | None = None


@dataclass(frozen=True)
class PermissionEntry:
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class PermissionSet:
    """What `Microsoft.Authorization/permissions` reports for the caller at one scope: one entry per role that
    applies. ARM grants an action when ANY entry has it in `actions` and not in that entry's `notActions`."""

    scope: str
    entries: tuple[PermissionEntry, ...] = ()

    def allows(self, action: str) -> bool:
        return any(any(action_matches(p, action) for p in e.actions)
                   and not any(action_matches(p, action) for p in e.not_actions) for e in self.entries)

    def missing(self, actions: Iterable[str]) -> list[str]:
        return [a for a in actions if not self.allows(a)]


@dataclass(frozen=True)
class PolicyAssignmentInfo:
    id: str
    name: str
    display_name: str
    scope: str
    policy_definition_id: str
    enforcement_mode: str
    parameters: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def denied_role_ids(self) -> tuple[str, ...]:
        """Role ids the assignment denies for role assignments (parameter `deniedRoleDefinitionIds`)."""
        value = (self.parameters.get("deniedRoleDefinitionIds") or {}).get("value") or []
        return tuple(guid_of(str(v)) for v in value)

    @property
    def denied_principal_types(self) -> tuple[str, ...]:
        value = (self.parameters.get("deniedPrincipalTypes") or {}).get("value") or []
        return tuple(str(v) for v in value)

    def denies_role_assignment(self, role_id: str, principal_type: str = "ServicePrincipal") -> bool:
        """Whether this assignment (enforced) denies assigning `role_id` to a principal of that type. Only
        assignments that declare those parameters are recognised; others are reported but not predicted."""
        if self.enforcement_mode.lower() == "donotenforce":
            return False
        if "deniedRoleDefinitionIds" not in self.parameters and "deniedPrincipalTypes" not in self.parameters:
            return False
        roles, types = self.denied_role_ids, self.denied_principal_types
        return ((not roles or guid_of(role_id) in roles)
                and (not types or principal_type.lower() in {t.lower() for t in types}))


@dataclass(frozen=True)
class ActivityEvent:
    timestamp: datetime
    caller: str  # what the event names as its caller: a service principal's client id (appId), a user's UPN
    operation: str
    status: str
    resource_id: str
    message: str  # properties.statusMessage, reduced to the error message when it is ARM's JSON error
    error_code: str | None
    correlation_id: str | None
    object_id: str | None = None  # the caller's object id, from the event's claims (when it carries them)
    policy: dict[str, Any] | None = field(default=None, hash=False, compare=False)  # a policy denial's assignment


# -- parsing helpers -------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """SDK enums (str subclasses) and plain strings alike, as the wire value."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def _assignment(model: Any) -> RoleAssignmentInfo:
    created = getattr(model, "created_on", None)
    return RoleAssignmentInfo(
        id=str(model.id), name=str(model.name), scope=str(model.scope),
        role_definition_id=guid_of(str(model.role_definition_id)), principal_id=str(model.principal_id).lower(),
        principal_type=_text(getattr(model, "principal_type", None)) or None,
        description=getattr(model, "description", None),
        created_on=created if isinstance(created, datetime) else None,
    )


def _role(model: Any) -> RoleDefinitionInfo:
    perms = list(getattr(model, "permissions", None) or [])
    def collect(attr: str) -> tuple[str, ...]:
        return tuple(a for p in perms for a in (getattr(p, attr, None) or []))
    return RoleDefinitionInfo(
        id=guid_of(str(model.name or model.id)), name=str(model.role_name), role_type=_text(model.role_type),
        actions=collect("actions"), not_actions=collect("not_actions"), data_actions=collect("data_actions"),
        not_data_actions=collect("not_data_actions"),
    )


def _parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.min.replace(tzinfo=UTC)
    text = value.replace("Z", "+00:00")
    if "." in text:  # Activity Log uses 7 fractional digits; fromisoformat accepts at most 6
        head, _, tail = text.partition(".")
        digits = re.match(r"\d*", tail)
        frac = digits.group(0) if digits else ""
        text = f"{head}.{frac[:6].ljust(6, '0')}{tail[len(frac):]}"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _status_message(raw: Any) -> tuple[str, str | None, dict[str, Any] | None]:
    """(the error message, ARM's error code, the denying policy assignment) of an event's statusMessage."""
    if not isinstance(raw, str):
        return ("" if raw is None else json.dumps(raw)), None, None
    try:
        body = json.loads(raw)
    except ValueError:
        return raw, None, None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or raw), error.get("code"), _policy_of(error)
    return raw, None, None


_POLICY_IDENTIFIERS = re.compile(r"Policy identifiers: '(\[.*\])'", re.DOTALL)


def _policy_of(error: dict[str, Any]) -> dict[str, Any] | None:
    """The policy assignment a `RequestDisallowedByPolicy` error names (additionalInfo first, else the message)."""
    if error.get("code") != "RequestDisallowedByPolicy":
        return None
    for item in error.get("additionalInfo") or []:
        info = item.get("info") if isinstance(item, dict) else None
        if isinstance(item, dict) and item.get("type") == "PolicyViolation" and isinstance(info, dict):
            return {"policy_assignment_id": info.get("policyAssignmentId"),
                    "policy_assignment_name": info.get("policyAssignmentName"),
                    "policy_assignment_display_name": info.get("policyAssignmentDisplayName"),
                    "policy_assignment_scope": info.get("policyAssignmentScope"),
                    "policy_definition_id": info.get("policyDefinitionId"),
                    "policy_definition_display_name": info.get("policyDefinitionDisplayName")}
    match = _POLICY_IDENTIFIERS.search(str(error.get("message") or ""))
    if match:
        try:
            first = json.loads(match.group(1))[0]
            assignment = first["policyAssignment"]
            return {"policy_assignment_id": assignment.get("id"), "policy_assignment_name": assignment.get("name"),
                    "policy_assignment_display_name": assignment.get("name"),
                    "policy_assignment_scope": str(assignment.get("id") or "").split(
                        "/providers/Microsoft.Authorization/policyAssignments/")[0] or None,
                    "policy_definition_id": (first.get("policyDefinition") or {}).get("id")}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            pass
    return {}


_OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"


def _arm_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the adapter -------------------------------------------------------------------------------------------------


class RbacAdapter:
    def __init__(self, clients: ClientFactory) -> None:
        self.clients = clients
        self._roles: dict[tuple[str, str], RoleDefinitionInfo] = {}

    # subscriptions

    async def get_subscription(self, subscription_id: str) -> SubscriptionInfo:
        """The subscription as the product's identity sees it. TenantMismatchError names the owning tenant when
        it belongs to another tenant; NotFoundError when it does not exist (or is invisible)."""
        what = f"Reading subscription {subscription_id}"
        try:
            sub = await self.clients.subscriptions().subscriptions.get(subscription_id)
        except Exception as exc:
            raise_arm_error(exc, what=what, scope=f"/subscriptions/{subscription_id}")
        return SubscriptionInfo(_text(sub.subscription_id), _text(sub.tenant_id).lower(),
                                _text(sub.display_name), _text(sub.state))

    # role definitions

    async def resolve_role(self, subscription_id: str, name_or_id: str) -> RoleDefinitionInfo:
        """A role by GUID (or full id) or by roleName, as defined at the subscription (custom roles too)."""
        key = (subscription_id.lower(), name_or_id.lower())
        if key in self._roles:
            return self._roles[key]
        scope = f"/subscriptions/{subscription_id}"
        client = self.clients.authorization(subscription_id)
        candidate = guid_of(name_or_id)
        try:
            if is_guid(candidate):
                role = _role(await client.role_definitions.get(scope, candidate))
            else:
                escaped = name_or_id.replace("'", "''")
                found = [_role(r) async for r in client.role_definitions.list(scope, filter=f"roleName eq '{escaped}'")]
                if not found:
                    raise NotFoundError(
                        f"No role named '{name_or_id}' exists at {scope}.",
                        reason="Role names must match exactly (custom roles must be assignable at this scope).",
                        fix="Use the role's GUID or its exact name (Access control (IAM) > Roles), or create the "
                            "custom role from the CycleCloud documentation first.",
                        details={"role": name_or_id, "scope": scope})
                role = found[0]
        except Exception as exc:
            raise_arm_error(exc, what=f"Resolving role '{name_or_id}'", scope=scope)
        self._roles[key] = role
        return role

    # role assignments

    async def list_assignments(self, scope: str, principal_id: str | None = None) -> list[RoleAssignmentInfo]:
        """With a principal: its assignments at, above or below `scope`. Without: every assignment at or above
        `scope` (ARM's `atScope()`)."""
        client = self.clients.authorization(subscription_of(scope) or _NO_SUBSCRIPTION)
        flt = f"principalId eq '{principal_id}'" if principal_id else "atScope()"
        try:
            return [_assignment(a) async for a in client.role_assignments.list_for_scope(scope, filter=flt)]
        except Exception as exc:
            raise_arm_error(exc, what=f"Listing role assignments at {scope}", scope=scope)

    async def create_assignment(self, scope: str, role_definition_id: str, principal_id: str, *, name: str,
                                principal_type: str = "ServicePrincipal",
                                description: str | None = None) -> RoleAssignmentInfo:
        """Create (idempotent). `RoleAssignmentExists` (same principal, role and scope under another name) is
        success: the existing assignment is returned. PrincipalNotFoundError is retriable."""
        from azure.core.exceptions import ResourceExistsError
        from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

        sub = subscription_of(scope)
        role_guid = guid_of(role_definition_id)
        full_role_id = f"{f'/subscriptions/{sub}' if sub else ''}{AUTH}/roleDefinitions/{role_guid}"
        client = self.clients.authorization(sub or _NO_SUBSCRIPTION)
        what = f"Assigning role {role_guid} to principal {principal_id} at {scope}"
        parameters = RoleAssignmentCreateParameters(role_definition_id=full_role_id, principal_id=principal_id,
                                                    principal_type=principal_type, description=description)
        try:
            created = await client.role_assignments.create(scope, name, parameters)
            logger.info("created role assignment %s (role %s, principal %s, scope %s)", name, role_guid,
                        principal_id, scope)
            return _assignment(created)
        except ResourceExistsError as exc:
            if getattr(exc.error, "code", None) != "RoleAssignmentExists":
                raise_arm_error(exc, what=what, scope=scope)
        except Exception as exc:
            raise_arm_error(exc, what=what, scope=scope)
        for existing in await self.list_assignments(scope, principal_id):
            if existing.role_definition_id == role_guid and same_scope(existing.scope, scope):
                logger.info("role assignment already present as %s", existing.name)
                return existing
        raise ServiceError(f"{what}: ARM says the assignment exists but it is not listed.",
                           reason="RoleAssignmentExists without a matching assignment (replication lag).",
                           fix="Retry in a minute.")

    async def delete_assignment(self, assignment_id: str) -> bool:
        """Delete by full id. False when it was already gone."""
        scope = assignment_id.split(f"{AUTH}/roleAssignments/")[0] or "/"
        client = self.clients.authorization(subscription_of(scope) or _NO_SUBSCRIPTION)
        try:
            deleted = await client.role_assignments.delete_by_id(assignment_id)
        except Exception as exc:
            raise_arm_error(exc, what=f"Deleting role assignment {assignment_id}", scope=scope)
        return deleted is not None

    # raw ARM reads

    async def _get_json(self, path: str, params: dict[str, str], *, what: str,
                        credential: AsyncTokenCredential | None = None) -> list[dict[str, Any]]:
        from azure.core.exceptions import HttpResponseError
        from azure.core.rest import HttpRequest
        from azure.mgmt.core.exceptions import ARMErrorFormat

        client = self.clients.arm(credential)
        items: list[dict[str, Any]] = []
        url: str | None = f"{self.clients.cloud.arm}{path}"
        first = True
        try:
            for _ in range(MAX_PAGES):
                if url is None:
                    break
                request = HttpRequest("GET", url, params=params if first else None)
                first = False
                response = await client.send_request(request)
                if response.status_code >= 400:
                    raise HttpResponseError(response=response, error_format=ARMErrorFormat)
                body = response.json()
                items.extend(body.get("value") or [])
                url = body.get("nextLink")
        except Exception as exc:
            raise_arm_error(exc, what=what, scope=path)
        finally:
            if credential is not None:
                await client.close()
        return items

    async def permissions(self, subscription_id: str, credential: AsyncTokenCredential | None = None, *,
                          resource_group: str | None = None, resource_id: str | None = None) -> PermissionSet:
        """The CALLER's effective permissions at the subscription, one of its resource groups, or one resource
        (`resource_id`, e.g. a VM: a grant on the resource itself shows only there): the product's own by
        default; with `credential` (e.g. `clients.secret_credential(...)`), that identity's."""
        scope = f"/subscriptions/{subscription_id}"
        if resource_group:
            scope += f"/resourceGroups/{resource_group}"
        if resource_id:
            scope = resource_id.rstrip("/")
        items = await self._get_json(f"{scope}{AUTH}/permissions", {"api-version": PERMISSIONS_API},
                                     what=f"Reading effective permissions at {scope}", credential=credential)
        return PermissionSet(scope, tuple(PermissionEntry(
            tuple(i.get("actions") or ()), tuple(i.get("notActions") or ()),
            tuple(i.get("dataActions") or ()), tuple(i.get("notDataActions") or ()),
        ) for i in items))

    async def policy_assignments(self, subscription_id: str) -> list[PolicyAssignmentInfo]:
        """Every policy assignment that applies to the subscription (inherited ones included)."""
        scope = f"/subscriptions/{subscription_id}"
        items = await self._get_json(f"{scope}{AUTH}/policyAssignments", {"api-version": POLICY_API},
                                     what=f"Listing policy assignments of {scope}")
        out = []
        for item in items:
            props = item.get("properties") or {}
            out.append(PolicyAssignmentInfo(
                id=str(item.get("id", "")), name=str(item.get("name", "")),
                display_name=str(props.get("displayName") or item.get("name", "")),
                scope=str(props.get("scope") or ""), policy_definition_id=str(props.get("policyDefinitionId") or ""),
                enforcement_mode=str(props.get("enforcementMode") or "Default"),
                parameters=dict(props.get("parameters") or {}),
            ))
        return out

    async def failed_operations(self, subscription_id: str, caller_ids: Iterable[str], since: datetime,
                                until: datetime | None = None) -> list[ActivityEvent]:
        """Failed management operations in the Activity Log by any of `caller_ids`, newest first. Events name a
        service principal (managed identities included) by its client id in `caller`; its object id is only in
        the event's claims, so both are compared."""
        callers = {c.lower() for c in caller_ids}
        window = f"eventTimestamp ge '{_arm_time(since)}'"
        if until is not None:
            window += f" and eventTimestamp le '{_arm_time(until)}'"
        scope = f"/subscriptions/{subscription_id}"
        items = await self._get_json(f"{scope}/providers/Microsoft.Insights/eventtypes/management/values",
                                     {"api-version": ACTIVITY_LOG_API, "$filter": window},
                                     what=f"Reading the Activity Log of {scope}")
        out = []
        for item in items:
            status = str((item.get("status") or {}).get("value") or "")
            caller = str(item.get("caller") or "")
            raw_claims = item.get("claims")
            claims: dict[str, Any] = raw_claims if isinstance(raw_claims, dict) else {}
            object_id = str(claims.get(_OBJECT_ID_CLAIM) or claims.get("oid") or "") or None
            if status.lower() != "failed" or (callers and caller.lower() not in callers
                                              and (object_id or "").lower() not in callers):
                continue
            message, code, policy = _status_message((item.get("properties") or {}).get("statusMessage"))
            out.append(ActivityEvent(
                timestamp=_parse_time(item.get("eventTimestamp")), caller=caller,
                operation=str((item.get("operationName") or {}).get("value") or ""), status=status,
                resource_id=str(item.get("resourceId") or ""), message=message, error_code=code,
                correlation_id=item.get("correlationId"), object_id=object_id, policy=policy,
            ))
        out.sort(key=lambda e: e.timestamp, reverse=True)
        return out
