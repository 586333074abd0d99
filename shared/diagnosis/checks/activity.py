"""Recent failed operations of the CycleCloud identity in each subscription's Activity Log (the seed's
advanced step): the exact action that failed, on which resource, with ARM's error, summarised."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING

from ...findings import Finding, make_finding
from ...redaction import scrub
from ..runner import CheckSkipped
from .subscriptions import per_subscription

if TYPE_CHECKING:
    from ..facts import Facts

LOOKBACK = timedelta(days=7)
MAX_EVENTS = 10
MAX_MESSAGE = 400


async def check_activity_log(facts: Facts) -> list[Finding]:
    target = facts.target
    callers: list[str] = []
    try:
        callers.append(await facts.principal_id())
    except CheckSkipped:
        if facts.is_managed_identity:
            raise
    if target.app_id:
        callers.append(target.app_id)  # the Activity Log names a service principal by its client id
    if not callers:
        raise CheckSkipped("no principal to look for")
    since = facts.now - LOOKBACK

    async def one(sub: str) -> list[Finding]:
        events = await (await facts.arm()).failed_operations(sub, callers, since)
        if not events:
            return []
        by_action = Counter(e.operation for e in events)
        latest = events[0]
        listed = [{
            "timestamp": e.timestamp.isoformat().replace("+00:00", "Z"),
            "operation": e.operation,
            "resource_id": e.resource_id,
            "error_code": e.error_code,
            "message": scrub(e.message)[:MAX_MESSAGE],
            "correlation_id": e.correlation_id,
            "caller": e.caller,
        } for e in events[:MAX_EVENTS]]
        actions = ", ".join(f"{op} ({n}x)" for op, n in by_action.most_common(5))
        return [make_finding(
            "activity.failed_operations",
            f"In the last {LOOKBACK.days} days the Activity Log of subscription {sub} shows {len(events)} failed "
            f"operation(s) by the CycleCloud identity: {actions}; the latest, '{latest.operation}' on "
            f"{latest.resource_id}, failed with {latest.error_code or 'an error'}.",
            evidence={"subscription_id": sub, "since": since.isoformat().replace("+00:00", "Z"),
                      "failed_count": len(events), "by_action": dict(by_action.most_common()), "events": listed},
            params={**facts.params(), "subscription_id": sub, "principal_id": callers[0]},
            check="activity_log", subject=f"/subscriptions/{sub}",
        )]

    return await per_subscription(target.subscription_ids, one)
