"""The timers' fan-out: instead of sweeping every target in one invocation (which a fleet with real Entra
propagation waits cannot finish inside the host's 10-minute functionTimeout, and which runs on one instance), a
timer queues one message per target and returns; the queue trigger processes one target per message, so the
Functions host spreads the work over instances (host.json batchSize/newBatchThreshold per instance, Bicep
maximumInstanceCount across them; shared/limits.py bounds each service per process).

Both kinds go through the HTTP API's machinery (shared/operations): one queue (CONTINUATION_QUEUE), one queue
client, one poison queue, one list of poisoned messages (GET /api/health).
- A due rotation IS a long operation: the timer records an operation (requested by "timer") and queues its
  first continuation, exactly as a 202 does; `resume_operation` runs it under the target's lease, queues the
  next continuation while Entra propagates, and records poison. A target whose rotation already runs (an HTTP
  call's operation) is not queued twice.
- A health check is one short message ({"v": 1, "kind": "health", "target", "sweep"}): validate, record,
  alert, and (AUTO_REMEDIATE) remediate that target. A poisoned one leaves a marker that /api/health lists."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .clock import now_iso
from .context import AppContext
from .errors import RemediatorError
from .http_request import log_safe
from .operations.model import (
    MAX_DEQUEUE_COUNT,
    ContinuationMessage,
    OperationKind,
    OperationRecord,
    OperationState,
    new_operation_id,
)
from .operations.queue import ContinuationQueue
from .operations.store import OperationStore

if TYPE_CHECKING:
    from .config import Target

logger = logging.getLogger(__name__)

HEALTH_KIND = "health"
ENQUEUE_CONCURRENCY = 16  # storage calls in flight while a timer queues a fleet (cheap, but not unbounded)


@dataclass(frozen=True)
class HealthCheckMessage:
    """One target's health check, queued by the health timer."""

    target: str
    sweep: str  # the timer invocation that queued it (correlates a sweep's messages in the logs)

    def to_json(self) -> str:
        return json.dumps({"v": 1, "kind": HEALTH_KIND, "target": self.target, "sweep": self.sweep})

    @classmethod
    def parse(cls, text: str) -> HealthCheckMessage | None:
        """None for anything that is not a health-check message (a continuation, or not ours)."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if not (isinstance(data, dict) and data.get("v") == 1 and data.get("kind") == HEALTH_KIND):
            return None
        target, sweep = data.get("target"), data.get("sweep")
        if not (isinstance(target, str) and target and isinstance(sweep, str)):
            return None
        return cls(target, sweep)


def is_health_check(text: str) -> bool:
    return HealthCheckMessage.parse(text) is not None


@dataclass
class FanOut:
    """What a timer queued; `summary()` is what it logs."""

    queued: list[str] = field(default_factory=list)
    already_running: dict[str, str] = field(default_factory=dict)  # target -> the operation that continues it
    skipped: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # target -> error code (the next schedule tries again)

    def summary(self) -> str:
        parts = [f"{len(self.queued)} queued"]
        if self.already_running:
            parts.append(f"{len(self.already_running)} already running")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        if self.errors:
            parts.append(f"{len(self.errors)} not queued ({', '.join(sorted(self.errors))})")
        return ", ".join(parts)


def spread(targets: Sequence[Target]) -> list[Target]:
    """The targets in queue order: round-robin over their CycleCloud servers (configuration order within one).
    An instance takes a batch of neighbouring messages at once and holds only its share of each server's limit
    (shared/limits.py), so a batch of one server's targets would wait on that small share while the other
    instances' shares sit idle; neighbours on different servers run side by side."""
    groups: dict[str, list[Target]] = {}
    for target in targets:
        server = urlsplit(target.cyclecloud.url).netloc.lower() if target.cyclecloud else ""
        groups.setdefault(server, []).append(target)
    return [t for turn in itertools.zip_longest(*groups.values()) for t in turn if t is not None]


def _store(ctx: AppContext) -> OperationStore:
    return OperationStore(ctx.clients.blob_service(), ctx.settings.storage.container)


def _queue(ctx: AppContext) -> ContinuationQueue:
    return ContinuationQueue(ctx.clients.continuation_queue())


async def _bounded(items: list[Any], work: Any) -> None:
    gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def one(item: Any) -> None:
        async with gate:
            await work(item)

    await asyncio.gather(*(one(item) for item in items))


async def enqueue_due_rotations(ctx: AppContext) -> FanOut:
    """The rotation timer: one operation and its first continuation per secret target (the worker decides
    whether it is due: a target that is not answers not_due at once and its operation succeeds)."""
    result = FanOut()
    store, queue = _store(ctx), _queue(ctx)
    targets = []
    for target in spread(ctx.settings.targets):
        if target.uses_secret:
            targets.append(target.name)
        else:
            result.skipped[target.name] = "managed identity: no secret to rotate"

    async def one(name: str) -> None:
        now = now_iso()
        record = OperationRecord(id=new_operation_id(), kind=OperationKind.ROTATE, target=name,
                                 state=OperationState.RUNNING, created_at=now, updated_at=now, requested_by="timer",
                                 options={"force": False}, attempt=1, next_attempt_at=now).note("queued by the timer")
        try:
            running = await store.claim_active(record)
            if running is not None:
                result.already_running[name] = running
                return
            created = await store.create(record)
            try:
                await queue.send(ContinuationMessage(record.id, OperationKind.ROTATE, name, 1), 0)
            except RemediatorError as exc:  # say so in the record rather than leave it "running"
                failed = replace(record, state=OperationState.FAILED, error=exc.to_dict(), next_attempt_at=None)
                await store.write(created, failed.note("not queued", state=OperationState.FAILED.value))
                raise
        except RemediatorError as exc:
            logger.error("rotation of %s not queued: %s (%s)", name, exc.code, exc.message,
                         extra={"target": name, "code": exc.code})
            result.errors[name] = exc.code
            return
        result.queued.append(name)

    await _bounded(targets, one)
    return result


async def enqueue_health_checks(ctx: AppContext) -> FanOut:
    """The health timer: one health-check message per target."""
    result = FanOut()
    queue = _queue(ctx)
    sweep = uuid.uuid4().hex

    async def one(name: str) -> None:
        try:
            await queue.send_text(HealthCheckMessage(name, sweep).to_json(), 0)
        except RemediatorError as exc:
            logger.error("health check of %s not queued: %s (%s)", name, exc.code, exc.message,
                         extra={"target": name, "code": exc.code})
            result.errors[name] = exc.code
            return
        result.queued.append(name)

    await _bounded([t.name for t in spread(ctx.settings.targets)], one)
    logger.info("health sweep %s: %s", sweep, result.summary())
    return result


async def run_health_check(ctx: AppContext, text: str) -> None:
    """The queue trigger's body for a health-check message: check, record and alert one target, then remediate
    it when AUTO_REMEDIATE is on and it is failing or degraded. A check that cannot run is recorded as
    "error" by the check itself (no redelivery: a retry minutes later is the next schedule's job)."""
    from .diagnosis.health import check_target_health

    message = HealthCheckMessage.parse(text)
    if message is None:
        logger.error("queue message is not a health check of this app; dropped")
        return
    target = next((t for t in ctx.settings.targets if t.name == message.target), None)
    if target is None:  # removed from the configuration since the timer ran
        logger.warning("health check for %s dropped: no such target any more", log_safe(message.target, 64))
        return
    result = await check_target_health(ctx, target)
    logger.info("credential health of %s: %s", target.name, result.status,
                extra={"target": target.name, "sweep": message.sweep})
    if ctx.settings.auto_remediate and result.status in ("failing", "degraded"):
        from .remediation import remediate_targets

        remediation = await remediate_targets(ctx, [target.name])
        logger.info("auto-remediation: %s", remediation.summary())


async def record_poisoned_health_check(ctx: AppContext, text: str, *, message_id: str | None) -> None:
    """A health-check message the host moved to the poison queue (five deliveries without an answer): a marker
    that GET /api/health lists, next to poisoned operations."""
    message = HealthCheckMessage.parse(text)
    if message is None:
        logger.error("poisoned message %s is not a health check of this app; dropped", log_safe(message_id or "?",
                                                                                                 64))
        return
    marker_id = uuid.uuid5(uuid.NAMESPACE_URL, f"health/{message.sweep}/{message.target}").hex  # idempotent
    error = {"code": "health_check_poisoned", "message": f"The health check failed {MAX_DEQUEUE_COUNT} deliveries "
             "without an answer (the worker stopped or timed out).", "target": message.target,
             "details": {"fix": "See the Function's logs for these invocations; run `python -m shared validate "
                                f"{message.target}` to check it now."}}
    await _store(ctx).write_poison_marker({"id": marker_id, "kind": HEALTH_KIND, "target": message.target,
                                           "at": now_iso(), "error": error})
    logger.error("health check of %s poisoned: recorded", message.target,
                 extra={"target": message.target, "poisoned": True, "sweep": message.sweep})


__all__ = ["FanOut", "HealthCheckMessage", "enqueue_due_rotations", "enqueue_health_checks", "is_health_check",
           "record_poisoned_health_check", "run_health_check"]
