"""Recent failed operations of the CycleCloud identity in each subscription's Activity Log (the seed's
advanced step): the exact action that failed, on which resource, with ARM's error, summarised.

Only failures that are still news count. An authorization failure older than the identity's newest role
assignment there, or any failure older than the stored secret's newest version, happened before the change that
would have fixed it: history, not a finding (otherwise a fixed target would stay degraded for a week and ask a
person to grant a role it already holds). What was left out is counted in the evidence.

Events name a service principal (a managed identity too) by its client id in `caller`; its object id is only in
the event's claims. Both are matched, and the suggested filter uses the client id where it is known.

A policy denial of a resource CycleCloud creates (a VM, a disk, a public IP) is a finding of its own,
`policy.denied_resource`, naming the policy assignment, the denied action and the two real options.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ... import clock
from ...adapters.rbac import ActivityEvent, scope_covers
from ...errors import RemediatorError
from ...findings import Finding, make_finding
from ...redaction import scrub
from ..runner import CheckSkipped
from .subscriptions import per_subscription

if TYPE_CHECKING:
    from ..facts import Facts

LOOKBACK = timedelta(days=7)
MAX_EVENTS = 10
MAX_MESSAGE = 400
ROLE_ASSIGNMENT_WRITE = "microsoft.authorization/roleassignments/write"
_RG = "/resourcegroups/"


def _event(e: ActivityEvent) -> dict[str, Any]:
    return {"timestamp": clock.iso(e.timestamp, seconds=True), "operation": e.operation, "resource_id": e.resource_id,
            "error_code": e.error_code, "message": scrub(e.message)[:MAX_MESSAGE],
            "correlation_id": e.correlation_id, "caller": e.caller}


async def _fixing_changes(facts: Facts, sub: str, principal: str | None) -> dict[str, datetime]:
    """When the changes that would have fixed earlier failures happened: the newest role assignment of the
    identity covering the subscription, and the stored secret's newest version."""
    changes: dict[str, datetime] = {}
    if principal:
        scope = f"/subscriptions/{sub}"
        rbac = await facts.arm()
        try:
            assignments = await facts.once(f"assignments:{sub}:{principal}",
                                           lambda: rbac.list_assignments(scope, principal))
        except RemediatorError:
            assignments = []
        created = [a.created_on for a in assignments
                   if a.principal_id == principal and scope_covers(a.scope, scope) and a.created_on is not None]
        if created:
            changes["role_assignment"] = max(created)
    if facts.target.uses_secret and facts.target.secret_name:
        try:
            secret = await facts.stored_secret()
        except Exception:
            secret = None
        when = secret.properties.updated_on or secret.properties.created_on if secret is not None else None
        if when is not None:
            changes["secret"] = when
    return changes


_FIXED_BY_A_ROLE = {"AuthorizationFailed", "LinkedAuthorizationFailed"}
_FIXED_BY_A_SECRET = {"InvalidAuthenticationToken", "ExpiredAuthenticationToken", "AuthenticationFailed"}


def _cutoff(event: ActivityEvent, changes: dict[str, datetime]) -> datetime | None:
    """The change after which this failure is history: an authorization failure is fixed by a role assignment,
    a refused token by a new secret. Anything else (a policy denial, a quota) has no such change the product
    can see, so it stays until it ages out of the window."""
    code = event.error_code or ""
    if code in _FIXED_BY_A_ROLE:
        return changes.get("role_assignment")
    if code in _FIXED_BY_A_SECRET:
        return changes.get("secret")
    return None


def _exemption_scope(resource_id: str, sub: str) -> str:
    lowered = resource_id.lower()
    if _RG in lowered:
        start = lowered.index(_RG) + len(_RG)
        end = lowered.find("/", start)
        return resource_id[:end] if end != -1 else resource_id
    return f"/subscriptions/{sub}"


def _policy_findings(facts: Facts, sub: str, events: list[ActivityEvent]) -> list[Finding]:
    by_assignment: dict[str, list[ActivityEvent]] = {}
    for e in events:
        key = str((e.policy or {}).get("policy_assignment_id") or "(unnamed policy assignment)")
        by_assignment.setdefault(key, []).append(e)
    findings = []
    for assignment_id, denied in by_assignment.items():
        policy = denied[0].policy or {}
        name = str(policy.get("policy_assignment_display_name") or policy.get("policy_assignment_name")
                   or assignment_id)
        actions = list(dict.fromkeys(e.operation for e in denied))
        latest = denied[0]
        scope = _exemption_scope(latest.resource_id, sub)
        findings.append(make_finding(
            "policy.denied_resource",
            f"Azure Policy assignment '{name}' denied '{latest.operation}' on {latest.resource_id} "
            f"({len(denied)} time(s) in the last {LOOKBACK.days} days): either get an exemption for {scope}, or "
            "change the cluster's parameters to what the policy allows.",
            evidence={"subscription_id": sub, "policy_assignment_id": assignment_id,
                      "policy_assignment_name": policy.get("policy_assignment_name"),
                      "policy_assignment_display_name": policy.get("policy_assignment_display_name"),
                      "policy_assignment_scope": policy.get("policy_assignment_scope"),
                      "policy_definition_id": policy.get("policy_definition_id"),
                      "denied_actions": actions, "denied_count": len(denied),
                      "events": [_event(e) for e in denied[:MAX_EVENTS]]},
            params={**facts.params(), "subscription_id": sub, "policy_assignment": name,
                    "policy_assignment_id": assignment_id,
                    "policy_assignment_name": policy.get("policy_assignment_name") or name,
                    "policy_assignment_scope": policy.get("policy_assignment_scope") or f"/subscriptions/{sub}",
                    "exemption_scope": scope},
            check="activity_log", subject=f"{assignment_id} / {sub}",
        ))
    return findings


async def check_activity_log(facts: Facts) -> list[Finding]:
    target = facts.target
    callers: list[str] = []
    principal: str | None = None
    try:
        principal = await facts.principal_id()
        callers.append(principal)  # matched against the events' object id claim
    except CheckSkipped:
        if facts.is_managed_identity:
            raise
    if target.app_id and not facts.is_managed_identity:
        callers.append(target.app_id)  # what the events put in `caller` for a service principal
    if not callers:
        raise CheckSkipped("no principal to look for")
    since = facts.now - LOOKBACK

    async def one(sub: str) -> list[Finding]:
        events = await (await facts.arm()).failed_operations(sub, callers, since)
        if not events:
            return []
        changes = await _fixing_changes(facts, sub, principal)
        current: list[ActivityEvent] = []
        history: list[ActivityEvent] = []
        for e in events:
            cutoff = _cutoff(e, changes)
            (history if cutoff is not None and e.timestamp <= cutoff else current).append(e)
        policy = [e for e in current if e.error_code == "RequestDisallowedByPolicy"
                  and e.operation.lower() != ROLE_ASSIGNMENT_WRITE]
        other = [e for e in current if e not in policy]
        findings = _policy_findings(facts, sub, policy)
        if not other:
            return findings
        by_action = Counter(e.operation for e in other)
        latest = other[0]
        actions = ", ".join(f"{op} ({n}x)" for op, n in by_action.most_common(5))
        newest_change = changes.get("role_assignment") if latest.error_code in _FIXED_BY_A_ROLE else None
        # filter by what Azure put in the events' `caller` (a service principal's client id), not the object id
        caller = latest.caller or (target.app_id if target.app_id and not facts.is_managed_identity
                                   else (principal or ""))
        shown_since = clock.iso(max(since, newest_change) if newest_change else since, seconds=True)
        findings.append(make_finding(
            "activity.failed_operations",
            f"Since {shown_since} the Activity Log of subscription "
            f"{sub} shows {len(other)} failed operation(s) by the CycleCloud identity: {actions}; the latest, "
            f"'{latest.operation}' on {latest.resource_id}, failed with {latest.error_code or 'an error'}.",
            evidence={"subscription_id": sub, "since": clock.iso(since, seconds=True), "failed_count": len(other),
                      "by_action": dict(by_action.most_common()), "events": [_event(e) for e in other[:MAX_EVENTS]],
                      "caller_filter": caller,
                      # every failure is an authorization failure: the role repair settles them (see plan.py)
                      "settled_by_roles": all(e.error_code in _FIXED_BY_A_ROLE for e in other),
                      "ignored_as_history": len(history),
                      "last_fixing_changes": {k: clock.iso(v, seconds=True) for k, v in changes.items()}},
            params={**facts.params(), "subscription_id": sub, "principal_id": principal,
                    "activity_caller": caller,
                    "activity_since": clock.iso(latest.timestamp - timedelta(hours=1), seconds=True)},
            check="activity_log", subject=f"/subscriptions/{sub}",
        ))
        return findings

    return await per_subscription(target.subscription_ids, one)
