"""The hourly health sweep (`check_credential_health`) and the target list (`GET /api/targets`).

The sweep validates every target with bounded concurrency, records each one's status as a small JSON blob
(`health/<target>.json` in the state container) and logs an ERROR record, with structured fields for alerts,
for every target that is failing. One target's failure (or a failure to record it) never stops the others.
The list reads those records, so it is fast and needs no call to Entra or CycleCloud.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import clock, telemetry
from ..config import Target
from ..errors import RemediatorError
from ..redaction import scrub
from .report import Report, Status
from .validate import diagnose

if TYPE_CHECKING:
    from ..context import AppContext

logger = logging.getLogger(__name__)

HEALTH_PREFIX = "health/"


def health_blob(target: str) -> str:
    return f"{HEALTH_PREFIX}{target}.json"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return clock.from_iso(value)
    except ValueError:
        return None


def health_record(report: Report) -> dict[str, Any]:
    """What the sweep keeps per target: status, codes, and the expiry it observed (no secret, no evidence)."""
    return {
        "schema": 1,
        "target": report.target,
        "mode": report.mode,
        "status": report.status.value,
        "checked_at": report.generated_at,
        "findings": report.codes,
        "secret_expires_on": report.observations.get("secret_expires_on"),
        "secret_key_id": report.observations.get("secret_key_id"),
    }


# -- storage -------------------------------------------------------------------------------------------------


async def save_health(ctx: AppContext, report: Report) -> None:
    """Write the record: one request per health check (the container is created only when the write finds it
    missing)."""
    from ..state_container import STORAGE_ERRORS, state_container, storage_error

    name, body = health_blob(report.target), json.dumps(health_record(report)).encode("utf-8")
    try:
        state = state_container(ctx)
        blob = state.blob(name)
        await state.creating(lambda: blob.upload_blob(body, overwrite=True))
    except STORAGE_ERRORS as exc:
        raise storage_error(exc, "write the health record") from None


async def load_health(ctx: AppContext, target: str) -> dict[str, Any] | None:
    """The target's last health record; None when there is none (reading never creates the container)."""
    from ..state_container import state_container

    found = await state_container(ctx).read_json(health_blob(target), "read the health record")
    return found.data if found is not None and isinstance(found.data, dict) else None


# -- the sweep -----------------------------------------------------------------------------------------------


@dataclass
class TargetHealth:
    target: str
    status: str  # healthy | degraded | failing | error (the validation itself could not run)
    findings: list[str] = field(default_factory=list)
    recorded: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "status": self.status, "findings": self.findings, "recorded": self.recorded,
                "error": self.error}


@dataclass
class HealthSweep:
    results: list[TargetHealth]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for result in self.results:
            out[result.status] = out.get(result.status, 0) + 1
        return out

    def summary(self) -> str:
        if not self.results:
            return "no targets configured"
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.counts().items()))
        failing = [r.target for r in self.results if r.status in (Status.FAILING.value, "error")]
        return f"{len(self.results)} target(s): {counts}" + (f"; failing: {', '.join(failing)}" if failing else "")

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "counts": self.counts(), "targets": [r.to_dict() for r in self.results]}


async def _check_one(ctx: AppContext, target: Target, limit: asyncio.Semaphore) -> TargetHealth:
    async with limit:
        with telemetry.span("validate", target=target.name, trigger="health") as span:
            result = await _check_and_record(ctx, target)
            span.set(outcome=result.status, findingCodes=result.findings)
    if getattr(ctx.settings, "notify_webhook_url", None):
        from ..notify import notify_health

        await notify_health(ctx, target.name, result.status, result.findings)
    return result


async def _check_and_record(ctx: AppContext, target: Target) -> TargetHealth:
    try:
        report = await diagnose(ctx, target)
    except Exception as exc:  # one target's failure never stops the sweep
        message = scrub(exc.message if isinstance(exc, RemediatorError) else f"{type(exc).__name__}: {exc}")
        code = exc.code if isinstance(exc, RemediatorError) else type(exc).__name__
        logger.error("credential health check of target %s could not run: %s", target.name, message,
                     extra={"target": target.name, "health_status": "error", "code": code})
        telemetry.health_events(target.name, "error", [], mode=target.mode.value, error=code)
        return TargetHealth(target.name, "error", error=message)
    result = TargetHealth(target.name, report.status.value, report.codes)
    try:
        await save_health(ctx, report)
        result.recorded = True
    except Exception as exc:  # recording is best effort: the log record below still raises the alarm
        result.error = f"could not record the status: {scrub(str(exc)).splitlines()[0] if str(exc) else exc}"
        logger.warning("could not record the health of target %s: %s", target.name, result.error)
    # flat fields (the OpenTelemetry log handler exports each `extra` key as one attribute)
    fields = {"target": target.name, "health_status": report.status.value, "finding_codes": ",".join(report.codes)}
    if report.status is Status.FAILING:
        logger.error("target %s is failing: %s", target.name, ", ".join(report.codes), extra=fields)
    elif report.status is Status.DEGRADED:
        logger.warning("target %s is degraded: %s", target.name, ", ".join(report.codes), extra=fields)
    else:
        logger.info("target %s is healthy", target.name)
    telemetry.health_events(target.name, report.status.value, [(f.code, f.severity.value) for f in report.findings],
                            mode=report.mode, expires_on=report.observations.get("secret_expires_on"))
    return result


async def check_target_health(ctx: AppContext, target: Target) -> TargetHealth:
    """One target's health check, recorded and alerted as the sweep does it (the timer's fan-out: one queue
    message per target, shared/fanout.py)."""
    return await _check_one(ctx, target, asyncio.Semaphore(1))


async def check_all_targets(ctx: AppContext) -> HealthSweep:
    """The health timer: validate every target (bounded concurrency), record and alert."""
    limit = asyncio.Semaphore(max(1, ctx.settings.max_concurrency))
    results = await asyncio.gather(*(_check_one(ctx, t, limit) for t in ctx.settings.targets))
    sweep = HealthSweep(list(results))
    if any(r.status in (Status.FAILING.value, "error") for r in results):
        logger.error("credential health: %s", sweep.summary())
    return sweep


# -- the list ----------------------------------------------------------------------------------------------


@dataclass
class TargetList:
    targets: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"targets": self.targets}


LAST_ROTATION_FIELDS = ("id", "finished_at", "result", "new_key_id", "new_end", "reason", "push_confirmed")
OPEN_OPERATION_FIELDS = ("id", "stage", "started_at", "updated_at", "reason", "attempts", "last_error",
                         "requested_by")


@dataclass
class RotationView:
    """The journal's answer for the list: the last finished rotation, the open one and where it stands, and the
    operations whose push CycleCloud could not confirm (secret-free)."""

    last: dict[str, Any] | None = None
    open: dict[str, Any] | None = None
    unconfirmed: list[str] = field(default_factory=list)


async def _rotation_view(ctx: AppContext, target: Target) -> RotationView:
    from ..rotation.store import JournalStore

    if not target.uses_secret:
        return RotationView()
    try:
        journal = (await JournalStore(ctx.clients.blob_service(), ctx.settings.storage.container)
                   .read(target.name)).journal
    except Exception as exc:  # no storage or no journal yet: the list still answers
        logger.info("no rotation journal for %s: %s", target.name, type(exc).__name__)
        return RotationView()
    view = RotationView()
    if journal.history:
        view.last = {key: journal.history[0].get(key) for key in LAST_ROTATION_FIELDS}
    if journal.current is not None:
        current = journal.current.to_dict()
        view.open = {key: current.get(key) for key in OPEN_OPERATION_FIELDS}
    operations = ([journal.current.to_dict()] if journal.current else []) + list(journal.history)
    view.unconfirmed = [str(op.get("id")) for op in operations if op.get("push_confirmed") is False]
    return view


async def _vault_expiry(ctx: AppContext, target: Target) -> datetime | None:
    """Before the first health check: the expiry the product writes on the secret's newest enabled version."""
    from ..adapters.vault import VaultAdapter

    if not target.secret_name:
        return None
    try:
        versions = await VaultAdapter(ctx.clients).list_versions(target.secret_name)
    except Exception as exc:  # best effort: the list answers without it
        logger.info("could not list the versions of %s: %s", target.secret_name, type(exc).__name__)
        return None
    enabled = [v for v in versions if v.enabled and v.created_on is not None]
    if not enabled:
        return None
    return max(enabled, key=lambda v: v.created_on or clock.now()).expires_on


async def _target_status(ctx: AppContext, target: Target, now: datetime) -> dict[str, Any]:
    record: dict[str, Any] | None
    try:
        record = await load_health(ctx, target.name)
    except Exception as exc:  # storage unavailable: report what is known (nothing) rather than fail the list
        logger.info("could not read the health record of %s: %s", target.name, type(exc).__name__)
        record = None
    expires = _parse_time(record.get("secret_expires_on")) if record else None
    if expires is None:
        expires = await _vault_expiry(ctx, target)
    rotation = await _rotation_view(ctx, target)
    return {
        "name": target.name,
        "mode": target.mode.value,
        "status": record.get("status") if record else None,
        "checked_at": record.get("checked_at") if record else None,
        "days_to_expiry": round((expires - now).total_seconds() / 86400, 1) if expires else None,
        "secret_expires_on": expires.strftime("%Y-%m-%dT%H:%M:%SZ") if expires else None,
        "last_rotation": rotation.last,
        "open_operation": rotation.open,
        "unconfirmed_pushes": rotation.unconfirmed,
        "findings": list(record.get("findings", [])) if record else [],
    }


async def list_targets(ctx: AppContext) -> TargetList:
    """GET /api/targets and `python -m shared targets`: every configured target with its last known status and
    health check time, days to expiry, last rotation and its outcome, the open operation and its stage, and
    unconfirmed pushes. Reads only the state container (and Key Vault before the first check)."""
    now = clock.now()
    return TargetList(list(await asyncio.gather(*(_target_status(ctx, t, now) for t in ctx.settings.targets))))
