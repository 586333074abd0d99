"""One-call remediation: validate -> fix what can be fixed safely, in order -> validate again (docs/remediation.md).

    report = await remediate_target(ctx, "hpc-prod", dry_run=False, deadline_seconds=200)
    report.to_dict(); report.http_status  # 200 done, 202 work continues (see report.next_steps)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import telemetry
from ..context import AppContext
from ..diagnosis.health import HealthSweep
from ..diagnosis.report import Status
from ..errors import RemediatorError
from .engine import run_remediation
from .fixers import ProductFixers
from .model import ActionRecord, FixResult, Outcome, PlannedFix, RemediationReport, Result

logger = logging.getLogger(__name__)

SWEEP_DEADLINE_SECONDS = 240.0  # per target when the health timer remediates (AUTO_REMEDIATE)


@telemetry.traced("remediate", record=telemetry.record_remediation)  # span; RemediationApplied events
async def remediate_target(ctx: AppContext, target_name: str, *, dry_run: bool,
                           deadline_seconds: float) -> RemediationReport:
    """POST /api/targets/{target}/remediate and `python -m shared remediate`. Only the configured target is
    touched, and only in the ways its findings call for: nothing in a request names a principal, role or scope.
    Unknown target -> TargetNotFoundError (before any cloud call)."""
    ctx.settings.target(target_name)
    return await run_remediation(ProductFixers(ctx), target_name, dry_run=dry_run, deadline_seconds=deadline_seconds)


@dataclass
class RemediationSweep:
    """AUTO_REMEDIATE's result: each target's outcome, one failure never stopping the others."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{name}={r['result']}->{r['status']}" for name, r in sorted(self.results.items())]
        parts += [f"{name}=error({e.get('code')})" for name, e in sorted(self.errors.items())]
        return ", ".join(parts) or "nothing to remediate"

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "results": self.results, "errors": self.errors}


async def remediate_targets(ctx: AppContext, names: Iterable[str], *,
                            deadline_seconds: float = SWEEP_DEADLINE_SECONDS) -> RemediationSweep:
    """Remediate each named target, at most `settings.max_concurrency` at a time; every outcome is logged."""
    sweep = RemediationSweep()
    gate = asyncio.Semaphore(max(1, ctx.settings.max_concurrency))

    async def one(name: str) -> None:
        async with gate:
            try:
                report = await remediate_target(ctx, name, dry_run=False, deadline_seconds=deadline_seconds)
            except RemediatorError as exc:
                logger.error("auto-remediation of %s failed: %s (%s)", name, exc.code, exc.message)
                sweep.errors[name] = exc.to_dict()
                return
            except Exception as exc:  # one target's failure never stops the others
                logger.exception("auto-remediation of %s failed unexpectedly (%s)", name, type(exc).__name__)
                sweep.errors[name] = {"code": "internal_error", "message": "unexpected failure; see the logs"}
                return
        sweep.results[name] = {"result": report.result.value, "status": report.status.value,
                               "actions": {a.action.value: a.outcome.value for a in report.actions}}
        log = logger.info if report.status.value == "healthy" else logger.warning
        log("auto-remediation of %s: %s; now %s (%s)", name, report.result.value, report.status.value,
            ", ".join(f"{a.action.value}={a.outcome.value}" for a in report.actions) or "no actions")

    await asyncio.gather(*(one(name) for name in dict.fromkeys(names)))
    return sweep


async def remediate_unhealthy(ctx: AppContext, health: HealthSweep) -> RemediationSweep:
    """AUTO_REMEDIATE: after the health sweep, remediate every failing or degraded target (not those whose
    validation could not run: there is nothing to act on)."""
    names = [r.target for r in health.results if r.status in (Status.FAILING.value, Status.DEGRADED.value)]
    return await remediate_targets(ctx, names)


__all__ = [
    "ActionRecord",
    "FixResult",
    "Outcome",
    "PlannedFix",
    "RemediationReport",
    "RemediationSweep",
    "Result",
    "remediate_target",
    "remediate_targets",
    "remediate_unhealthy",
]
