"""`python -m shared remediate <target> [--dry-run] [--json] [--timeout SECONDS]`: validate, fix what can be
fixed safely, validate again; print before, the actions and after.

Exit code: the target's status afterwards (on a dry run: as it is now): 0 healthy, 1 degraded, 2 failing. When
work continues after the call (a rotation waiting for propagation) the output says so; run the command again.
"""

from __future__ import annotations

import argparse

from ..context import AppContext
from ..diagnosis.report import Report
from ..findings import Finding, FixAction
from ..remediation import Outcome, RemediationReport, Result, remediate_target
from ..remediation.model import SETTLING_CODES, check_again_at
from .output import FAIL, OK, SKIP, WARN, emit, emit_json, progress

DEFAULT_TIMEOUT_SECONDS = 600.0  # a person at a terminal can wait longer than the 230-s HTTP limit

_OUTCOME_MARK = {Outcome.APPLIED: OK, Outcome.NOTHING_TO_DO: SKIP, Outcome.FAILED: FAIL, Outcome.SKIPPED: SKIP,
                 Outcome.IN_PROGRESS: WARN, Outcome.DEFERRED: WARN, Outcome.PLANNED: "→"}
_OUTCOME_TEXT = {Outcome.NOTHING_TO_DO: "nothing to do"}
_SEVERITY_MARK = {"error": FAIL, "warning": WARN, "info": "i"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="the target's name (see `python -m shared config check`)")
    parser.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (the HTTP response body)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, metavar="SECONDS",
                        help=f"time budget for the whole call (default {DEFAULT_TIMEOUT_SECONDS:.0f}); a rotation "
                             "still waiting then resumes on the next run")


def _finding_line(finding: Finding) -> str:
    if finding.code in SETTLING_CODES:
        fixable = f"  [settles on its own: check again after {finding.evidence.get('check_again_at', 'a minute')}]"
    elif finding.fix_action:
        fixable = f"  [remediate: {finding.fix_action.value}]"
    else:
        fixable = "  [needs a person]"
    return f"  {_SEVERITY_MARK.get(finding.severity.value, '?')} {finding.code}: {finding.title}{fixable}"


def _report_block(title: str, report: Report) -> None:
    emit(f"{title}: {report.target} is {report.status.value.upper()} ({len(report.findings)} finding(s))")
    for finding in report.findings:
        emit(_finding_line(finding))
        emit(f"      {finding.detail}")


def render(report: RemediationReport) -> None:
    _report_block("Before", report.before)
    emit()
    _render_actions(report)
    emit()
    if report.after is not None and not report.dry_run:
        _report_block("After", report.after)
        emit()
    _render_open(report)
    emit(report.message)
    _render_next(report)


def _render_actions(report: RemediationReport) -> None:
    emit("Dry run: the plan (nothing is changed)" if report.dry_run else "Actions")
    if not report.actions:
        emit("  (none: nothing to fix)" if not report.before.findings else "  (none: nothing remediate can fix)")
    for action in report.actions:
        outcome = _OUTCOME_TEXT.get(action.outcome, action.outcome.value)
        emit(f"  {_OUTCOME_MARK[action.outcome]} {action.action.value} [{outcome}] for "
             f"{', '.join(action.addresses)}")
        emit(f"      {action.message}")
        if action.reason:
            emit(f"      why: {action.reason}")
        if action.fix and action.outcome is not Outcome.APPLIED:
            emit(f"      fix: {action.fix}")


def _render_open(report: RemediationReport) -> None:
    """The findings a person must fix, each with its steps (a propagating role settles by itself: not listed)."""
    left = [f for f in report.needs_attention if f.code not in SETTLING_CODES]
    if not left:
        return
    emit("Needs a person" if report.dry_run or report.after is not None else "Still open")
    for finding in left:
        emit(_finding_line(finding))
        for number, step in enumerate(finding.steps, 1):
            emit(f"      {number}. {step.action}")
            emit(f"         portal: {step.portal}")
            emit(f"         cli:    {step.cli}")
    emit()


def _render_next(report: RemediationReport) -> None:
    """The one next command, when there is one."""
    at, _ = check_again_at(report.after or report.before)
    rotating = any(a.action is FixAction.ROTATE and a.outcome in (Outcome.IN_PROGRESS, Outcome.DEFERRED)
                   for a in report.actions)
    if report.result is Result.IN_PROGRESS and rotating:
        emit(f"Work continues: `python -m shared rotate {report.target}` shows and resumes the rotation; run "
             f"`python -m shared remediate {report.target}` again to finish.")
    elif report.result is Result.IN_PROGRESS and at is not None:
        emit(f"Not healthy yet: Azure is still applying the role assignment. Run `python -m shared validate "
             f"{report.target}` after {at}; nothing else needs to be done.")
    elif report.result is Result.IN_PROGRESS:
        emit(f"Work continues: run `python -m shared remediate {report.target}` again to finish.")
    elif report.result is Result.PLANNED:
        failed = [a.action.value for a in report.actions if a.outcome is Outcome.FAILED]
        if failed:
            emit(f"Do not apply it yet: {', '.join(failed)} already fails in the dry run; fix that first (see its "
                 f"fix), then run `python -m shared remediate {report.target} --dry-run` again.")
        else:
            emit(f"Apply it: python -m shared remediate {report.target}")


async def run(args: argparse.Namespace) -> int:
    async with AppContext.from_environment() as ctx:
        if not args.json:
            progress(f"{'planning' if args.dry_run else 'remediating'} {args.target} (validate, fix, validate "
                     "again)...")
        report = await remediate_target(ctx, args.target, dry_run=args.dry_run, deadline_seconds=args.timeout)
    if args.json:
        emit_json(report.to_dict())
    else:
        render(report)
    return report.exit_code
