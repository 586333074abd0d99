"""Subscription tenant versus target tenant (the seed's multi-tenant trap: roles assigned in the wrong tenant
have no effect on the subscription), and whether the product can reach the target's tenant at all
(tenant_access.py: consent, Graph permission and ownership for targets in other tenants)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ...errors import NotFoundError, TenantMismatchError
from ...findings import Finding, Severity, make_finding
from .tenant_access import tenant_access_findings

if TYPE_CHECKING:
    from ..facts import Facts


async def check_tenant(facts: Facts) -> list[Finding]:
    target = facts.target
    params = facts.params()

    async def one(sub: str) -> list[Finding]:
        evidence: dict[str, object] = {"subscription_id": sub, "target_tenant_id": target.tenant_id}
        try:
            info = await facts.subscription(sub)
        except TenantMismatchError as exc:
            owner = exc.details.get("owning_tenant")
            evidence.update(subscription_tenant_id=owner, arm_code=exc.details.get("arm_code"), source="arm")
            return [make_finding(
                "tenant.mismatch",
                f"Subscription {sub} belongs to tenant {owner or '(another tenant)'}, but target '{target.name}' is "
                f"configured for tenant {target.tenant_id}.",
                evidence=evidence, params={**params, "subscription_id": sub}, check="tenant", subject=sub,
            )]
        except NotFoundError as exc:
            if exc.details.get("arm_code") != "SubscriptionNotFound":
                raise
            evidence.update(arm_code="SubscriptionNotFound", arm_message=exc.reason,
                            configured_subscription_ids=list(target.subscription_ids))
            return [make_finding(
                "subscription.not_found",
                f"Azure Resource Manager does not know subscription {sub} (SubscriptionNotFound): check target "
                f"'{target.name}''s subscription_ids for a typo; `az account list --all` shows the ids you can use.",
                evidence=evidence, params={**params, "subscription_id": sub}, check="tenant", subject=sub,
            )]
        evidence.update(subscription_tenant_id=info.tenant_id, subscription_name=info.display_name,
                        subscription_state=info.state)
        if info.state and info.state.lower() not in ("enabled", ""):
            severity = Severity.WARNING if info.state.lower() in ("warned", "pastdue") else Severity.ERROR
            return [make_finding(
                "subscription.disabled",
                f"Subscription {sub} ('{info.display_name}') is {info.state}, so Azure refuses to create CycleCloud's "
                "resources in it.",
                evidence=evidence, params={**params, "subscription_id": sub}, check="tenant", subject=sub,
                severity=severity,
            )]
        if info.tenant_id and info.tenant_id != target.tenant_id.lower():
            return [make_finding(
                "tenant.mismatch",
                f"Subscription {sub} ('{info.display_name}') belongs to tenant {info.tenant_id}, but target "
                f"'{target.name}' is configured for tenant {target.tenant_id}.",
                evidence=evidence, params={**params, "subscription_id": sub}, check="tenant", subject=sub,
            )]
        return []

    reach = await tenant_access_findings(facts)
    if any(f.code.startswith("tenant.") for f in reach):
        return reach  # the product cannot reach the tenant: its subscriptions cannot be read either
    results = await asyncio.gather(*(one(s) for s in target.subscription_ids))
    return [f for r in results for f in r]
