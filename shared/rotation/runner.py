"""Entry points of the rotation: one target (HTTP, CLI), its status, and the timer's sweep over every target."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from .. import telemetry
from ..clock import Deadline
from ..config import Target
from ..context import AppContext
from ..errors import BadRequestError, RemediatorError
from .layout import MAX_SECRET_NAME, PENDING_SUFFIX, pending_name
from .model import Journal, RotationOutcome, RotationStatus
from .protocol import Progress, RotationRun
from .store import JournalStore, TargetLock

logger = logging.getLogger(__name__)

SWEEP_DEADLINE_SECONDS = 240.0  # per target in the timer; a longer wait resumes on the next schedule
DEADLINE_MARGIN_SECONDS = 5.0  # answer this long before the caller's deadline


def rotatable_target(ctx: AppContext, name: str) -> Target:
    """The target, checked before any cloud call: only service-principal targets with a secret rotate."""
    target = ctx.settings.target(name)
    problems = []
    if not target.uses_secret:
        problems.append("it uses CycleCloud's managed identity, which has no secret to rotate")
    if not target.app_id:
        problems.append("it has no app_id")
    if not target.secret_name:
        problems.append("it has no secret_name")
    elif len(pending_name(target.secret_name)) > MAX_SECRET_NAME:
        problems.append(f"secret_name is too long to add '{PENDING_SUFFIX}' (Key Vault allows {MAX_SECRET_NAME} "
                        "characters)")
    if target.cyclecloud is None:
        problems.append("it has no cyclecloud connection to push the new secret to")
    if problems:
        raise BadRequestError(f"Target '{name}' cannot be rotated: {'; '.join(problems)}.",
                              fix="Rotate only service_principal targets with app_id, secret_name and cyclecloud set.",
                              target=name)
    return target


def _store(ctx: AppContext) -> JournalStore:
    return JournalStore(ctx.clients.blob_service(), ctx.settings.storage.container)


@telemetry.traced("rotate", record=telemetry.record_rotation, record_error=telemetry.record_rotation_error)
async def rotate_target(ctx: AppContext, target_name: str, *, force: bool = False, dry_run: bool = False,
                        deadline_seconds: float = 200.0, on_progress: Progress | None = None,
                        requested_by: str | None = None) -> RotationOutcome:
    """Run (or resume) the target's rotation until it is done, must wait, or `deadline_seconds` is near.

    Returns the outcome: `http_status` 200 (done: rotated, not due, or failed with the reason) or 202 (in
    progress: the journal holds the stage and the next call resumes). Raises LockedError (409) while another
    caller rotates the target. `dry_run` reads only and returns the plan. `requested_by` (who asked: a caller's
    identity, "timer", the CLI's user) is recorded in the operation it starts."""
    target = rotatable_target(ctx, target_name)
    if dry_run:
        return await plan_rotation(ctx, target, force=force)
    deadline = Deadline(max(1.0, deadline_seconds - DEADLINE_MARGIN_SECONDS))
    store = _store(ctx)
    lock = TargetLock(store, target.name)
    await lock.acquire()
    run = RotationRun(ctx, target, store, lock, deadline, on_progress, requested_by)
    try:
        async with asyncio.timeout(deadline.remaining()):
            outcome = await run.execute(force=force)
    except TimeoutError:
        run.note("deadline reached; the journal keeps the stage for the next call")
        outcome = run.outcome(RotationStatus.IN_PROGRESS,
                              "The rotation did not finish within this call's time limit; call again (or wait "
                              "for the timer) and it resumes where it stopped.")
    finally:
        await lock.release()
    logger.info("rotation of %s: %s (stage %s, operation %s)", target.name, outcome.status.value,
                outcome.stage.value if outcome.stage else "-", outcome.operation_id or "-")
    return outcome


async def plan_rotation(ctx: AppContext, target: Target, *, force: bool) -> RotationOutcome:
    """Dry run: what a real run would do now, decided by the same steps (`RotationRun.plan`). Reads only."""
    run = RotationRun(ctx, target, _store(ctx), None, Deadline(60))
    plan = await run.plan(force=force)
    return plan.outcome(run.findings, run.warnings)


@dataclass
class RotationState:
    """GET /api/targets/{t}/rotation: the journal, secret-free."""

    target: str
    journal: Journal
    locked: bool

    http_status = 200

    def to_dict(self) -> dict[str, Any]:
        data = self.journal.to_dict()
        data.pop("schema", None)
        current = data.get("current")
        return {
            "target": self.target,
            "inProgress": current is not None,
            "locked": self.locked,
            "current": current,
            "pendingRetirements": data["retirements"],
            "adoptedKeyId": data["adopted_key_id"],
            "history": data["history"],
            "events": data["events"],
        }


async def rotation_status(ctx: AppContext, name: str) -> RotationState:
    """The journal and whether a run holds the lock. Reads only: never creates the state container."""
    target = rotatable_target(ctx, name)
    store = _store(ctx)
    vj = await store.read(target.name)
    return RotationState(target.name, vj.journal, await store.is_locked(target.name))


@dataclass
class SweepResult:
    """The timer's result; `summary()` is what the timer logs."""

    outcomes: dict[str, dict[str, Any]]
    errors: dict[str, dict[str, Any]]
    skipped: dict[str, str]

    def summary(self) -> str:
        parts = [f"{n}={o['status']}" for n, o in sorted(self.outcomes.items())]
        parts += [f"{n}=error({e.get('code')})" for n, e in sorted(self.errors.items())]
        parts += [f"{n}=skipped" for n in sorted(self.skipped)]
        return ", ".join(parts) or "no targets"

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "outcomes": self.outcomes, "errors": self.errors, "skipped": self.skipped}


async def rotate_all_due(ctx: AppContext, *, deadline_seconds: float = SWEEP_DEADLINE_SECONDS) -> SweepResult:
    """Every target, at most `settings.max_concurrency` at a time; each outcome recorded; one failure never
    stops the others."""
    result = SweepResult({}, {}, {})
    gate = asyncio.Semaphore(ctx.settings.max_concurrency)

    async def one(target: Target) -> None:
        if not target.uses_secret:
            result.skipped[target.name] = "managed identity: no secret to rotate"
            return
        async with gate:
            try:
                outcome = await rotate_target(ctx, target.name, deadline_seconds=deadline_seconds,
                                              requested_by="timer")
                result.outcomes[target.name] = outcome.to_dict()
            except RemediatorError as exc:
                logger.warning("rotation of %s failed: %s", target.name, exc.code)
                result.errors[target.name] = exc.to_dict()
            except Exception:
                logger.exception("rotation of %s failed unexpectedly", target.name)
                result.errors[target.name] = {"code": "internal_error", "message": "unexpected failure; see logs"}

    await asyncio.gather(*(one(t) for t in ctx.settings.targets))
    return result


__all__ = ["RotationState", "SweepResult", "plan_rotation", "rotate_all_due", "rotate_target",
           "rotation_status"]
