"""The remediation's domain types: a planned fix, what became of it, and the one report a remediate call returns.

Plain data, never a secret value: actions carry finding codes, ids, Key Vault versions, 3-character hints and
the secret-free results of the modules that did the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..diagnosis.report import Report, Status
from ..findings import Finding, FixAction


class Outcome(StrEnum):
    """What became of one action."""

    APPLIED = "applied"  # changed something, and the module that did it verified the change
    NOTHING_TO_DO = "nothing_to_do"  # ran and found nothing to change (never reported as a fix)
    FAILED = "failed"  # tried and refused or errored; `reason` and `fix` say why and what a person does
    SKIPPED = "skipped"  # not tried: an action it depends on failed, or there was nothing to do
    IN_PROGRESS = "in_progress"  # started and resumable (a rotation waiting for propagation); call again
    DEFERRED = "deferred"  # not started: the time budget ran out first; call again
    PLANNED = "planned"  # dry run: what would be done


class Result(StrEnum):
    """The remediate call as a whole."""

    HEALTHY = "healthy"  # nothing was wrong
    FIXED = "fixed"  # every fix applied and the target validates healthy
    PARTIALLY_FIXED = "partially_fixed"  # something was fixed, something still needs a person or a retry
    NEEDS_ATTENTION = "needs_attention"  # nothing could be fixed automatically; see `needs_attention`
    IN_PROGRESS = "in_progress"  # work continues after this call (202): a rotation, or a role still propagating
    PLANNED = "planned"  # dry run


@dataclass(frozen=True)
class PlannedFix:
    """One action the plan will take, the findings it addresses, and what it needs to have succeeded first."""

    action: FixAction
    addresses: tuple[str, ...]  # finding codes
    why: str
    depends_on: tuple[FixAction, ...] = ()


@dataclass(frozen=True)
class FixResult:
    """What a fixer returns (the engine adds the action, the findings addressed and the timing)."""

    outcome: Outcome
    message: str
    reason: str = ""
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionRecord:
    action: FixAction
    outcome: Outcome
    addresses: tuple[str, ...]
    message: str
    reason: str = ""
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "outcome": self.outcome.value,
            "addresses": list(self.addresses),
            "message": self.message,
            "reason": self.reason or None,
            "fix": self.fix or None,
            "details": self.details,
            "duration_ms": round(self.duration_ms, 1),
        }


# Findings that settle on their own (Azure applying a new role assignment): while one is open the target is not
# healthy, and nothing needs doing but to check again after the time in its evidence.
SETTLING_CODES = frozenset({"role.propagating"})


def _leftover(report: Report) -> tuple[Finding, ...]:
    return tuple(report.findings)


def settling(report: Report | None) -> list[Finding]:
    return [f for f in report.findings if f.code in SETTLING_CODES] if report is not None else []


def check_again_at(report: Report | None) -> tuple[str | None, int | None]:
    """When a settling finding says to look again: (ISO time, seconds from now), the latest of them."""
    times = [(str(f.evidence.get("check_again_at")), int(f.evidence.get("retry_after_seconds") or 0))
             for f in settling(report) if f.evidence.get("check_again_at")]
    if not times:
        return None, None
    return max(times)


@dataclass(frozen=True)
class RemediationReport:
    """Before, the actions taken (each with its outcome), after. `after` is None on a dry run, and when the
    time budget ran out before the final validation (then `next` says what to call)."""

    target: str
    dry_run: bool
    result: Result
    message: str
    started_at: str
    duration_ms: float
    before: Report
    actions: tuple[ActionRecord, ...]
    after: Report | None
    next_steps: tuple[str, ...] = ()

    @property
    def status(self) -> Status:
        """The target's status as this call leaves it (before, for a dry run or a missing after report)."""
        return (self.after or self.before).status

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    @property
    def http_status(self) -> int:
        return 202 if self.result is Result.IN_PROGRESS else 200

    @property
    def needs_attention(self) -> tuple[Finding, ...]:
        """What is still wrong after this call (on a dry run: what the plan would not fix), with its steps."""
        if self.dry_run or self.after is None:
            planned = {code for a in self.actions if a.outcome is Outcome.PLANNED for code in a.addresses}
            return tuple(f for f in self.before.findings if f.code not in planned)
        return _leftover(self.after)

    def action(self, kind: FixAction) -> ActionRecord | None:
        return next((a for a in self.actions if a.action is kind), None)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "target": self.target,
            "dry_run": self.dry_run,
            "result": self.result.value,
            "status": self.status.value,
            "message": self.message,
            "started_at": self.started_at,
            "duration_ms": round(self.duration_ms, 1),
            "before": self.before.to_dict(),
            "actions": [a.to_dict() for a in self.actions],
            "after": self.after.to_dict() if self.after else None,
            "needs_attention": [f.to_dict() for f in self.needs_attention],
            "next": list(self.next_steps),
        }
        if self.result is Result.IN_PROGRESS:
            rotating = any(a.action is FixAction.ROTATE and a.outcome in (Outcome.IN_PROGRESS, Outcome.DEFERRED)
                           for a in self.actions)
            at, seconds = check_again_at(self.after or self.before)
            if rotating or at is None:
                body["statusUrl"] = f"/api/targets/{self.target}/rotation"
            else:
                # nothing runs in the background: Azure is applying a role assignment; validate again then
                body["statusUrl"] = f"/api/targets/{self.target}/validate"
                body["checkAgainAt"] = at
            if seconds:
                body["retryAfterSeconds"] = seconds
        return body
