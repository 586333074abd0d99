"""Pure planning: from a diagnosis report's findings to the ordered fixes remediate applies. No I/O here.

The order is what makes one call enough:
1. roles first, so the new secret's authorization probe (rotation's test stage) can pass;
2. then at most ONE secret fix, the strongest one the findings call for, because each stronger fix also does
   what the weaker ones would:
   - rotate (expired, invalid, missing, expiring, the Secret ID stored...): a new secret goes to Key Vault AND
     CycleCloud, so whitespace and CycleCloud-out-of-sync are fixed by it as well;
   - else store the trimmed value (whitespace only), which also pushes it to CycleCloud;
   - else push Key Vault's secret to CycleCloud (only CycleCloud out of sync).
Only the rotation depends on the roles: the trim and the push do not need an authorization probe, so they run
even when the role repair fails.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..findings import Finding, FixAction
from .model import PlannedFix

# The secret fixes, strongest first: a stronger one also settles the findings of every weaker one.
_SECRET_FIXES = (FixAction.ROTATE, FixAction.STORE_TRIMMED_SECRET, FixAction.PUSH_TO_CYCLECLOUD)

_WHY = {
    FixAction.RECONCILE_ROLES: "create the configured role assignments that are missing (first, so the new "
                               "secret's authorization probe can pass)",
    FixAction.ROTATE: "create a new client secret, store it in Key Vault, check it works, push it to CycleCloud",
    FixAction.STORE_TRIMMED_SECRET: "store the secret again without the whitespace around it and give CycleCloud "
                                    "the same value",
    FixAction.PUSH_TO_CYCLECLOUD: "give CycleCloud the secret Key Vault holds (after checking Entra ID accepts it)",
}


def _codes(findings: Iterable[Finding]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for f in findings:
        seen.setdefault(f.code, None)
    return tuple(seen)


def plan_fixes(findings: Iterable[Finding]) -> list[PlannedFix]:
    """The fixes for every finding the catalog marks fixable, in a safe order (see the module docstring)."""
    findings_list = list(findings)
    by_action: dict[FixAction, list[Finding]] = {}
    for finding in findings_list:
        if finding.fix_action is not None:
            by_action.setdefault(finding.fix_action, []).append(finding)

    plan: list[PlannedFix] = []
    roles = by_action.get(FixAction.RECONCILE_ROLES)
    if roles:
        # Activity Log failures that are all authorization failures are settled by the same role repair
        settled = [f for f in findings_list if f.code == "activity.failed_operations"
                   and f.evidence.get("settled_by_roles")]
        plan.append(PlannedFix(FixAction.RECONCILE_ROLES, _codes([*roles, *settled]),
                               _WHY[FixAction.RECONCILE_ROLES]))

    for index, action in enumerate(_SECRET_FIXES):
        if action not in by_action:
            continue
        settled = [f for weaker in _SECRET_FIXES[index:] for f in by_action.get(weaker, [])]
        depends = (FixAction.RECONCILE_ROLES,) if action is FixAction.ROTATE and roles else ()
        plan.append(PlannedFix(action, _codes(settled), _WHY[action], depends))
        break
    return plan
