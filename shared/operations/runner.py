"""Long-running operations, Azure style: an HTTP call runs the work for at most the HTTP budget; what cannot
finish answers 202 with `Location` (GET /api/operations/{id}), `Retry-After` and an `operation` object, and
continues without the caller through a message on the continuation queue, delayed by the back-off. The
queue-triggered function resumes the work from its journal (the rotation protocol is resumable at every
stage), queues the next continuation while it must still wait, and records the final outcome.

Failures: a delivery that raises is retried by the Functions host (host.json maxDequeueCount = 5); the fifth
failed delivery is recorded as poisoned (operation record + marker, listed by GET /api/health) before the host
moves the message to the poison queue, so nothing is lost silently. A target another run holds (409) is not a
failure: the continuation waits its turn."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from .. import clock, telemetry
from ..caller import Caller
from ..context import AppContext
from ..errors import LockedError, RemediatorError
from ..http_contract import HttpResult, ok
from ..http_request import log_safe
from .model import (
    MAX_BACKOFF_SECONDS,
    MAX_CONTINUATIONS,
    MAX_DEQUEUE_COUNT,
    ContinuationMessage,
    OperationKind,
    OperationRecord,
    OperationState,
    backoff_seconds,
    new_operation_id,
    status_path,
)
from .queue import ContinuationQueue
from .store import OperationStore, VersionedRecord

logger = logging.getLogger(__name__)

QUEUE_RUN_SECONDS = 240.0  # one continuation's time (host.json functionTimeout is 10 minutes)


def _store(ctx: AppContext) -> OperationStore:
    return OperationStore(ctx.clients.blob_service(), ctx.settings.storage.container)


def _queue(ctx: AppContext) -> ContinuationQueue:
    return ContinuationQueue(ctx.clients.continuation_queue())


async def _run(ctx: AppContext, kind: OperationKind, target: str, options: dict[str, bool],
               deadline_seconds: float, requested_by: str) -> tuple[int, dict[str, Any]]:
    """One bounded run of the work (never a dry run: dry runs finish at once and are not operations). The
    rotation journals `requested_by` itself; for remediation the operation record and log fields carry it."""
    if kind is OperationKind.ROTATE:
        from ..rotation import rotate_target

        outcome = await rotate_target(ctx, target, force=options.get("force", False), dry_run=False,
                                      deadline_seconds=deadline_seconds, requested_by=requested_by)
        return outcome.http_status, outcome.to_dict()
    if kind is OperationKind.MIGRATE:
        from ..migration import migrate_target

        migration = await migrate_target(ctx, target, dry_run=False,
                                         remove_old_secrets=options.get("remove_secrets", False),
                                         deadline_seconds=deadline_seconds)
        return migration.http_status, migration.to_dict()
    from ..remediation import remediate_target

    report = await remediate_target(ctx, target, dry_run=False, deadline_seconds=deadline_seconds)
    return report.http_status, report.to_dict()


def _delay(ctx: AppContext, body: dict[str, Any] | None, attempt: int) -> float:
    """The visibility delay before continuation `attempt`: the work's own estimate when it gives one (a role
    assignment propagating says when to look again), else the configured back-off."""
    hint = (body or {}).get("retryAfterSeconds")
    if isinstance(hint, int | float) and not isinstance(hint, bool) and hint > 0:
        return float(min(MAX_BACKOFF_SECONDS, max(1.0, hint)))
    return backoff_seconds(ctx.settings.continuation_backoff_seconds, attempt)


def _continuation_options(record: OperationRecord) -> dict[str, bool]:
    """`force` belongs to the call that started the operation: once the rotation journaled its own operation
    (the 202 body carries its operationId) a continuation only resumes it, and must not force a second rotation
    should the timer or another call have finished the first one meanwhile."""
    options = dict(record.options)
    if record.kind is OperationKind.ROTATE and (record.outcome or {}).get("operationId"):
        options["force"] = False
    return options


def _seconds_until(when: str | None) -> float:
    moment = clock.from_iso(when)
    return (moment - clock.now()).total_seconds() if moment else 0.0


def _later(seconds: float) -> str:
    return clock.iso(clock.now() + timedelta(seconds=seconds), seconds=True)


def _audit(kind: OperationKind, target: str, who: str, result: str, operation_id: str | None = None) -> None:
    logger.info("%s of %s requested by %s: %s (operation %s)", kind.value, target, log_safe(who), result,
                operation_id or "-", extra={"requested_by": who, "target": target, "operation": kind.value,
                                            "operation_id": operation_id, "result": result})


async def start_operation(ctx: AppContext, kind: OperationKind, target: str, options: dict[str, bool],
                          caller: Caller, *, base_url: str) -> HttpResult:
    """The HTTP side: run within the budget; 200 when done, else record, queue the continuation and 202."""
    status, body = await _run(ctx, kind, target, options, ctx.settings.http_budget_seconds, caller.label)
    body["requestedBy"] = caller.label
    if status != 202:
        _audit(kind, target, caller.label, str(body.get("status") or body.get("result")))
        return ok(body, status)
    delay = _delay(ctx, body, 1)
    now = clock.now_iso()
    record = OperationRecord(id=new_operation_id(), kind=kind, target=target, state=OperationState.RUNNING,
                             created_at=now, updated_at=now, requested_by=caller.label, options=dict(options),
                             attempt=1, next_attempt_at=_later(delay), outcome=dict(body))
    record = record.note("accepted", result=str(body.get("status") or body.get("result")))
    store = _store(ctx)
    running = await store.claim_active(record)
    if running is not None:  # this work already continues under that operation: point the caller there
        record = (await store.read(running)).record
        delay = max(1.0, _seconds_until(record.next_attempt_at))
    else:
        created = await store.create(record)
        try:
            await _queue(ctx).send(ContinuationMessage(record.id, kind, target, 1), delay)
        except RemediatorError as exc:  # no continuation: say so in the record rather than leave it "running"
            await _finish(store, created, OperationState.FAILED, error=exc.to_dict(), event="not queued")
            raise
    _audit(kind, target, caller.label, "accepted; continues from the queue", record.id)
    location = base_url.rstrip("/") + status_path(record.id)
    follow = (f"The work continues on its own; poll GET {status_path(record.id)} (the Location header) after "
              f"Retry-After seconds for its state and, when finished, the outcome.")
    earlier = body.get("next")  # the work's own advice ("validate again after ...") stays, ours comes last
    body["next"] = [*earlier, follow] if isinstance(earlier, list) else follow
    body["operation"] = record.to_api()
    return ok(body, 202, {"Location": location, "Retry-After": str(int(delay))})


async def operation_status(ctx: AppContext, operation_id: str) -> HttpResult:
    """GET /api/operations/{id}: 200 with the state and, when finished, the outcome."""
    record = (await _store(ctx).read(operation_id)).record
    headers: dict[str, str] = {}
    if not record.finished:
        headers["Retry-After"] = str(int(max(1.0, _seconds_until(record.next_attempt_at))))
    return ok(record.to_api(), 200, headers)


async def poisoned_operations(ctx: AppContext) -> list[dict[str, Any]]:
    return await _store(ctx).poisoned()


# -- the queue side ---------------------------------------------------------------------------------------------


async def _message_and_record(ctx: AppContext, text: str, message_id: str | None, what: str
                              ) -> tuple[ContinuationMessage, OperationStore, VersionedRecord] | None:
    """The message and its operation's record, or None (logged) when the message is not a continuation of this
    app or names an operation that does not exist: retrying cannot change either, so the message is dropped."""
    message = ContinuationMessage.parse(text)
    if message is None:
        logger.error("%s message %s is not a continuation of this app; dropped", what,
                     log_safe(message_id or "?", 64))
        return None
    store = _store(ctx)
    try:
        current = await store.read(message.operation_id)
    except RemediatorError as exc:
        if exc.status == 404:
            logger.error("%s for unknown operation %s dropped", what, message.operation_id)
            return None
        raise
    return message, store, current


async def resume_operation(ctx: AppContext, text: str, *, dequeue_count: int, message_id: str | None) -> None:
    """The queue-triggered function's body. Returns normally when the message is done with (finished, waiting
    again under a new message, stale, or not ours); raises to have the host deliver it again."""
    found = await _message_and_record(ctx, text, message_id, "continuation")
    if found is None:
        return
    message, store, current = found
    record = current.record
    if record.finished or message.attempt != record.attempt:
        logger.info("continuation %s of operation %s is stale (record at attempt %s, %s); dropped",
                    message.attempt, record.id, record.attempt, record.state.value)
        return
    try:
        status, body = await _run(ctx, record.kind, record.target, _continuation_options(record),
                                  QUEUE_RUN_SECONDS, record.requested_by)
    except LockedError as exc:  # another run holds the target: wait for our turn, no failure
        await _continue(ctx, current, None, f"target locked by another run ({exc.code})")
        return
    except RemediatorError as exc:
        if exc.status < 500:  # e.g. the target was removed from the configuration: retrying cannot help
            await _finish(store, current, OperationState.FAILED, error=exc.to_dict(), event="failed")
            return
        await _delivery_failed(store, current, exc.to_dict(), dequeue_count)
        raise
    except Exception as exc:
        await _delivery_failed(store, current, {"code": "internal_error", "message": f"unexpected "
                                                f"{type(exc).__name__}; see the Function's logs"}, dequeue_count)
        raise
    body["requestedBy"] = record.requested_by
    if status == 202:
        await _continue(ctx, current, body, str(body.get("status") or body.get("result")))
        return
    failed = body.get("status") == "failed"
    await _finish(store, current, OperationState.FAILED if failed else OperationState.SUCCEEDED, outcome=body,
                  error=body.get("error") if failed else None, event="finished")


async def _continue(ctx: AppContext, current: VersionedRecord, body: dict[str, Any] | None, why: str) -> None:
    record = current.record
    store = _store(ctx)
    if record.attempt >= MAX_CONTINUATIONS:
        error = {"code": "continuation_limit", "message": f"Still not finished after {record.attempt} "
                 "continuations; stopped queueing more.", "target": record.target,
                 "details": {"fix": "Call the route again, or let the daily timer resume it from the journal."}}
        await _finish(store, current, OperationState.FAILED, outcome=body,
                      error=error, event="gave up")
        return
    attempt = record.attempt + 1
    delay = _delay(ctx, body, attempt)
    # send first, then record: if recording fails the host redelivers this message, whose attempt still matches
    await _queue(ctx).send(ContinuationMessage(record.id, record.kind, record.target, attempt), delay)
    updated = replace(record, attempt=attempt, next_attempt_at=_later(delay), failed_deliveries=0,
                      outcome=body or record.outcome)
    await store.write(current, updated.note("waiting", result=why, next_attempt=attempt))


async def _finish(store: OperationStore, current: VersionedRecord, state: OperationState, *,
                  outcome: dict[str, Any] | None = None, error: dict[str, Any] | None = None, event: str) -> None:
    record = current.record
    updated = replace(record, state=state, outcome=outcome if outcome is not None else record.outcome, error=error,
                      next_attempt_at=None)
    await store.write(current, updated.note(event, state=state.value))
    _audit(record.kind, record.target, record.requested_by, state.value, record.id)


async def _delivery_failed(store: OperationStore, current: VersionedRecord, error: dict[str, Any],
                           dequeue_count: int) -> None:
    """Record a failed delivery; the fifth is poison: the record says so and a marker lists it for /api/health."""
    record = current.record
    poisoned = dequeue_count >= MAX_DEQUEUE_COUNT
    updated = replace(record, failed_deliveries=dequeue_count, error=error,
                      state=OperationState.FAILED if poisoned else record.state, poisoned=poisoned)
    updated = updated.note("poisoned" if poisoned else "delivery failed", delivery=dequeue_count,
                           code=error.get("code"))
    try:
        await store.write(current, updated)
        if poisoned:
            await store.mark_poisoned(updated)
    except RemediatorError as exc:  # the host still retries / moves the message to the poison queue
        logger.error("could not record failed delivery %s of operation %s: %s", dequeue_count, record.id, exc.code)
    if poisoned:
        telemetry.continuation_poisoned(record.target, record.id, record.kind.value, error.get("code"))
    log = logger.error if poisoned else logger.warning
    log("operation %s (%s %s): delivery %s of %s failed (%s)%s", record.id, record.kind.value, record.target,
        dequeue_count, MAX_DEQUEUE_COUNT, error.get("code"),
        "; poisoned: recorded and moved to the poison queue" if poisoned else "; the host retries",
        extra={"operation_id": record.id, "target": record.target, "poisoned": poisoned})


async def record_poisoned(ctx: AppContext, text: str, *, message_id: str | None) -> None:
    """The poison queue's trigger: a continuation the host gave up on without our code recording it (the worker
    died or timed out on all five deliveries) is recorded here, so no operation stays "running" for ever."""
    found = await _message_and_record(ctx, text, message_id, "poisoned continuation")
    if found is None:
        return
    message, store, current = found
    record = current.record
    if record.poisoned or record.finished or message.attempt != record.attempt:
        return  # already recorded by the delivery that failed last, or a stale message
    error = {"code": "continuation_poisoned", "message": f"The continuation failed {MAX_DEQUEUE_COUNT} deliveries "
             "without an answer (the worker stopped or timed out).", "target": record.target,
             "details": {"fix": "See the Function's logs for these invocations; call the route again to resume "
                                "from the journal."}}
    updated = replace(record, state=OperationState.FAILED, poisoned=True, error=error,
                      failed_deliveries=MAX_DEQUEUE_COUNT, next_attempt_at=None).note("poisoned", source="poison queue")
    await store.write(current, updated)
    await store.mark_poisoned(updated)
    telemetry.continuation_poisoned(record.target, record.id, record.kind.value, "continuation_poisoned")
    logger.error("operation %s (%s %s) poisoned: recorded from the poison queue", record.id, record.kind.value,
                 record.target, extra={"operation_id": record.id, "target": record.target, "poisoned": True})

