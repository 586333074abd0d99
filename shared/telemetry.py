"""Telemetry that reaches Application Insights: OpenTelemetry spans, custom events and one metric.

The one place that knows event names and their dimensions (docs/operations.md lists them with Kusto queries).

* Configured once per worker by `configure()`: with `APPLICATIONINSIGHTS_CONNECTION_STRING` set, through
  `azure-monitor-opentelemetry` (imported only then, so indexing the functions pays nothing when it is unset);
  with `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true` the Functions worker configures the same distro itself
  and this module only emits to it. Without either, spans are no-ops and events are plain log lines.
* Events are log records carrying `microsoft.custom_event.name` (the Azure Monitor exporter turns those into
  rows of `customEvents`), with flat string/number dimensions. Retired convention: `extra={"custom_dimensions":
  ...}` (OpenCensus) reaches nothing and is not used.
* No secret ever goes into an attribute: dimensions are names, ids, codes and stages, and every string passes
  `redaction.scrub` on the way out as well.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

from . import clock
from .redaction import install_filter, scrub

logger = logging.getLogger(__name__)
events_logger = logging.getLogger("shared.telemetry.events")

CUSTOM_EVENT_ATTRIBUTE = "microsoft.custom_event.name"  # what the Azure Monitor exporter maps to customEvents
INSTRUMENTATION_NAME = "cyclecloud-credential-remediator"
DAYS_TO_EXPIRY_METRIC = "credential.days_to_expiry"


class Event(StrEnum):
    """Stable event names: dashboards and alerts depend on them, so never rename one."""

    SECRET_ROTATED = "SecretRotated"  # noqa: S105 - an event name
    ROTATION_FAILED = "RotationFailed"
    ROTATION_IN_PROGRESS = "RotationInProgress"
    CREDENTIAL_UNCONFIRMED = "CredentialUnconfirmed"
    HEALTH_CHECKED = "HealthChecked"
    FINDING_RAISED = "FindingRaised"
    ROLE_ASSIGNMENT_CREATED = "RoleAssignmentCreated"
    REMEDIATION_APPLIED = "RemediationApplied"
    CONTINUATION_POISONED = "ContinuationPoisoned"  # infra/app/alerts.bicep alerts on it


Dimension = str | int | float | bool

_lock = threading.Lock()
_enabled = False
_configured = False
_gauge: Any = None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Once per process: turn telemetry on if the environment asks for it. Returns whether it is on.

    Never raises: telemetry that cannot start is logged (without the connection string) and left off."""
    global _enabled, _configured
    env = os.environ if env is None else env
    with _lock:
        if _configured:
            return _enabled
        _configured = True
        install_filter()  # the record factory: every record is scrubbed, whichever handler or exporter reads it
        if _truthy(env.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY")):
            _enabled = True  # the worker configured azure-monitor-opentelemetry; emit to its global providers
        elif env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
            try:
                _configure_azure_monitor(env)
                _enabled = True
            except Exception as exc:  # never fatal: the product works without telemetry
                logger.warning("Application Insights telemetry could not start (%s); continuing without it",
                               type(exc).__name__)
        if _enabled:
            events_logger.setLevel(logging.INFO)
        return _enabled


def _configure_azure_monitor(env: Mapping[str, str]) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    from .redaction import redacting_log_record_processor

    # APPLICATIONINSIGHTS_AUTHENTICATION_STRING ("ClientId=...;Authorization=AAD", set by infra/app/api.bicep) is
    # read by the exporter itself: Application Insights has local authentication off
    configure_azure_monitor(
        connection_string=env["APPLICATIONINSIGHTS_CONNECTION_STRING"],
        logger_name="shared",  # the product's records; the worker already forwards the host's own
        log_record_processors=[redacting_log_record_processor()],  # runs before the exporter's batch
        # a few spans per target per hour: keep every one (the default rate-limited sampler can drop the first
        # spans of a fresh process, which is exactly the rotation an on-call engineer asks about)
        sampling_ratio=1.0,
    )
    product = logging.getLogger("shared")
    if product.level == logging.NOTSET:  # export the product's INFO records whatever the root logger's level is
        product.setLevel(logging.INFO)


def enabled() -> bool:
    return _enabled


def flush(timeout_seconds: float = 10.0) -> None:
    """Export what is buffered now (a short-lived process, such as the CLI, before it exits)."""
    if not _enabled:
        return
    from opentelemetry import _logs, metrics, trace

    millis = int(timeout_seconds * 1000)
    for provider in (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider()):
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            force_flush(millis)


# -- spans -----------------------------------------------------------------------------------------------------


class SpanHandle:
    """What the code inside a span may set: its outcome and a few more flat attributes."""

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def set(self, **attributes: Dimension | list[str] | None) -> None:
        if self._span is None:
            return
        for key, value in _flat(attributes).items():
            self._span.set_attribute(key, value)

    def fail(self, code: str) -> None:
        self.set(outcome="error", code=code)
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR, code))


@contextmanager
def span(name: str, **attributes: Dimension | list[str] | None) -> Iterator[SpanHandle]:
    """A span named after the operation (`rotate`, `validate`, ...), with target, operationId, stage,
    outcome. An exception marks it failed with the error's code only (never its text)."""
    if not _enabled:
        yield SpanHandle()
        return
    from opentelemetry import trace

    tracer = trace.get_tracer(INSTRUMENTATION_NAME)
    with tracer.start_as_current_span(name, attributes=_flat(attributes), record_exception=False,
                                      set_status_on_exception=False) as current:
        handle = SpanHandle(current)
        try:
            yield handle
        except BaseException as exc:
            handle.fail(getattr(exc, "code", None) or type(exc).__name__)
            raise


P = ParamSpec("P")
R = TypeVar("R")


Recorder = Callable[[Any, Any, SpanHandle], Awaitable[None]]
ErrorRecorder = Callable[[Any, str, BaseException, SpanHandle], Awaitable[None]]


def traced(operation: str, *, record: Recorder | None = None, record_error: ErrorRecorder | None = None) \
        -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate `async def f(ctx, target_name, ...)`: a span around each call and, on return, `record(ctx,
    result, span)` (events, metric, notifications); on an exception (not on a dry run), `record_error(ctx,
    target, exc, span)` before it propagates. Recording never fails the operation."""

    def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            target = args[1] if len(args) > 1 and isinstance(args[1], str) else kwargs.get("target_name")
            dry_run = bool(kwargs.get("dry_run", False))
            with span(operation, target=target if isinstance(target, str) else None, dryRun=dry_run) as handle:
                try:
                    result = await func(*args, **kwargs)
                except Exception as exc:
                    if record_error is not None and not dry_run and isinstance(target, str):
                        try:
                            await record_error(args[0] if args else None, target, exc, handle)
                        except Exception as failure:
                            logger.warning("recording the %s failure failed: %s", operation,
                                           type(failure).__name__)
                    raise
                if record is not None:
                    try:
                        await record(args[0] if args else None, result, handle)
                    except Exception as exc:
                        logger.warning("recording the %s telemetry failed: %s", operation, type(exc).__name__)
                return result

        return wrapper

    return decorate


# -- events and the metric ---------------------------------------------------------------------------------------


def _flat(values: Mapping[str, Any]) -> dict[str, Dimension]:
    """Flat dimensions: strings (scrubbed), numbers and booleans; lists become comma-separated strings."""
    out: dict[str, Dimension] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple, set, frozenset)):
            value = ",".join(str(v) for v in value)
        if isinstance(value, StrEnum):
            value = value.value
        if isinstance(value, (bool, int, float)):
            out[key] = value
        else:
            out[key] = scrub(str(value))
    return out


def emit(event: Event, target: str, **dimensions: Any) -> None:
    """One custom event. Always a log line too, so the worker's own log forwarding shows it."""
    dims = _flat({"target": target, **dimensions})
    text = " ".join(f"{k}={v}" for k, v in dims.items())
    events_logger.info("%s %s", event.value, text, extra={CUSTOM_EVENT_ATTRIBUTE: event.value, **dims})


def days_to_expiry(target: str, expires_on: datetime | str | None, *, now: datetime | None = None) -> float | None:
    """Record `credential.days_to_expiry` for the target; returns the value (None when unknown)."""
    global _gauge
    if isinstance(expires_on, str):
        try:
            expires_on = clock.from_iso(expires_on)
        except ValueError:
            return None
    if expires_on is None:
        return None
    if expires_on.tzinfo is None:
        expires_on = expires_on.replace(tzinfo=UTC)
    days = round((expires_on - (now or clock.now())).total_seconds() / 86400, 2)
    if _enabled:
        if _gauge is None:
            from opentelemetry import metrics

            _gauge = metrics.get_meter(INSTRUMENTATION_NAME).create_gauge(
                DAYS_TO_EXPIRY_METRIC, unit="d", description="days until the target's credential expires")
        _gauge.set(days, {"target": target})
    return days


# -- what each operation reports ----------------------------------------------------------------------------------


def _error_code(error: Mapping[str, Any] | None) -> str | None:
    return str(error.get("code")) if error and error.get("code") else None


def rotation_events(outcome: Any) -> None:
    """Events for one rotate_target result (a RotationOutcome)."""
    status = outcome.status.value
    stage = outcome.stage.value if outcome.stage else (outcome.error or {}).get("stage")
    common = {"operationId": outcome.operation_id, "stage": stage, "status": status}
    if status == "rotated":
        emit(Event.SECRET_ROTATED, outcome.target, newKeyId=outcome.new_key_id,
             previousKeyId=outcome.previous_key_id, expiresOn=outcome.expires_on, **common)
    elif status == "failed":
        error = outcome.error or {}
        emit(Event.ROTATION_FAILED, outcome.target, code=_error_code(error) or "unknown",
             reason=error.get("message") or outcome.message, **common)
    elif status == "in_progress":
        emit(Event.ROTATION_IN_PROGRESS, outcome.target, reason=outcome.message, **common)
    if outcome.push_confirmed is False:
        emit(Event.CREDENTIAL_UNCONFIRMED, outcome.target, **common)
    for finding in outcome.findings or ():
        emit(Event.FINDING_RAISED, outcome.target, code=finding.get("code"), severity="warning",
             source="rotation", operationId=outcome.operation_id)


async def record_rotation(ctx: Any, outcome: Any, handle: SpanHandle) -> None:
    if outcome.status.value == "planned":
        handle.set(outcome="planned")
        return
    handle.set(outcome=outcome.status.value, operationId=outcome.operation_id,
               stage=outcome.stage.value if outcome.stage else None, code=_error_code(outcome.error))
    rotation_events(outcome)
    if outcome.expires_on:
        days_to_expiry(outcome.target, outcome.expires_on)
    if ctx is not None and getattr(ctx.settings, "notify_webhook_url", None):
        from .notify import notify_rotation

        await notify_rotation(ctx, outcome)


# a caller's mistake (unknown target, not rotatable) or another run holding the target is no failed rotation
_NOT_A_ROTATION_FAILURE = {"bad_request", "target_not_found", "target_locked", "invalid_configuration"}


async def record_rotation_error(ctx: Any, target: str, exc: BaseException, handle: SpanHandle) -> None:
    """rotate_target raised before any operation existed (e.g. Graph refused to list the app's credentials):
    the same RotationFailed event and notification as a failed outcome, at stage `plan`."""
    code = str(getattr(exc, "code", None) or type(exc).__name__)
    if code in _NOT_A_ROTATION_FAILURE:
        return
    from .rotation.model import RotationOutcome, RotationStage, RotationStatus

    message = scrub(str(getattr(exc, "message", None) or "unexpected failure; see the logs"))
    outcome = RotationOutcome(target, RotationStatus.FAILED, message, stage=RotationStage.PLAN,
                              error={"stage": RotationStage.PLAN.value, "code": code, "message": message,
                                     "at": clock.iso(clock.now())})
    await record_rotation(ctx, outcome, handle)


def health_events(target: str, status: str, findings: list[tuple[str, str]], *, mode: str | None = None,
                  expires_on: str | None = None, error: str | None = None) -> None:
    """HealthChecked for the target, FindingRaised for each finding (code, severity), and the metric."""
    emit(Event.HEALTH_CHECKED, target, status=status, findingCodes=[code for code, _ in findings], mode=mode,
         code=error)
    for code, severity in findings:
        emit(Event.FINDING_RAISED, target, code=code, severity=severity, source="health")
    days_to_expiry(target, expires_on)


async def record_validation(_ctx: Any, report: Any, handle: SpanHandle) -> None:
    """An on-demand validation (HTTP, CLI): the span says the verdict; the health sweep's events stay its own."""
    handle.set(outcome=report.status.value, findingCodes=list(report.codes))


async def record_reconcile(_ctx: Any, result: Any, handle: SpanHandle) -> None:
    handle.set(outcome="ok" if result.ok else "failed")
    for assignment in result.assignments:
        if assignment.state.value == "created":
            emit(Event.ROLE_ASSIGNMENT_CREATED, result.target, subscriptionId=assignment.subscription_id,
                 scope=assignment.scope, roleId=assignment.role_id, roleName=assignment.role_name,
                 principalId=assignment.principal_id, verified=assignment.verified)


async def record_remediation(_ctx: Any, report: Any, handle: SpanHandle) -> None:
    handle.set(outcome=report.result.value)
    if report.dry_run:
        return
    for action in report.actions:
        if action.outcome.value in ("applied", "in_progress"):
            emit(Event.REMEDIATION_APPLIED, report.target, action=action.action.value,
                 outcome=action.outcome.value, findingCodes=list(action.addresses), result=report.result.value)


def continuation_poisoned(target: str, operation_id: str, kind: str, code: str | None) -> None:
    """A long operation's continuation failed every delivery (the queue's poison path)."""
    emit(Event.CONTINUATION_POISONED, target, operationId=operation_id, kind=kind, code=code)


def _reset_for_tests() -> None:  # pragma: no cover - tests only: forget that configure() ran
    global _enabled, _configured, _gauge
    with _lock:
        _enabled = _configured = False
        _gauge = None
