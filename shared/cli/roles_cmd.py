"""`python -m shared roles <target> [--apply] [--json]`: show the plan for the target's role assignments, or
apply it (create what is missing, labelled as managed by this product).

Exit code: 0 when every configured assignment is present (plan) or present/created (apply); 1 when the plan has
assignments to create or anything failed. Configuration and access errors exit 2 (see `shared.cli`).
"""

from __future__ import annotations

import argparse

from ..context import AppContext
from ..roles import AssignmentOutcome, AssignmentState, RoleReconciliation, reconcile_target_roles
from .output import FAIL, OK, SKIP, WARN, emit, emit_json

_MARK = {AssignmentState.PRESENT: OK, AssignmentState.CREATED: OK, AssignmentState.MISSING: "→",
         AssignmentState.FAILED: FAIL, AssignmentState.EXTRA: SKIP, AssignmentState.REMOVED: WARN}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="the target's name (see `python -m shared config check`)")
    parser.add_argument("--apply", action="store_true", help="create the missing assignments (default: plan only)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (the HTTP response body)")


def _note(outcome: AssignmentOutcome) -> str:
    if outcome.state is AssignmentState.PRESENT:
        where = f"inherited from {outcome.inherited_from}" if outcome.inherited_from else "at the subscription"
        label = ", managed by this product" if outcome.managed_by_product else ""
        return f"{outcome.assignment_name} ({where}{label})"
    if outcome.state is AssignmentState.MISSING:
        return f"would create {outcome.assignment_name}"
    if outcome.state is AssignmentState.CREATED:
        check = {True: "verified", False: "not listed yet", None: ""}[outcome.verified]
        return f"{outcome.assignment_name} {check}".strip()
    return outcome.assignment_name or ""


def render(result: RoleReconciliation) -> None:
    mode = "plan (nothing is changed)" if result.dry_run else "apply"
    emit(f"Roles of target '{result.target}' — {mode}")
    emit(f"Principal: {result.principal.object_id} ({result.principal.source.replace('_', ' ')}"
         f"{', ' + result.principal.display if result.principal.display else ''})")
    emit()
    rows = [(o, o.subscription_id, o.role_name, o.state.value, _note(o)) for o in result.assignments]
    widths = [max([len(h)] + [len(str(r[i + 1])) for r in rows]) for i, h in enumerate(("SUBSCRIPTION", "ROLE",
                                                                                          "STATE"))]
    emit(f"    {'SUBSCRIPTION':<{widths[0]}}  {'ROLE':<{widths[1]}}  {'STATE':<{widths[2]}}  ASSIGNMENT")
    for outcome, sub, role, state, note in rows:
        emit(f"  {_MARK[outcome.state]} {sub:<{widths[0]}}  {role:<{widths[1]}}  {state:<{widths[2]}}  {note}")
        if outcome.reason and outcome.state is not AssignmentState.PRESENT:
            emit(f"      why: {outcome.reason}")
        if outcome.fix and outcome.state in (AssignmentState.FAILED, AssignmentState.MISSING):
            emit(f"      fix: {outcome.fix}")
    emit()
    emit(result.message)
    if result.dry_run and result.changes_needed:
        if result.count(AssignmentState.FAILED):
            # applying would fail the same way: say what to fix first, not "apply it"
            emit(f"Fix the failed row(s) first (see each fix), then run `python -m shared roles {result.target}` "
                 "again.")
        else:
            emit(f"Apply it: python -m shared roles {result.target} --apply")


async def run(args: argparse.Namespace) -> int:
    async with AppContext.from_environment() as ctx:
        result = await reconcile_target_roles(ctx, args.target, dry_run=not args.apply)
    if args.json:
        emit_json(result.to_dict())
    else:
        render(result)
    if not result.ok or (result.dry_run and result.changes_needed):
        return 1
    return 0
