"""Typed settings and targets, loaded from app settings.

Everything is validated before the first cloud call. Invalid configuration fails fast with one
`ConfigError` that lists every problem at once, each as `setting: what is wrong; how to fix it`.
No secret values live in configuration: only Key Vault secret names.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .clouds import CLOUDS, AzureCloud
from .errors import ConfigError
from .redaction import register_secret

CONTRIBUTOR_ROLE_ID = "b24988ac-6180-42a0-ab88-20f7382dd24c"
DEFAULT_ROTATION_SCHEDULE = "0 0 3 * * *"  # daily, 03:00 UTC
DEFAULT_HEALTH_SCHEDULE = "0 0 * * * *"  # hourly
DEFAULT_STATE_CONTAINER = "remediator"
DEFAULT_CONTINUATION_QUEUE = "remediator-continuations"  # HTTP API: long operations continue from here
DEFAULT_HTTP_BUDGET_SECONDS = 30.0  # answer 202 by then, far below the 230 s front-end limit
OPERATE_ROLE = "CredentialRemediator.Operate"  # REQUIRE_APP_ROLE=true means this app role
DEFAULT_CREDENTIAL_PATH = "/cloud/accounts/{account}"
HOME_IDENTITY = "home"  # a target's `identity`: the Function's own managed identity

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_VAULT_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_VM_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/virtualMachines/[^/]+$", re.IGNORECASE
)
_NCRONTAB_FIELDS = 6
# Entra client secrets carry `~` (e.g. `Abc8Q~...`) and are 34-40 characters long: pasted into a secret *name*
# setting they must be described, never echoed
_CLIENT_SECRET_SHAPE = re.compile(r"^[0-9A-Za-z._~-]{3}\dQ~[0-9A-Za-z._~-]{30,}$")
# a CycleCloud account name goes into a URL path and a CLI argument: no separators, traversal or options
_ACCOUNT_FORBIDDEN = re.compile(r"[/?#\\%]|\.\.|[\x00-\x1f\x7f]")

# Role definitions that let their holder grant itself (or anyone) any access: never for the CycleCloud principal
# unless the operator says so with allow_privileged_roles
OWNER_ROLE_ID = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
USER_ACCESS_ADMINISTRATOR_ROLE_ID = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC_ADMINISTRATOR_ROLE_ID = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
PRIVILEGED_BUILTIN_ROLES = {
    OWNER_ROLE_ID: "Owner",
    USER_ACCESS_ADMINISTRATOR_ROLE_ID: "User Access Administrator",
    RBAC_ADMINISTRATOR_ROLE_ID: "Role Based Access Control Administrator",
}


class Mode(StrEnum):
    SERVICE_PRINCIPAL = "service_principal"
    MANAGED_IDENTITY = "managed_identity"


class Transport(StrEnum):
    REST = "rest"
    RUNCOMMAND = "runcommand"


@dataclass(frozen=True)
class RotationPolicy:
    rotate_before_days: int = 30
    lifetime_days: int = 180
    grace_hours: float = 24.0
    test_successes: int = 3
    test_timeout_seconds: float = 300.0


@dataclass(frozen=True)
class CycleCloudConnection:
    url: str
    account: str = "azure"
    user: str = ""
    password_secret: str = ""
    ca_bundle: str | None = None  # path to a PEM file
    ca_bundle_secret: str | None = None  # Key Vault secret holding PEM
    transport: Transport = Transport.REST
    credential_method: str = "PUT"
    credential_path: str = DEFAULT_CREDENTIAL_PATH
    timeout_seconds: float = 30.0
    # the server really honours `?dry_run=true` (REST) / `account edit --dry-run` (Run Command); only then does
    # the probe send the update request, as a dry run. Otherwise the probe only reads.
    supports_dry_run: bool = False


@dataclass(frozen=True)
class Target:
    name: str
    mode: Mode
    tenant_id: str
    subscription_ids: tuple[str, ...]
    app_id: str | None = None
    roles: tuple[str, ...] = (CONTRIBUTOR_ROLE_ID,)
    secret_name: str | None = None
    cyclecloud: CycleCloudConnection | None = None
    vm_resource_id: str | None = None
    rotation: RotationPolicy = field(default_factory=RotationPolicy)
    prune_unmanaged_roles: bool = False
    allow_privileged_roles: bool = False  # Owner, User Access Administrator, ... for the CycleCloud principal
    # which identity of the product looks after this target: "home" (the Function's managed identity, in its own
    # tenant) or the client id of the product's multi-tenant app, for a target in another tenant (docs/tenants.md)
    identity: str = HOME_IDENTITY

    @property
    def cross_tenant(self) -> bool:
        """True when the product reaches this target's tenant through its multi-tenant app."""
        return self.identity != HOME_IDENTITY

    @property
    def uses_secret(self) -> bool:
        return self.mode is Mode.SERVICE_PRINCIPAL


@dataclass(frozen=True)
class StorageSettings:
    """Where leases and rotation journals live: the Functions storage account."""

    connection_string: str | None = None
    blob_service_uri: str | None = None
    container: str = DEFAULT_STATE_CONTAINER


@dataclass(frozen=True)
class Settings:
    targets: tuple[Target, ...]
    key_vault_url: str
    cloud: AzureCloud
    storage: StorageSettings
    managed_identity_client_id: str | None = None
    rotation_schedule: str = DEFAULT_ROTATION_SCHEDULE
    health_schedule: str = DEFAULT_HEALTH_SCHEDULE
    auto_remediate: bool = False
    max_concurrency: int = 4
    # MAXIMUM_INSTANCE_COUNT: the Function app's instance bound (Bicep maximumInstanceCount); each instance takes
    # this share of the per-service limits (shared/limits.py), so the fleet together stays within them
    maximum_instance_count: int = 1
    http_budget_seconds: float = DEFAULT_HTTP_BUDGET_SECONDS  # HTTP_BUDGET_SECONDS
    continuation_queue: str = DEFAULT_CONTINUATION_QUEUE  # CONTINUATION_QUEUE, in the Functions storage account
    continuation_backoff_seconds: float = 30.0  # CONTINUATION_BACKOFF_SECONDS: first delay, doubling to 300 s
    require_app_role: str | None = None  # REQUIRE_APP_ROLE: the app role changes need (None: function key enough)
    queue_service_uri: str | None = None  # AzureWebJobsStorage__queueServiceUri (identity-based connection)
    notify_webhook_url: str | None = field(default=None, repr=False)  # NOTIFY_WEBHOOK_URL: holds a token; never shown
    notify_format: str = "teams"  # NOTIFY_FORMAT: teams (Adaptive Card, workflow URL) | slack
    home_tenant_id: str | None = None  # HOME_TENANT_ID: the tenant of the Function's managed identity

    def target(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        from .errors import TargetNotFoundError

        known = ", ".join(t.name for t in self.targets) or "(none configured)"
        raise TargetNotFoundError(
            f"No target named '{name}'.",
            reason=f"Configured targets: {known}.",
            fix="Use one of the configured target names, or add the target to the TARGETS setting.",
            target=name,
        )


def is_guid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


class _Problems:
    """Collects every configuration problem so they can be reported together."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, setting: str, what: str, fix: str) -> None:
        self.items.append(f"{setting}: {what}; {fix}")


_GUID_FIX = {
    "tenant_id": "use the Directory (tenant) ID from the app registration's Overview page",
    "app_id": "use the Application (client) ID from the app registration's Overview page",
    "subscription_ids": "use the Subscription ID from the subscription's Overview page",
}


def _guid(problems: _Problems, where: str, raw: Any, key: str) -> str | None:
    if raw is None or raw == "":
        problems.add(where, "is missing", _GUID_FIX.get(key, "set it to a GUID"))
        return None
    if not is_guid(raw):
        problems.add(where, f"{raw!r} is not a GUID", _GUID_FIX.get(key, "set it to a GUID"))
        return None
    return str(raw).lower()


def _number(problems: _Problems, where: str, raw: Any, default: float, *, minimum: float, integer: bool) -> float:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float) or (integer and not float(raw).is_integer()):
        kind = "a whole number" if integer else "a number"
        problems.add(where, f"{raw!r} is not {kind}", f"set it to {kind} of at least {minimum:g}")
        return default
    if raw < minimum:
        problems.add(where, f"{raw!r} is too small", f"set it to at least {minimum:g}")
        return default
    return float(raw)


def _https_url(problems: _Problems, where: str, raw: Any, fix: str) -> str | None:
    if not isinstance(raw, str) or not raw:
        problems.add(where, "is missing", fix)
        return None
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname:
        problems.add(where, f"{raw!r} is not an https:// URL", fix)
        return None
    return raw.rstrip("/")


def _looks_like_client_secret(value: str) -> bool:
    return bool(_CLIENT_SECRET_SHAPE.match(value.strip())) or ("~" in value and len(value.strip()) >= 30)


def _vault_secret_name(problems: _Problems, where: str, raw: Any, what: str) -> str | None:
    """A Key Vault secret name, or None with a problem added. The value is never echoed when it is not a valid
    name: a person may have pasted the secret itself (a client secret or a password) instead of its name."""
    if isinstance(raw, str) and _VAULT_SECRET_NAME.match(raw):
        return raw
    if isinstance(raw, str):
        register_secret(raw)  # defence in depth: mask it should it reach a log line anyway
        if _looks_like_client_secret(raw):
            problem = "looks like a client secret value, not a Key Vault secret name (the value is not shown)"
        else:
            problem = (f"is not a Key Vault secret name ({len(raw)} characters, not only letters, digits and "
                       "dashes; the value is not shown in case it is a secret)")
    else:
        problem = f"is not a Key Vault secret name (a {type(raw).__name__}, not a string)"
    problems.add(where, problem, f"set it to the name (1-127 letters, digits and dashes) of the Key Vault secret that "
                                 f"holds {what}, and store the value itself only in Key Vault")
    return None


def _bool(problems: _Problems, where: str, raw: Any, default: bool) -> bool:
    if raw is None:
        return default
    if not isinstance(raw, bool):
        problems.add(where, f"{raw!r} is not true or false", "use true or false")
        return default
    return raw


def _unknown_keys(problems: _Problems, where: str, data: Mapping[str, Any], known: set[str]) -> None:
    for key in sorted(set(data) - known):
        problems.add(f"{where}.{key}", "is not a known setting",
                     f"remove it, or use one of: {', '.join(sorted(known))}")


_SECRET_LIKE_KEYS = {"secret", "client_secret", "password", "secret_value", "value"}


def _parse_rotation(problems: _Problems, where: str, raw: Any) -> RotationPolicy:
    if raw is None:
        return RotationPolicy()
    if not isinstance(raw, dict):
        problems.add(where, "must be an object", 'e.g. {"rotate_before_days": 30, "lifetime_days": 180}')
        return RotationPolicy()
    defaults = RotationPolicy()
    _unknown_keys(problems, where, raw, {f for f in RotationPolicy.__dataclass_fields__})
    policy = RotationPolicy(
        rotate_before_days=int(
            _number(problems, f"{where}.rotate_before_days", raw.get("rotate_before_days"),
                    defaults.rotate_before_days, minimum=1, integer=True)
        ),
        lifetime_days=int(
            _number(problems, f"{where}.lifetime_days", raw.get("lifetime_days"), defaults.lifetime_days,
                    minimum=1, integer=True)
        ),
        grace_hours=_number(problems, f"{where}.grace_hours", raw.get("grace_hours"), defaults.grace_hours,
                            minimum=0, integer=False),
        test_successes=int(
            _number(problems, f"{where}.test_successes", raw.get("test_successes"), defaults.test_successes,
                    minimum=1, integer=True)
        ),
        test_timeout_seconds=_number(problems, f"{where}.test_timeout_seconds", raw.get("test_timeout_seconds"),
                                     defaults.test_timeout_seconds, minimum=1, integer=False),
    )
    if policy.rotate_before_days >= policy.lifetime_days:
        problems.add(
            f"{where}.rotate_before_days",
            f"{policy.rotate_before_days} is not less than lifetime_days ({policy.lifetime_days})",
            "a new secret would be due for rotation as soon as it is created; lower rotate_before_days",
        )
    return policy


def _parse_cyclecloud(problems: _Problems, where: str, raw: Any, mode: Mode | None) -> CycleCloudConnection | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.add(where, "must be an object", 'e.g. {"url": "https://cyclecloud.contoso.com", "account": "azure"}')
        return None
    known = {f for f in CycleCloudConnection.__dataclass_fields__}
    _unknown_keys(problems, where, raw, known)
    url = _https_url(problems, f"{where}.url", raw.get("url"),
                     "use the address you open CycleCloud's web UI with, e.g. https://cyclecloud.contoso.com "
                     "(include the context path if CycleCloud has one)")
    transport_raw = raw.get("transport", Transport.REST.value)
    try:
        transport = Transport(transport_raw)
    except ValueError:
        problems.add(f"{where}.transport", f"{transport_raw!r} is not a transport", "use 'rest' or 'runcommand'")
        transport = Transport.REST
    account = raw.get("account", "azure")
    account_fix = "use the account name shown under Configure > Cloud Provider Accounts in CycleCloud (often 'azure')"
    if not isinstance(account, str) or not account.strip():
        problems.add(f"{where}.account", "is empty", account_fix)
        account = "azure"
    elif _ACCOUNT_FORBIDDEN.search(account) or account.startswith("-") or account != account.strip():
        problems.add(f"{where}.account", f"{account!r} is not an account name (it may not contain '/', '?', '#', "
                                         "'\\', '%', '..' or control characters, start with '-', or have surrounding "
                                         "spaces)", account_fix)
        account = "azure"
    user = raw.get("user", "")
    password_secret = raw.get("password_secret", "")
    if transport is Transport.REST:
        if not user:
            problems.add(f"{where}.user", "is missing", "name the CycleCloud user the product logs in as "
                                                        "(a Superuser, so it may edit account credentials)")
        if not password_secret:
            problems.add(f"{where}.password_secret", "is missing",
                         "name the Key Vault secret that holds the CycleCloud user's password")
        elif _vault_secret_name(problems, f"{where}.password_secret", password_secret,
                                "the CycleCloud user's password") is None:
            password_secret = ""
    elif password_secret and _vault_secret_name(problems, f"{where}.password_secret", password_secret,
                                                "the CycleCloud user's password") is None:
        password_secret = ""
    ca_bundle_secret = raw.get("ca_bundle_secret")
    if ca_bundle_secret is not None:
        ca_bundle_secret = _vault_secret_name(problems, f"{where}.ca_bundle_secret", ca_bundle_secret,
                                              "the PEM of CycleCloud's CA")
    ca_bundle = raw.get("ca_bundle")
    if ca_bundle is not None and (not isinstance(ca_bundle, str) or not Path(ca_bundle).is_file()):
        problems.add(f"{where}.ca_bundle", f"{ca_bundle!r} is not a readable file",
                     "point it at the PEM file of the CA that signed CycleCloud's certificate, or use "
                     "ca_bundle_secret to read the PEM from Key Vault")
        ca_bundle = None
    method = str(raw.get("credential_method", "PUT")).upper()
    if method not in {"PUT", "POST", "PATCH"}:
        problems.add(f"{where}.credential_method", f"{method!r} is not an HTTP method that updates",
                     "use PUT, POST or PATCH")
    path = raw.get("credential_path", DEFAULT_CREDENTIAL_PATH)
    if not isinstance(path, str) or not path.startswith("/") or "{account}" not in path:
        problems.add(f"{where}.credential_path", f"{path!r} is not a path template with {{account}}",
                     f"use e.g. {DEFAULT_CREDENTIAL_PATH!r}")
        path = DEFAULT_CREDENTIAL_PATH
    timeout = _number(problems, f"{where}.timeout_seconds", raw.get("timeout_seconds"), 30.0, minimum=1,
                      integer=False)
    supports_dry_run = _bool(problems, f"{where}.supports_dry_run", raw.get("supports_dry_run"), False)
    if url is None:
        return None
    return CycleCloudConnection(
        url=url, account=account, user=str(user), password_secret=str(password_secret), ca_bundle=ca_bundle,
        ca_bundle_secret=ca_bundle_secret, transport=transport, credential_method=method,
        credential_path=path, timeout_seconds=timeout, supports_dry_run=supports_dry_run,
    )


def _parse_target(problems: _Problems, index: int, raw: Any, seen: set[str]) -> Target | None:
    where = f"TARGETS[{index}]"
    if not isinstance(raw, dict):
        problems.add(where, "must be an object", 'e.g. {"name": "hpc-prod", "tenant_id": "...", ...}')
        return None
    for key in sorted(set(raw) & _SECRET_LIKE_KEYS):
        problems.add(f"{where}.{key}", "looks like a secret value in configuration",
                     "remove it: store the secret in Key Vault and set secret_name to its name")
    known = {f for f in Target.__dataclass_fields__} | _SECRET_LIKE_KEYS
    _unknown_keys(problems, where, raw, known)

    name = raw.get("name")
    if not isinstance(name, str) or not _SLUG.match(name):
        problems.add(f"{where}.name", f"{name!r} is not a slug",
                     "use lowercase letters, digits and dashes, e.g. 'hpc-prod'")
        name = None
    elif name in seen:
        problems.add(f"{where}.name", f"'{name}' is used by another target", "give each target a unique name")
    else:
        seen.add(name)
    if name:
        where = f"TARGETS[{index}] ({name})"

    mode_raw = raw.get("mode", Mode.SERVICE_PRINCIPAL.value)
    try:
        mode: Mode | None = Mode(mode_raw)
    except ValueError:
        problems.add(f"{where}.mode", f"{mode_raw!r} is not a mode", "use 'service_principal' or 'managed_identity'")
        mode = None

    tenant_id = _guid(problems, f"{where}.tenant_id", raw.get("tenant_id"), "tenant_id")
    app_id = None
    if mode is Mode.SERVICE_PRINCIPAL or raw.get("app_id") is not None:
        app_id = _guid(problems, f"{where}.app_id", raw.get("app_id"), "app_id")

    subs_raw = raw.get("subscription_ids")
    subscription_ids: list[str] = []
    if not isinstance(subs_raw, list) or not subs_raw:
        problems.add(f"{where}.subscription_ids", "must be a non-empty list",
                     "list the IDs of the subscriptions CycleCloud deploys into")
    else:
        for j, sub in enumerate(subs_raw):
            checked = _guid(problems, f"{where}.subscription_ids[{j}]", sub, "subscription_ids")
            if checked:
                subscription_ids.append(checked)

    roles_raw = raw.get("roles", [CONTRIBUTOR_ROLE_ID])
    roles: list[str] = []
    if not isinstance(roles_raw, list) or not roles_raw or not all(isinstance(r, str) and r for r in roles_raw):
        problems.add(f"{where}.roles", f"{roles_raw!r} is not a non-empty list of role names or ids",
                     f"use e.g. [\"{CONTRIBUTOR_ROLE_ID}\"] (Contributor) or the name of the CycleCloud custom role")
    else:
        roles = [r.lower() if is_guid(r) else r for r in roles_raw]
    allow_privileged = _bool(problems, f"{where}.allow_privileged_roles", raw.get("allow_privileged_roles"), False)
    if not allow_privileged:
        for role in roles:
            privileged = PRIVILEGED_BUILTIN_ROLES.get(role.rstrip("/").rsplit("/", 1)[-1].lower()) or next(
                (name for name in PRIVILEGED_BUILTIN_ROLES.values() if name.lower() == role.strip().lower()), None)
            if privileged:
                problems.add(f"{where}.roles", f"'{role}' is {privileged}, a role that can grant any access to anyone; "
                                               "CycleCloud needs no such right",
                             "use Contributor or the CycleCloud custom role (see docs/roles.md); if you really mean "
                             "it, set allow_privileged_roles: true on the target")

    secret_name = raw.get("secret_name")
    if mode is Mode.SERVICE_PRINCIPAL:
        if not secret_name:
            problems.add(f"{where}.secret_name", "is missing",
                         "name the Key Vault secret that holds (or will hold) the service principal's client secret")
        else:
            secret_name = _vault_secret_name(problems, f"{where}.secret_name", secret_name,
                                             "the service principal's client secret")

    cyclecloud = _parse_cyclecloud(problems, f"{where}.cyclecloud", raw.get("cyclecloud"), mode)
    vm_resource_id = raw.get("vm_resource_id")
    if vm_resource_id is not None and (not isinstance(vm_resource_id, str) or not _VM_ID.match(vm_resource_id)):
        problems.add(f"{where}.vm_resource_id", f"{vm_resource_id!r} is not a virtual machine resource id",
                     "copy the Resource ID from the CycleCloud VM's Properties page "
                     "(/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachines/<name>)")
        vm_resource_id = None
    runcommand = cyclecloud is not None and cyclecloud.transport is Transport.RUNCOMMAND
    needs_vm = mode is Mode.MANAGED_IDENTITY or runcommand
    if needs_vm and vm_resource_id is None and raw.get("vm_resource_id") is None:
        why = "managed_identity mode" if mode is Mode.MANAGED_IDENTITY else "the runcommand transport"
        problems.add(f"{where}.vm_resource_id", f"is missing but {why} needs the CycleCloud VM",
                     "copy the Resource ID from the CycleCloud VM's Properties page")

    rotation = _parse_rotation(problems, f"{where}.rotation", raw.get("rotation"))
    identity = _identity(problems, f"{where}.identity", raw.get("identity"))
    prune = raw.get("prune_unmanaged_roles", False)
    if not isinstance(prune, bool):
        problems.add(f"{where}.prune_unmanaged_roles", f"{prune!r} is not true or false", "use true or false")
        prune = False

    if name is None or mode is None or tenant_id is None or not subscription_ids:
        return None
    return Target(
        name=name, mode=mode, tenant_id=tenant_id, app_id=app_id, subscription_ids=tuple(subscription_ids),
        roles=tuple(roles) or (CONTRIBUTOR_ROLE_ID,),
        secret_name=secret_name if mode is Mode.SERVICE_PRINCIPAL else None,
        cyclecloud=cyclecloud, vm_resource_id=vm_resource_id, rotation=rotation, prune_unmanaged_roles=prune,
        allow_privileged_roles=allow_privileged, identity=identity,
    )


def _identity(problems: _Problems, where: str, raw: Any) -> str:
    """`home` (default) or the client id of the product's multi-tenant app registration."""
    if raw is None or raw == HOME_IDENTITY:
        return HOME_IDENTITY
    if is_guid(raw):
        return str(raw).lower()
    problems.add(where, f"{str(raw)[:40]!r} is not 'home' or an application (client) id",
                 "use 'home' for the Function's own managed identity, or, for a target in another tenant, the "
                 "Application (client) ID of the product's multi-tenant app registration (docs/tenants.md)")
    return HOME_IDENTITY


def _load_targets_json(problems: _Problems, env: Mapping[str, str]) -> Any:
    inline = env.get("TARGETS")
    path = env.get("TARGETS_FILE")
    if inline and path:
        problems.add("TARGETS_FILE", "is set together with TARGETS", "set only one of them")
    if path and not inline:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            problems.add("TARGETS_FILE", f"cannot read {path!r} ({exc.strerror})",
                         "point it at a readable JSON file, or set TARGETS instead")
            return None
        source, text_value = "TARGETS_FILE", text
    elif inline:
        source, text_value = "TARGETS", inline
    else:
        problems.add("TARGETS", "is not set", "set TARGETS to a JSON list of targets, or TARGETS_FILE to a JSON file")
        return None
    try:
        data = json.loads(text_value)
    except json.JSONDecodeError as exc:
        problems.add(source, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                     "fix the JSON syntax")
        return None
    if isinstance(data, dict) and "targets" in data:
        data = data["targets"]
    if not isinstance(data, list):
        problems.add(source, "must be a JSON list of targets", 'e.g. [{"name": "hpc-prod", ...}]')
        return None
    return data


def _flag(problems: _Problems, env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    problems.add(key, f"{raw!r} is not true or false", "use true or false")
    return default


def _schedule(problems: _Problems, env: Mapping[str, str], key: str, default: str) -> str:
    value = env.get(key) or default
    if len(value.split()) != _NCRONTAB_FIELDS:
        problems.add(key, f"{value!r} is not a 6-field NCRONTAB expression",
                     "use seconds first, e.g. '0 0 3 * * *' for daily at 03:00 UTC")
    return value


def _storage(problems: _Problems, env: Mapping[str, str]) -> StorageSettings:
    container = env.get("STATE_CONTAINER") or DEFAULT_STATE_CONTAINER
    if not re.match(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$", container):
        problems.add("STATE_CONTAINER", f"{container!r} is not a blob container name",
                     "use 3-63 lowercase letters, digits and single dashes")
    conn = env.get("AzureWebJobsStorage") or None
    uri = env.get("AzureWebJobsStorage__blobServiceUri") or None
    account = env.get("AzureWebJobsStorage__accountName")
    if uri is None and account:
        uri = f"https://{account}.blob.core.windows.net"
    return StorageSettings(connection_string=conn, blob_service_uri=uri, container=container)


def _seconds(problems: _Problems, env: Mapping[str, str], key: str, default: float, low: float, high: float) -> float:
    raw = env.get(key)
    if not raw:
        return default
    try:
        value = float(raw)
        if not low <= value <= high:
            raise ValueError
    except ValueError:
        problems.add(key, f"{raw!r} is not a number of seconds from {low:g} to {high:g}", f"use e.g. {default:g}")
        return default
    return value


def _http_api(problems: _Problems, env: Mapping[str, str]) -> dict[str, Any]:
    """The HTTP API's settings: budget before a 202, the continuation queue, the app role changes need."""
    queue = env.get("CONTINUATION_QUEUE") or DEFAULT_CONTINUATION_QUEUE
    if not re.match(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,54}[a-z0-9]$", queue):  # room for the host's "-poison"
        problems.add("CONTINUATION_QUEUE", f"{queue!r} is not a storage queue name",
                     "use 3-56 lowercase letters, digits and single dashes (the host adds '-poison')")
    role = (env.get("REQUIRE_APP_ROLE") or "").strip()
    if role.lower() in {"", "0", "false", "no", "off"}:
        required: str | None = None
    elif role.lower() in {"1", "true", "yes", "on"}:
        required = OPERATE_ROLE
    elif re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$", role):
        required = role
    else:
        problems.add("REQUIRE_APP_ROLE", f"{role[:40]!r} is not true, false or an app role value",
                     f"use true (requires '{OPERATE_ROLE}'), false, or the app role's value")
        required = None
    queue_uri = env.get("AzureWebJobsStorage__queueServiceUri") or None
    account = env.get("AzureWebJobsStorage__accountName")
    if queue_uri is None and account:
        queue_uri = f"https://{account}.queue.core.windows.net"
    return {
        "http_budget_seconds": _seconds(problems, env, "HTTP_BUDGET_SECONDS", DEFAULT_HTTP_BUDGET_SECONDS, 5, 200),
        "continuation_queue": queue,
        "continuation_backoff_seconds": _seconds(problems, env, "CONTINUATION_BACKOFF_SECONDS", 30.0, 1, 300),
        "require_app_role": required,
        "queue_service_uri": queue_uri,
    }


NOTIFY_FORMATS = ("teams", "slack")


def _notifications(problems: _Problems, env: Mapping[str, str]) -> dict[str, Any]:
    """NOTIFY_WEBHOOK_URL (a Key Vault reference in Azure: the URL carries its own token, so it is registered
    as a secret and never echoed) and NOTIFY_FORMAT."""
    fmt = (env.get("NOTIFY_FORMAT") or "teams").strip().lower()
    if fmt not in NOTIFY_FORMATS:
        problems.add("NOTIFY_FORMAT", f"{fmt[:20]!r} is not a notification format", "use teams or slack")
        fmt = "teams"
    url = (env.get("NOTIFY_WEBHOOK_URL") or "").strip() or None
    if url is not None:
        register_secret(url)
        parts = urlsplit(url)
        if url.startswith("@Microsoft.KeyVault("):
            problems.add("NOTIFY_WEBHOOK_URL", "is a Key Vault reference the platform could not resolve",
                         "grant the Function's identity 'Key Vault Secrets User' on the secret and check its URI")
            url = None
        elif parts.scheme != "https" or not parts.hostname:
            problems.add("NOTIFY_WEBHOOK_URL", "is not an https:// URL (its value is not shown: it holds a token)",
                         "use the Teams workflow's or the Slack incoming webhook's https URL, or remove the setting")
            url = None
    return {"notify_webhook_url": url, "notify_format": fmt}


def _check_shared_resources(problems: _Problems, targets: list[Target]) -> None:
    """Several targets may share one app registration (each keeps to its own credentials), but two targets that
    share a Key Vault secret or a CycleCloud account would overwrite each other's secret."""
    by_secret: dict[str, str] = {}
    by_account: dict[tuple[str, str, str], str] = {}
    for target in targets:
        if target.secret_name:
            other = by_secret.get(target.secret_name.lower())
            if other:
                problems.add(f"targets[{target.name}].secret_name",
                             f"is also the secret_name of target '{other}'",
                             "give each target its own Key Vault secret: rotating one would replace the other's "
                             "value (targets may share an app registration, not a secret)")
            by_secret[target.secret_name.lower()] = target.name
        if target.cyclecloud is not None and target.uses_secret:
            key = (target.cyclecloud.url.rstrip("/").lower(), target.cyclecloud.account.lower(),
                   target.cyclecloud.transport.value)
            other = by_account.get(key)
            if other:
                problems.add(f"targets[{target.name}].cyclecloud.account",
                             f"is the same CycleCloud account as target '{other}'",
                             "one CycleCloud account holds one credential: configure it as one target")
            by_account[key] = target.name
    by_tenant: dict[str, Target] = {}
    for target in targets:
        first = by_tenant.setdefault(target.tenant_id, target)
        if first.identity != target.identity:
            problems.add(f"targets[{target.name}].identity",
                         f"is {target.identity!r} but target '{first.name}' in the same tenant {target.tenant_id} "
                         f"uses {first.identity!r}",
                         "the product reaches one tenant through one identity: give every target of a tenant the "
                         "same identity")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise one ConfigError listing all problems."""
    env = os.environ if env is None else env
    problems = _Problems()

    cloud_name = env.get("AZURE_CLOUD") or "AzureCloud"
    cloud = CLOUDS.get(cloud_name)
    if cloud is None:
        problems.add("AZURE_CLOUD", f"{cloud_name!r} is not a known cloud", f"use one of: {', '.join(CLOUDS)}")
        cloud = CLOUDS["AzureCloud"]

    vault_url = _https_url(problems, "KEY_VAULT_URL", env.get("KEY_VAULT_URL"),
                           "use the Vault URI from the Key Vault's Overview page, e.g. https://kv-name.vault.azure.net")
    if vault_url and not (urlsplit(vault_url).hostname or "").endswith(cloud.vault_suffix):
        problems.add("KEY_VAULT_URL", f"{vault_url!r} is not a Key Vault in {cloud.name}",
                     f"use the Vault URI (ending in {cloud.vault_suffix}) or set AZURE_CLOUD to the vault's cloud")

    client_id = env.get("AZURE_CLIENT_ID") or None
    if client_id and not is_guid(client_id):
        problems.add("AZURE_CLIENT_ID", f"{client_id!r} is not a GUID",
                     "use the Client ID of the Function's user-assigned managed identity, or remove the setting")

    home_tenant = env.get("HOME_TENANT_ID") or None
    if home_tenant and not is_guid(home_tenant):
        problems.add("HOME_TENANT_ID", f"{home_tenant[:40]!r} is not a GUID",
                     "use the Directory (tenant) ID of the Function's managed identity "
                     "(az account show --query tenantId), or remove the setting")
        home_tenant = None

    max_concurrency = 4
    if env.get("MAX_CONCURRENCY"):
        try:
            max_concurrency = int(env["MAX_CONCURRENCY"])
            if max_concurrency < 1:
                raise ValueError
        except ValueError:
            problems.add("MAX_CONCURRENCY", f"{env['MAX_CONCURRENCY']!r} is not a positive whole number", "use e.g. 4")
            max_concurrency = 4

    instances = 1
    if env.get("MAXIMUM_INSTANCE_COUNT"):
        try:
            instances = int(env["MAXIMUM_INSTANCE_COUNT"])
            if not 1 <= instances <= 1000:
                raise ValueError
        except ValueError:
            problems.add("MAXIMUM_INSTANCE_COUNT", f"{env['MAXIMUM_INSTANCE_COUNT'][:20]!r} is not a whole number "
                         "from 1 to 1000", "use the Function app's maximumInstanceCount (the Bicep sets it)")
            instances = 1

    targets: list[Target] = []
    raw_targets = _load_targets_json(problems, env)
    if raw_targets is not None:
        seen: set[str] = set()
        for index, raw in enumerate(raw_targets):
            target = _parse_target(problems, index, raw, seen)
            if target is not None:
                targets.append(target)
        _check_shared_resources(problems, targets)

    settings = Settings(
        targets=tuple(targets),
        key_vault_url=vault_url or "",
        cloud=cloud,
        storage=_storage(problems, env),
        managed_identity_client_id=client_id.lower() if client_id and is_guid(client_id) else None,
        rotation_schedule=_schedule(problems, env, "ROTATION_SCHEDULE", DEFAULT_ROTATION_SCHEDULE),
        health_schedule=_schedule(problems, env, "HEALTH_SCHEDULE", DEFAULT_HEALTH_SCHEDULE),
        auto_remediate=_flag(problems, env, "AUTO_REMEDIATE", False),
        max_concurrency=max_concurrency,
        maximum_instance_count=instances,
        **_http_api(problems, env),
        **_notifications(problems, env),
        home_tenant_id=home_tenant.lower() if home_tenant else None,
    )
    if problems.items:
        raise ConfigError(problems.items)
    return settings
