"""Per-subscription helpers for the ARM checks: run one coroutine per subscription concurrently, and treat a
subscription that belongs to another tenant as 'reported by the tenant check', not as a failure of each check."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ...errors import TenantMismatchError
from ...findings import Finding
from ..runner import CheckSkipped


async def per_subscription(subscriptions: tuple[str, ...],
                           each: Callable[[str], Awaitable[list[Finding]]]) -> list[Finding]:
    async def guarded(sub: str) -> list[Finding] | None:
        try:
            return await each(sub)
        except TenantMismatchError:
            return None  # the tenant check reports it, with the owning tenant

    results = await asyncio.gather(*(guarded(s) for s in subscriptions))
    if all(r is None for r in results):
        raise CheckSkipped("every subscription belongs to another tenant (see the tenant check)")
    return [f for r in results if r for f in r]
