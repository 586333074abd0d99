"""The Azure twin's state: tenants, apps, principals, subscriptions, RBAC, policy, VMs, vaults, CycleCloud.

Everything the twin's services read and change lives here, guarded by one lock (`State.lock`) because the
twin serves requests from many threads. Secrets of app credentials are kept only as a SHA-256 hash plus the
3-character hint, as Entra does.
"""

from __future__ import annotations

import fnmatch
import hashlib
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .clock import Clock
from .switches import Switches

CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
KEY_VAULT_ADMINISTRATOR = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
VIRTUAL_MACHINE_CONTRIBUTOR = "9980e02c-c2be-4d73-94e8-173b1dc7cf3c"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
MONITORING_READER = "43d0d8ad-25c7-4714-9337-8ba259a9fe05"

# Graph application permissions (app role ids are public constants)
GRAPH_APP_ROLES = {
    "Application.ReadWrite.OwnedBy": "18a4783c-866b-4cc7-a460-3d5e5662c884",
    "Application.ReadWrite.All": "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
    "Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    "Policy.Read.ApplicationConfiguration": "37730810-e9ba-4e46-b07e-8ca78d182097",
}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_guid() -> str:
    return str(uuid.uuid4())


def parse_time(value: str | None, now: datetime) -> datetime | None:
    """ISO 8601, or relative to the twin's now: 'now', 'now+30d', 'now-2h', 'now+90s'."""
    if value is None:
        return None
    if value.startswith("now"):
        rest = value[3:]
        if not rest:
            return now
        sign = 1 if rest[0] == "+" else -1
        amount, unit = float(rest[1:-1]), rest[-1]
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * amount
        return now + timedelta(seconds=sign * seconds)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------------------
# Entra ID


@dataclass
class Tenant:
    id: str
    domain: str = "contoso.onmicrosoft.com"
    # the tenant-wide default app management policy (Graph policies/defaultAppManagementPolicy): off unless a
    # scenario enables it; applies to apps without an assigned policy of their own
    default_policy_enabled: bool = False
    default_max_password_lifetime_days: int | None = None
    default_password_addition_blocked: bool = False


@dataclass
class PasswordCredential:
    key_id: str
    secret_hash: str
    hint: str
    display_name: str | None
    start: datetime
    end: datetime
    created_at: datetime  # twin clock; the secret works only after the propagation delay

    def to_graph(self) -> dict[str, Any]:
        return {
            "customKeyIdentifier": None,
            "displayName": self.display_name,
            "endDateTime": iso(self.end),
            "hint": self.hint,
            "keyId": self.key_id,
            "secretText": None,
            "startDateTime": iso(self.start),
        }


@dataclass
class FederatedCredential:
    """A federated identity credential on an app: Entra accepts a client assertion (a token another issuer
    signed) whose iss, sub and aud match, instead of a secret."""

    name: str
    issuer: str
    subject: str
    audiences: list[str] = field(default_factory=lambda: ["api://AzureADTokenExchange"])


@dataclass
class Application:
    object_id: str
    app_id: str
    tenant_id: str
    display_name: str
    owners: set[str] = field(default_factory=set)  # principal object ids
    password_credentials: list[PasswordCredential] = field(default_factory=list)
    # app management policy: maximum password lifetime (None = unrestricted)
    max_password_lifetime_days: int | None = None
    password_addition_blocked: bool = False
    # (when, the credential list before that write): what a stale Graph replica still answers for a while
    credential_writes: list[tuple[datetime, list[PasswordCredential]]] = field(default_factory=list)
    # "AzureADMultipleOrgs": other tenants may consent (a service principal there), and sign-ins to them work
    sign_in_audience: str = "AzureADMyOrg"
    federated_credentials: list[FederatedCredential] = field(default_factory=list)

    def record_credential_write(self, at: datetime) -> None:
        self.credential_writes.append((at, list(self.password_credentials)))
        del self.credential_writes[:-20]

    def credentials_as_read(self, now: datetime, stale_seconds: float) -> list[PasswordCredential]:
        """The list a read at `now` returns: with read-after-write staleness, the list as it was before the first
        write of the last `stale_seconds` (Graph replicas catch up within seconds)."""
        if stale_seconds > 0:
            cutoff = now - timedelta(seconds=stale_seconds)
            for at, before in self.credential_writes:
                if at > cutoff:
                    return before
        return self.password_credentials


@dataclass
class Principal:
    """A service principal (of an app or a managed identity) or a user in one tenant."""

    object_id: str
    tenant_id: str
    kind: str  # "ServicePrincipal" | "User"
    display_name: str
    app_id: str | None = None  # client id
    graph_app_roles: set[str] = field(default_factory=set)  # names, e.g. "Application.ReadWrite.OwnedBy"
    created_at: datetime | None = None  # for replication delay (PrincipalNotFound)


# --------------------------------------------------------------------------------------------------------
# ARM


@dataclass
class Subscription:
    id: str
    tenant_id: str
    display_name: str
    state: str = "Enabled"


@dataclass
class RoleDefinition:
    id: str  # GUID
    name: str  # roleName
    actions: list[str]
    not_actions: list[str] = field(default_factory=list)
    data_actions: list[str] = field(default_factory=list)
    not_data_actions: list[str] = field(default_factory=list)
    role_type: str = "BuiltInRole"
    description: str = ""
    assignable_scopes: list[str] = field(default_factory=lambda: ["/"])


@dataclass
class RoleAssignment:
    name: str  # GUID
    scope: str
    role_definition_id: str  # GUID
    principal_id: str
    principal_type: str = "ServicePrincipal"
    description: str | None = None
    created_at: datetime | None = None
    created_by: str | None = None

    @property
    def id(self) -> str:
        return f"{self.scope.rstrip('/')}/providers/Microsoft.Authorization/roleAssignments/{self.name}"


@dataclass
class DenyAssignment:
    name: str
    scope: str
    actions: list[str]
    not_actions: list[str] = field(default_factory=list)
    principal_ids: list[str] = field(default_factory=list)  # empty = everyone
    exclude_principal_ids: list[str] = field(default_factory=list)


@dataclass
class PolicyAssignment:
    """A policy assignment whose effect denies role assignments (the only effect the twin models)."""

    name: str
    scope: str
    display_name: str
    definition_name: str = "deny-role-assignments"
    # the request is denied when its role definition id is in this list (empty = every role)
    denied_role_definition_ids: list[str] = field(default_factory=list)
    denied_principal_types: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.scope.rstrip('/')}/providers/Microsoft.Authorization/policyAssignments/{self.name}"

    @property
    def definition_id(self) -> str:
        return f"/providers/Microsoft.Authorization/policyDefinitions/{self.definition_name}"


@dataclass
class ActivityLogEvent:
    subscription_id: str
    caller: str  # principal object id or app id
    operation_name: str
    resource_id: str
    status: str  # "Failed" | "Succeeded"
    message: str
    timestamp: datetime
    correlation_id: str = field(default_factory=new_guid)


@dataclass
class VirtualMachine:
    id: str  # full resource id
    location: str = "eastus"
    identity_principal_id: str | None = None  # system-assigned MI object id, None = off
    identity_tenant_id: str | None = None
    cyclecloud_host: str | None = None  # which twin CycleCloud server runs on this VM
    run_commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    # user-assigned identities attached to the VM (resource ids): a PATCH whose identity type drops
    # "UserAssigned" detaches them, as ARM does, so careless identity changes show in tests
    user_assigned_identities: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.id.rsplit("/", 1)[-1]

    @property
    def subscription_id(self) -> str:
        return self.id.split("/")[2]


# --------------------------------------------------------------------------------------------------------
# Key Vault


@dataclass
class SecretVersion:
    version: str  # 32 hex
    value: str
    content_type: str | None
    tags: dict[str, str]
    enabled: bool
    not_before: datetime | None
    expires: datetime | None
    created: datetime
    updated: datetime


@dataclass
class VaultSecret:
    name: str
    versions: list[SecretVersion] = field(default_factory=list)  # oldest first
    deleted_at: datetime | None = None  # soft-deleted
    # asynchronous soft delete (Switches.secret_delete_seconds): until then the secret is "being deleted"
    deleting_until: datetime | None = None

    def latest(self) -> SecretVersion | None:
        return self.versions[-1] if self.versions else None


@dataclass
class Vault:
    name: str
    tenant_id: str
    resource_id: str
    secrets: dict[str, VaultSecret] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"{self.name}.vault.azure.net"


# --------------------------------------------------------------------------------------------------------
# CycleCloud


@dataclass
class CycleCloudUser:
    name: str
    password: str
    superuser: bool = True
    failures: list[datetime] = field(default_factory=list)  # failed logins (twin clock)
    locked_until: datetime | None = None


@dataclass
class CycleCloudServer:
    host: str
    port: int = 443
    context_path: str = ""
    users: dict[str, CycleCloudUser] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> installer-shaped record
    # whether the update path validates the credential against Entra (like the UI's "Validate")
    validates_on_save: bool = True
    credential_path: str = "/cloud/accounts/{account}"
    credential_method: str = "PUT"
    # a server that does not know `?dry_run=true` and treats the request as a real update
    ignores_dry_run: bool = False
    # read-back shows the secret as all `*` (no 3-character hint), as some versions and proxies do
    masks_secret_fully: bool = False
    # the update route answers 200 with the masked record but applies nothing
    ignores_updates: bool = False


# --------------------------------------------------------------------------------------------------------


@dataclass
class Propagation:
    """Delays (seconds of twin clock) that model Azure's eventual consistency."""

    new_secret_seconds: float = 0.0
    role_assignment_seconds: float = 0.0
    principal_replication_seconds: float = 0.0
    # ARM answers PrincipalNotFound even when principalType is set while the principal is this young
    principal_not_found_seconds: float = 0.0
    # Graph reads of an application may answer with its credentials as they were before a write this recent
    graph_stale_read_seconds: float = 0.0


BUILTIN_ROLES = [
    RoleDefinition(OWNER, "Owner", ["*"]),
    RoleDefinition(
        CONTRIBUTOR,
        "Contributor",
        ["*"],
        not_actions=[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
            "Microsoft.Purview/consents/write",
            "Microsoft.Purview/consents/delete",
        ],
    ),
    RoleDefinition(READER, "Reader", ["*/read"]),
    RoleDefinition(USER_ACCESS_ADMINISTRATOR, "User Access Administrator",
                   ["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"]),
    RoleDefinition(RBAC_ADMINISTRATOR, "Role Based Access Control Administrator",
                   ["Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/roleAssignments/delete",
                    "*/read", "Microsoft.Support/*"]),
    RoleDefinition(KEY_VAULT_ADMINISTRATOR, "Key Vault Administrator",
                   ["Microsoft.Authorization/*/read", "Microsoft.KeyVault/*/read"],
                   data_actions=["Microsoft.KeyVault/vaults/*"]),
    RoleDefinition(KEY_VAULT_SECRETS_OFFICER, "Key Vault Secrets Officer",
                   ["Microsoft.Authorization/*/read", "Microsoft.KeyVault/*/read",
                    "Microsoft.KeyVault/vaults/secrets/*"],
                   data_actions=["Microsoft.KeyVault/vaults/secrets/*"]),
    RoleDefinition(KEY_VAULT_SECRETS_USER, "Key Vault Secrets User", [],
                   data_actions=["Microsoft.KeyVault/vaults/secrets/getSecret/action",
                                 "Microsoft.KeyVault/vaults/secrets/readMetadata/action"]),
    RoleDefinition(VIRTUAL_MACHINE_CONTRIBUTOR, "Virtual Machine Contributor",
                   ["Microsoft.Authorization/*/read", "Microsoft.Compute/virtualMachines/*",
                    "Microsoft.Network/*/read", "Microsoft.Resources/subscriptions/resourceGroups/read"]),
    RoleDefinition(STORAGE_BLOB_DATA_CONTRIBUTOR, "Storage Blob Data Contributor",
                   ["Microsoft.Storage/storageAccounts/blobServices/containers/*"],
                   data_actions=["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"]),
    RoleDefinition(MONITORING_READER, "Monitoring Reader", ["*/read", "Microsoft.Support/*"]),
]


def action_matches(pattern: str, action: str) -> bool:
    """ARM action patterns: case-insensitive, `*` matches any run of characters (slashes too)."""
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def scope_covers(assignment_scope: str, scope: str) -> bool:
    """True when an assignment at `assignment_scope` applies at `scope` (same scope or an ancestor)."""
    a = assignment_scope.rstrip("/").lower()
    s = scope.rstrip("/").lower()
    return a == "" or s == a or s.startswith(a + "/")


class State:
    """All twin state. Services hold `state.lock` while they read or change it."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.lock = threading.RLock()
        self.clock = clock or Clock()
        self.tenants: dict[str, Tenant] = {}
        self.applications: dict[str, Application] = {}  # by object id
        self.principals: dict[str, Principal] = {}  # by object id
        self.function_identity: str | None = None  # principal object id the MI endpoint serves (None = off)
        self.user_assigned_identities: dict[str, str] = {}  # client id -> principal object id
        self.subscriptions: dict[str, Subscription] = {}
        self.role_definitions: dict[str, RoleDefinition] = {r.id: r for r in BUILTIN_ROLES}
        self.role_assignments: dict[str, RoleAssignment] = {}  # by name (GUID)
        self.deny_assignments: list[DenyAssignment] = []
        self.policy_assignments: list[PolicyAssignment] = []
        self.activity_log: list[ActivityLogEvent] = []
        self.virtual_machines: dict[str, VirtualMachine] = {}  # by lowercased id
        self.vaults: dict[str, Vault] = {}  # by host
        self.cyclecloud_servers: dict[str, CycleCloudServer] = {}  # by host
        self.propagation = Propagation()
        self.switches = Switches()

    # -- lookups ------------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    def app_by_app_id(self, app_id: str, tenant_id: str | None = None) -> Application | None:
        for app in self.applications.values():
            if app.app_id.lower() == app_id.lower() and (tenant_id is None or app.tenant_id == tenant_id):
                return app
        return None

    def app_for_sign_in(self, app_id: str, tenant_id: str) -> Application | None:
        """The app a client signs in as to `tenant_id`: registered there, or a multi-tenant app registered
        elsewhere that `tenant_id` has consented to (its service principal exists there)."""
        app = self.app_by_app_id(app_id, tenant_id)
        if app is not None:
            return app
        app = self.app_by_app_id(app_id)
        if app is not None and app.sign_in_audience == "AzureADMultipleOrgs" and \
                self.service_principal_of(app_id, tenant_id) is not None:
            return app
        return None

    def service_principal_of(self, app_id: str, tenant_id: str) -> Principal | None:
        for p in self.principals.values():
            if p.app_id and p.app_id.lower() == app_id.lower() and p.tenant_id == tenant_id:
                return p
        return None

    def principal_visible(self, object_id: str) -> bool:
        """False while a new principal is still replicating (ARM's PrincipalNotFound window)."""
        p = self.principals.get(object_id)
        if p is None:
            return False
        if p.created_at is None:
            return True
        return (self.now() - p.created_at).total_seconds() >= self.propagation.principal_replication_seconds

    def vm(self, resource_id: str) -> VirtualMachine | None:
        return self.virtual_machines.get(resource_id.lower())

    # -- RBAC evaluation ----------------------------------------------------------------------------------

    def assignments_for(self, principal_id: str, scope: str, *, effective_only: bool = True) -> list[RoleAssignment]:
        now = self.now()
        out = []
        for ra in self.role_assignments.values():
            if ra.principal_id != principal_id or not scope_covers(ra.scope, scope):
                continue
            if effective_only and ra.created_at is not None:
                if (now - ra.created_at).total_seconds() < self.propagation.role_assignment_seconds:
                    continue
            out.append(ra)
        return out

    def _denied(self, principal_id: str, action: str, scope: str) -> DenyAssignment | None:
        for deny in self.deny_assignments:
            if not scope_covers(deny.scope, scope):
                continue
            if deny.principal_ids and principal_id not in deny.principal_ids:
                continue
            if principal_id in deny.exclude_principal_ids:
                continue
            if any(action_matches(p, action) for p in deny.actions) and not any(
                action_matches(p, action) for p in deny.not_actions
            ):
                return deny
        return None

    def is_allowed(self, principal_id: str, action: str, scope: str, *, data: bool = False) -> bool:
        """Effective-permission check: role assignments at the scope or above, actions minus notActions,
        minus deny assignments. `data=True` evaluates dataActions (Key Vault, blobs)."""
        if self._denied(principal_id, action, scope):
            return False
        for ra in self.assignments_for(principal_id, scope):
            role = self.role_definitions.get(ra.role_definition_id)
            if role is None:
                continue
            allow, deny = (role.data_actions, role.not_data_actions) if data else (role.actions, role.not_actions)
            if any(action_matches(p, action) for p in allow) and not any(action_matches(p, action) for p in deny):
                return True
        return False

    def permissions_at(self, principal_id: str, scope: str) -> list[dict[str, list[str]]]:
        """What `Microsoft.Authorization/permissions` returns: one entry per role that applies, with deny
        assignments folded into notActions (as ARM reports them)."""
        out = []
        for ra in self.assignments_for(principal_id, scope):
            role = self.role_definitions.get(ra.role_definition_id)
            if role is None:
                continue
            out.append({
                "actions": list(role.actions),
                "notActions": list(role.not_actions),
                "dataActions": list(role.data_actions),
                "notDataActions": list(role.not_data_actions),
            })
        denies = [d for d in self.deny_assignments if scope_covers(d.scope, scope)
                  and (not d.principal_ids or principal_id in d.principal_ids)
                  and principal_id not in d.exclude_principal_ids]
        for d in denies:
            for entry in out:
                entry["notActions"] = entry["notActions"] + list(d.actions)
        return out

    def role_by_name_or_id(self, value: str) -> RoleDefinition | None:
        if value.lower() in self.role_definitions:
            return self.role_definitions[value.lower()]
        for role in self.role_definitions.values():
            if role.name.lower() == value.lower():
                return role
        return None
