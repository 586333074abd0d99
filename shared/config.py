"""Typed settings and targets: the frozen objects the rest of the product reads, and `load_settings`.

Everything is validated before the first cloud call, by the pydantic models in `config_models.py` (imported only
when settings are loaded, so indexing the Function app does not pay for pydantic). Invalid configuration fails fast
with one `ConfigError` that lists every problem at once, each as `setting: what is wrong; how to fix it`.
No secret values live in configuration: only Key Vault secret names.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .clouds import AzureCloud

CONTRIBUTOR_ROLE_ID = "b24988ac-6180-42a0-ab88-20f7382dd24c"
DEFAULT_ROTATION_SCHEDULE = "0 0 3 * * *"  # daily, 03:00 UTC
DEFAULT_HEALTH_SCHEDULE = "0 0 * * * *"  # hourly
DEFAULT_STATE_CONTAINER = "remediator"
DEFAULT_CONTINUATION_QUEUE = "remediator-continuations"  # HTTP API: long operations continue from here
DEFAULT_HTTP_BUDGET_SECONDS = 30.0  # answer 202 by then, far below the 230 s front-end limit
OPERATE_ROLE = "CredentialRemediator.Operate"  # REQUIRE_APP_ROLE=true means this app role
DEFAULT_CREDENTIAL_PATH = "/cloud/accounts/{account}"
HOME_IDENTITY = "home"  # a target's `identity`: the Function's own managed identity
TARGET_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"  # a target's name: a slug (routes, CLI, blobs)

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


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise one ConfigError listing all problems."""
    from .config_models import settings_from_environment  # pydantic: only once settings are needed

    return settings_from_environment(os.environ if env is None else env)


def runtime_problems(settings: Settings) -> list[str]:
    """What valid settings still lack for the product to run: the Functions storage account, where leases,
    journals and the HTTP continuations live (`rotate`, the timers and the HTTP API need it). `load_settings` does
    not ask for it, because `validate` and `token` work without; `config check` does."""
    storage = settings.storage
    if not (storage.connection_string or storage.blob_service_uri):
        return ["AzureWebJobsStorage: is not set, so rotation has nowhere to keep its journal and lease; set it to "
                "the Functions storage account's connection string, or set AzureWebJobsStorage__blobServiceUri and "
                "AzureWebJobsStorage__queueServiceUri (or AzureWebJobsStorage__accountName) for an identity-based "
                "connection"]
    if not (storage.connection_string or settings.queue_service_uri):
        return ["AzureWebJobsStorage__queueServiceUri: is not set, so long HTTP operations cannot continue from "
                "the queue; set it to the storage account's queue endpoint (https://<account>.queue.core.windows.net)"
                ", or set AzureWebJobsStorage__accountName instead of the two service URIs"]
    return []
