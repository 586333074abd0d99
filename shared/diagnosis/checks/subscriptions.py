"""Per-subscription helpers for the ARM checks: run one coroutine per subscription concurrently, and treat a
subscription that belongs to another tenant, or that ARM does not know (SubscriptionNotFound), as 'reported by
the tenant check' (with a finding of its own), not as a generic failure of every check."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ...errors import NotFoundError, TenantMismatchError
from ...findings import Finding
from ..runner import CheckSkipped


async def per_subscription(subscriptions: tuple[str, ...],
                           each: Callable[[str], Awaitable[list[Finding]]]) -> list[Finding]:
    async def guarded(sub: str) -> list[Finding] | None:
        try:
            return await each(sub)
        except TenantMismatchError:
            return None  # the tenant check reports it, with the owning tenant
        except NotFoundError as exc:
            if exc.details.get("arm_code") != "SubscriptionNotFound":
                raise
            return None  # the tenant check reports subscription.not_found

    results = await asyncio.gather(*(guarded(s) for s in subscriptions))
    if all(r is None for r in results):
        raise CheckSkipped("no configured subscription can be read: another tenant's, or not found (see the "
                           "tenant check)")
    return [f for r in results if r for f in r]
