"""Domain types of the CycleCloud adapter: the account as the product sees it (never its secret) and the
probe checklist."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ...redaction import register_secret

logger = logging.getLogger(__name__)

SECRET_FIELD = "AzureRMApplicationSecret"  # noqa: S105 - the field name, not a secret
MASK_CHAR = "*"
HINT_LENGTH = 3  # Entra shows the first 3 characters of a client secret as its `hint`


class CheckStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class ProbeCheck:
    name: str  # reachable | tls | login | account | update_path
    status: CheckStatus
    detail: str = ""
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status.value, "detail": self.detail, "fix": self.fix}


PROBE_CHECKS = ("reachable", "tls", "login", "account", "update_path")


@dataclass(frozen=True)
class ProbeResult:
    target: str
    transport: str
    url: str
    checks: tuple[ProbeCheck, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(c.status is not CheckStatus.FAILED for c in self.checks) and any(
            c.status is CheckStatus.OK for c in self.checks)

    def check(self, name: str) -> ProbeCheck:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "transport": self.transport, "url": self.url, "ok": self.ok,
                "checks": [c.to_dict() for c in self.checks]}


@dataclass(frozen=True)
class CycleCloudAccount:
    """A CycleCloud cloud provider account. `secret_hint` is the first 3 characters of the secret CycleCloud
    holds (what Entra calls the credential's hint), so diagnosis can tell which credential it is; the secret
    itself never leaves CycleCloud through this adapter."""

    name: str
    app_id: str
    tenant_id: str
    subscription_ids: tuple[str, ...]
    use_managed_identity: bool
    secret_hint: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "app_id": self.app_id, "tenant_id": self.tenant_id,
                "subscription_ids": list(self.subscription_ids), "use_managed_identity": self.use_managed_identity,
                "secret_hint": self.secret_hint}


def secret_hint(value: Any) -> str | None:
    """The hint of the secret field as CycleCloud shows it: `Abc********` -> `Abc`; empty or fully masked ->
    None. A server that returns the secret in clear text is tolerated: only its hint is kept, and the value is
    registered so it is masked should it appear anywhere."""
    if not isinstance(value, str) or not value.strip():
        return None
    if not value.endswith(MASK_CHAR):
        register_secret(value)
        logger.warning("CycleCloud returned the account secret unmasked; keeping only its hint")
    hint = value[:HINT_LENGTH]
    return None if not hint.strip(MASK_CHAR) else hint


def without_secret(record: dict[str, Any]) -> dict[str, Any]:
    """The account record with the secret field removed (what may be kept in memory and sent on a dry run)."""
    return {k: v for k, v in record.items() if k != SECRET_FIELD}


def account_from_record(record: dict[str, Any], name: str) -> CycleCloudAccount:
    subscriptions = [str(record.get("AzureRMSubscriptionId") or "").lower()]
    provider_id = str(record.get("ProviderId") or "").lower()
    if provider_id and provider_id not in subscriptions:
        subscriptions.append(provider_id)
    use_mi = record.get("AzureRMUseManagedIdentity")
    return CycleCloudAccount(
        name=str(record.get("Name") or name),
        app_id=str(record.get("AzureRMApplicationId") or "").strip().lower(),
        tenant_id=str(record.get("AzureRMTenantId") or "").strip().lower(),
        subscription_ids=tuple(s for s in subscriptions if s),
        use_managed_identity=use_mi is True or str(use_mi).lower() == "true",
        secret_hint=secret_hint(record.get(SECRET_FIELD)),
    )
