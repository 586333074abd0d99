"""The diagnosis report: overall status, findings, advice, and every check that ran with its timing.

The JSON shape is a stable contract (see `schema.REPORT_SCHEMA` and docs/diagnosis.md). Nothing in a report is
ever a secret value: evidence carries ids, names, hints (Graph's public 3-character prefix) and Entra's own
error text, which the adapters scrub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..findings import Finding, Severity

SCHEMA_VERSION = "1"


class Status(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"

    @property
    def exit_code(self) -> int:
        return {Status.HEALTHY: 0, Status.DEGRADED: 1, Status.FAILING: 2}[self]


class CheckOutcome(StrEnum):
    PASSED = "passed"  # ran, found nothing wrong
    PROBLEMS = "problems"  # ran, reported findings
    SKIPPED = "skipped"  # not applicable to this target, or needs something another check could not get
    FAILED = "failed"  # raised an error: becomes a `check.failed` finding
    TIMED_OUT = "timed_out"  # exceeded its own time limit: becomes a `check.timed_out` finding


@dataclass(frozen=True)
class CheckRun:
    name: str
    description: str
    outcome: CheckOutcome
    started_ms: float  # offset from the start of the validation
    duration_ms: float
    findings: tuple[str, ...] = ()  # codes it reported
    note: str | None = None  # why it was skipped, or the error it raised

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "outcome": self.outcome.value,
            "started_ms": round(self.started_ms, 1),
            "duration_ms": round(self.duration_ms, 1),
            "findings": list(self.findings),
            "note": self.note,
        }


def overall_status(findings: list[Finding] | tuple[Finding, ...]) -> Status:
    severities = {f.severity for f in findings}
    if Severity.ERROR in severities:
        return Status.FAILING
    if Severity.WARNING in severities:
        return Status.DEGRADED
    return Status.HEALTHY


@dataclass(frozen=True)
class Report:
    target: str
    mode: str
    status: Status
    generated_at: str  # ISO 8601 UTC, when the validation started
    duration_ms: float
    findings: tuple[Finding, ...]
    advice: tuple[Finding, ...]
    checks: tuple[CheckRun, ...]
    # what the checks saw on the way (secret expiry, principal id, ...): for the target list and the sweep
    observations: dict[str, Any] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION
    http_status: int = field(default=200, repr=False)  # a broken credential is still a 200 report

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    def finding(self, code: str) -> Finding | None:
        return next((f for f in (*self.findings, *self.advice) if f.code == code), None)

    def to_dict(self) -> dict[str, Any]:
        counts = {s.value: 0 for s in Severity}
        for f in (*self.findings, *self.advice):
            counts[f.severity.value] += 1
        return {
            "schema_version": self.schema_version,
            "target": self.target,
            "mode": self.mode,
            "status": self.status.value,
            "generated_at": self.generated_at,
            "duration_ms": round(self.duration_ms, 1),
            "counts": counts,
            "findings": [f.to_dict() for f in self.findings],
            "advice": [f.to_dict() for f in self.advice],
            "checks": [c.to_dict() for c in self.checks],
            "observations": dict(self.observations),
        }
