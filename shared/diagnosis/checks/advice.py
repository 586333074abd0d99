"""Advice: a single-subscription service principal could be the CycleCloud VM's managed identity instead,
which removes expiring secrets altogether (the seed's and Microsoft's recommendation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...findings import Finding, make_finding
from ..runner import CheckSkipped

if TYPE_CHECKING:
    from ..facts import Facts


async def check_managed_identity_advice(facts: Facts) -> list[Finding]:
    target = facts.target
    if not target.uses_secret:
        raise CheckSkipped("already a managed identity target")
    if len(target.subscription_ids) != 1:
        raise CheckSkipped("the service principal spans several subscriptions")
    vm_subscription = target.vm_resource_id.split("/")[2].lower() if target.vm_resource_id else None
    return [make_finding(
        "advice.use_managed_identity",
        f"Target '{target.name}' uses a client secret for one subscription ({target.subscription_ids[0]}); the "
        "CycleCloud VM's managed identity could do the same job with no secret to expire.",
        evidence={"subscription_id": target.subscription_ids[0], "vm_resource_id": target.vm_resource_id,
                  "vm_in_same_subscription": vm_subscription == target.subscription_ids[0] if vm_subscription
                  else None},
        params=facts.params(), check="advice", subject=target.name,
    )]
