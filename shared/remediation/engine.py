"""The remediation engine: validate -> apply the planned fixes in order -> validate again, within a time budget.

The engine only orchestrates; the work is done by `Fixers` (roles, rotation, Key Vault, CycleCloud), so every
rule here (order, dependencies, time budget, dry run, one failure never stopping independent fixes) has a
plain unit test with stand-in fixers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from ..clock import Deadline, now_iso
from ..diagnosis.report import Report, Status
from ..errors import LockedError, RemediatorError, ServiceError
from ..findings import FixAction
from .model import (
    ActionRecord,
    FixResult,
    Outcome,
    PlannedFix,
    RemediationReport,
    Result,
    check_again_at,
    settling,
)
from .plan import plan_fixes

logger = logging.getLogger(__name__)

# Kept back from the budget for the final validation (a validation runs its checks concurrently, each with its
# own time limit, so this is generous).
AFTER_RESERVE_SECONDS = 30.0
# An action is not started with less than this left: it would only be cut off half-way.
MIN_ACTION_SECONDS = 5.0
# The fixers get the budget as their own deadline; this is the engine's backstop beyond it.
BACKSTOP_GRACE_SECONDS = 10.0

# Outcomes after which an action that depends on this one must not run.
_BLOCKING = {Outcome.FAILED, Outcome.IN_PROGRESS, Outcome.DEFERRED}


class Fixers(Protocol):
    """What the engine needs from the rest of the product (bound to the real modules in `fixers.py`)."""

    async def validate(self, target: str) -> Report: ...

    async def apply(self, action: FixAction, target: str, *, dry_run: bool, deadline_seconds: float) -> FixResult:
        """Do (or, on a dry run, describe without changing anything) one fix; raise domain errors on failure."""
        ...


async def _validate(fixers: Fixers, target: str, budget: Deadline, what: str) -> Report:
    seconds = budget.remaining()
    if seconds <= 0:
        raise TimeoutError
    try:
        return await asyncio.wait_for(fixers.validate(target), timeout=seconds)
    except TimeoutError:
        logger.warning("remediate %s: the %s validation did not finish within %.0f s", target, what, seconds)
        raise


async def _run_action(fixers: Fixers, fix: PlannedFix, target: str, *, dry_run: bool, seconds: float,
                      clock: Callable[[], float]) -> ActionRecord:
    started = clock()

    def record(result: FixResult) -> ActionRecord:
        return ActionRecord(fix.action, result.outcome, fix.addresses, result.message, result.reason, result.fix,
                            dict(result.details), (clock() - started) * 1000.0)

    try:
        result = await asyncio.wait_for(
            fixers.apply(fix.action, target, dry_run=dry_run, deadline_seconds=seconds),
            timeout=seconds + BACKSTOP_GRACE_SECONDS,
        )
        return record(result)
    except TimeoutError:
        if fix.action is FixAction.ROTATE:
            # the rotation is journaled: cutting it off leaves a resumable operation, not a broken target
            return record(FixResult(
                Outcome.IN_PROGRESS,
                f"The rotation did not finish within {seconds:.0f} s; it resumes on the next call.",
                reason="Time limit of this call reached.",
                fix=f"Check GET /api/targets/{target}/rotation, then POST /api/targets/{target}/remediate again."))
        return record(FixResult(Outcome.FAILED, f"{fix.action.value} did not finish within {seconds:.0f} s.",
                                reason="Time limit of this call reached.",
                                fix=f"POST /api/targets/{target}/remediate again."))
    except LockedError as exc:
        # someone else's rotation holds the target: the work is under way, just not ours
        return record(FixResult(Outcome.IN_PROGRESS, exc.message, exc.reason, exc.fix,
                                {"code": exc.code, **exc.details}))
    except RemediatorError as exc:
        return record(FixResult(Outcome.FAILED, exc.message, exc.reason, exc.fix, {"code": exc.code, **exc.details}))
    except Exception as exc:  # one broken fixer must not stop the others
        logger.exception("remediate %s: %s failed unexpectedly (%s)", target, fix.action.value, type(exc).__name__)
        return record(FixResult(Outcome.FAILED, f"{fix.action.value} failed unexpectedly ({type(exc).__name__}).",
                                fix="See the Function's logs for this invocation; then remediate again."))


def _settling_only(report: Report | None) -> bool:
    """Every open finding settles on its own (a role assignment Azure is still applying)."""
    return report is not None and bool(report.findings) and len(settling(report)) == len(report.findings)


def _result(before: Report, after: Report | None, actions: list[ActionRecord], *, dry_run: bool) -> Result:
    if dry_run:
        # a plan whose steps all turned out to have nothing to do is no plan
        return Result.PLANNED if any(a.outcome in (Outcome.PLANNED, Outcome.FAILED) for a in actions) else (
            Result.HEALTHY if not before.findings else Result.NEEDS_ATTENTION)
    if _settling_only(after if after is not None else before):
        return Result.IN_PROGRESS  # never healthy before Azure applies the role; check again later
    if not actions:
        return Result.HEALTHY if not before.findings else Result.NEEDS_ATTENTION
    if after is None or any(a.outcome in (Outcome.IN_PROGRESS, Outcome.DEFERRED) for a in actions):
        return Result.IN_PROGRESS
    if not after.findings:
        return Result.FIXED if any(a.outcome is Outcome.APPLIED for a in actions) else Result.HEALTHY
    if any(a.outcome is Outcome.APPLIED for a in actions):
        return Result.PARTIALLY_FIXED
    return Result.NEEDS_ATTENTION


def _message(target: str, result: Result, before: Report, after: Report | None, actions: list[ActionRecord]) -> str:
    applied = sum(a.outcome is Outcome.APPLIED for a in actions)
    failed = sum(a.outcome is Outcome.FAILED for a in actions)
    unchanged = sum(a.outcome is Outcome.NOTHING_TO_DO for a in actions)
    left = len((after or before).findings)
    at, _ = check_again_at(after or before)
    waiting = _settling_only(after or before) and not failed
    match result:
        case Result.HEALTHY:
            return f"{target} is healthy; nothing to fix."
        case _ if waiting and not any(a.outcome is Outcome.PLANNED for a in actions):
            done = f" ({applied} action(s) applied)" if applied else ""
            return f"{target} is not healthy yet: Azure has not applied the role assignment{done}; nothing needs " \
                   f"to be changed: validate again after {at}."
        case Result.NEEDS_ATTENTION if not applied and not failed:
            extra = f" ({unchanged} action(s) ran and found nothing to change)" if unchanged else ""
            return f"{target} is {(after or before).status.value}, but none of its {left} finding(s) can be fixed " \
                   f"automatically{extra}; each lists the steps for a person."
        case Result.PLANNED:
            planned = sum(a.outcome is Outcome.PLANNED for a in actions)
            text = f"Dry run: {planned} action(s) would be taken for {len(before.findings)} finding(s) of " \
                   f"{target}; nothing was changed."
            if failed:
                text += f" {failed} step(s) of the plan already fail; fix them before applying it."
            return text
        case Result.FIXED:
            return f"{target} is healthy: {applied} action(s) fixed all {len(before.findings)} finding(s)."
        case Result.IN_PROGRESS:
            return f"{target}: work continues after this call ({applied} action(s) applied so far); check the " \
                   "rotation's progress and call remediate again."
        case _:
            status = (after or before).status.value
            return f"{target} is {status}: {applied} action(s) applied, {failed} failed; {left} finding(s) remain " \
                   "(see needs_attention)."


def _next_steps(target: str, result: Result, actions: list[ActionRecord], after: Report | None,
                before: Report) -> tuple[str, ...]:
    steps: list[str] = []
    at, _ = check_again_at(after or before)
    if result is Result.IN_PROGRESS:
        if any(a.action is FixAction.ROTATE and a.outcome is Outcome.IN_PROGRESS for a in actions):
            steps.append(f"GET /api/targets/{target}/rotation shows where the rotation stands.")
        if at is not None:
            steps.append(f"POST /api/targets/{target}/validate after {at}: Azure applies new role assignments "
                         "within minutes; nothing needs to be changed.")
        if any(a.outcome in (Outcome.IN_PROGRESS, Outcome.DEFERRED) for a in actions):
            steps.append(f"POST /api/targets/{target}/remediate again (the rotation timer also resumes the work).")
        if after is None:
            steps.append(f"POST /api/targets/{target}/validate for the target's current state.")
    elif result is Result.PLANNED:
        if any(a.outcome is Outcome.FAILED for a in actions):
            steps.append("Fix the failed step(s) of the plan first (see each action's fix), then run the dry run "
                         "again.")
        else:
            steps.append(f'POST /api/targets/{target}/remediate with {{"dry_run": false}} applies the plan.')
    elif result in (Result.PARTIALLY_FIXED, Result.NEEDS_ATTENTION):
        steps.append("Follow the remediation steps of each finding under needs_attention, then validate again.")
        if at is not None:
            steps.append(f"A role assignment is still propagating: validate again after {at}.")
    return tuple(steps)


async def run_remediation(fixers: Fixers, target: str, *, dry_run: bool, deadline_seconds: float,
                          clock: Callable[[], float] = time.monotonic) -> RemediationReport:
    """Validate, apply every planned fix in order (dependencies respected, each outcome recorded), validate
    again; all within `deadline_seconds`. On a dry run the fixers only describe what they would do."""
    budget = Deadline(deadline_seconds, clock)
    started_at = now_iso()
    reserve = 0.0 if dry_run else min(AFTER_RESERVE_SECONDS, deadline_seconds * 0.25)
    try:
        before = await _validate(fixers, target, budget, "first")
    except TimeoutError:
        raise ServiceError(f"Validating '{target}' did not finish within {deadline_seconds:.0f} s, so nothing was "
                           "changed.", reason="A service the checks call is slow or unresponsive.",
                           fix=f"POST /api/targets/{target}/validate to see which check is slow; then try again.",
                           target=target) from None

    plan = plan_fixes(before.findings)
    actions: list[ActionRecord] = []
    outcome_of: dict[FixAction, Outcome] = {}
    for fix in plan:
        blocking = [d for d in fix.depends_on if outcome_of.get(d) in _BLOCKING]
        if blocking:
            dep = blocking[0]
            record = ActionRecord(
                fix.action, Outcome.SKIPPED, fix.addresses,
                f"Not tried: it needs {dep.value}, which {outcome_of[dep].value.replace('_', ' ')}.",
                reason=f"{fix.action.value} depends on {dep.value} (a new secret's authorization probe fails while "
                       "the role is missing, which would leave a new credential unused).",
                fix=f"Fix {dep.value} first (see its action), then remediate again.")
            outcome_of[fix.action] = Outcome.FAILED  # anything depending on a skipped action is skipped too
        else:
            seconds = budget.remaining() - reserve
            if seconds < MIN_ACTION_SECONDS:
                record = ActionRecord(fix.action, Outcome.DEFERRED, fix.addresses,
                                      "Not started: this call's time budget ran out first.",
                                      reason=f"{max(seconds, 0):.0f} s left of {deadline_seconds:.0f} s.",
                                      fix=f"POST /api/targets/{target}/remediate again.")
            else:
                record = await _run_action(fixers, fix, target, dry_run=dry_run, seconds=seconds, clock=clock)
            outcome_of[fix.action] = record.outcome
        actions.append(record)
        logger.info("remediate %s: %s %s: %s", target, record.action.value, record.outcome.value, record.message)

    after: Report | None
    final_error: str | None = None
    changed = any(a.outcome in (Outcome.APPLIED, Outcome.FAILED, Outcome.IN_PROGRESS) for a in actions)
    if dry_run:
        after = None
    elif not changed:
        after = before  # nothing was touched: validating again would only repeat the same answer
    else:
        try:
            after = await _validate(fixers, target, budget, "final")
        except TimeoutError:
            after = None
        except Exception as exc:  # the actions happened: answer them rather than lose them to this error
            after = None
            code = exc.code if isinstance(exc, RemediatorError) else type(exc).__name__
            logger.error("remediate %s: the final validation failed (%s)", target, code)
            final_error = f"The final validation failed ({code}); POST /api/targets/{target}/validate to see the " \
                          "target's state now."

    result = _result(before, after, actions, dry_run=dry_run)
    if final_error is not None and result is Result.IN_PROGRESS and not any(
            a.outcome in (Outcome.IN_PROGRESS, Outcome.DEFERRED) for a in actions):
        # no work continues: the outcome is only unconfirmed, so say what was done, not "in progress"
        result = Result.PARTIALLY_FIXED if any(a.outcome is Outcome.APPLIED for a in actions) \
            else Result.NEEDS_ATTENTION
    next_steps = _next_steps(target, result, actions, after, before)
    if final_error is not None:
        next_steps = (final_error, *next_steps)
    report = RemediationReport(
        target=target, dry_run=dry_run, result=result, message=_message(target, result, before, after, actions),
        started_at=started_at, duration_ms=budget.elapsed_ms(), before=before, actions=tuple(actions), after=after,
        next_steps=next_steps,
    )
    level = logging.INFO if report.status is Status.HEALTHY or dry_run else logging.WARNING
    logger.log(level, "remediate %s: %s (before %s, after %s)", target, result.value, before.status.value,
               after.status.value if after else "unknown")
    return report
