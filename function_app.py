"""Azure Functions entry points (Python v2 programming model). Only wiring lives here: each trigger parses
its input, makes one call into `shared`, and turns the result into a response. Feature modules are imported
inside the handlers so a cold start pays only for what the invoked function uses."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from shared import __version__, http_routes, telemetry
from shared.caller import Caller, caller_from_headers, require_role
from shared.config import DEFAULT_CONTINUATION_QUEUE
from shared.context import AppContext
from shared.http_contract import JSON, HttpResult, ok, run_mapped
from shared.http_request import ParsedRequest, RouteSpec, parse_request
from shared.redaction import install_filter

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
logger = logging.getLogger("function_app")
logging.getLogger("azure").setLevel(logging.WARNING)
install_filter()
telemetry.configure()  # Application Insights when configured (docs/operations.md); else nothing is loaded

_context: AppContext | None = None

Handler = Callable[[AppContext, ParsedRequest, Caller], Awaitable[Any]]


def _get_context() -> AppContext:
    """Settings and clients are built once per worker process, on first use (config errors surface then)."""
    global _context
    if _context is None:
        _context = AppContext.from_environment()
    return _context


def _respond(result: HttpResult) -> func.HttpResponse:
    return func.HttpResponse(result.text(), status_code=result.status, mimetype="application/json",
                             headers={"Content-Type": JSON, **result.headers})


async def _serve(req: func.HttpRequest, route: RouteSpec, handler: Handler) -> func.HttpResponse:
    """Parse and check the request (before any cloud call), then one call into shared/, mapped once."""

    async def call() -> HttpResult:
        parsed = parse_request(route, url=req.url, body=req.get_body(), route_params=req.route_params,
                               params=req.params)
        caller = caller_from_headers(req.headers)
        ctx = _get_context()
        if parsed.applies_changes:
            require_role(caller, ctx.settings.require_app_role, route.name)
        result = await handler(ctx, parsed, caller)
        if not isinstance(result, HttpResult):
            result = ok(result.to_dict(), status=getattr(result, "http_status", 200))
        if parsed.applies_changes:  # the audit trail: who asked for a change, and what it answered
            result.body.setdefault("requestedBy", caller.label)
            logger.info("%s for %s requested by %s: %s", route.name, parsed.target, caller.label, result.status,
                        extra={"requested_by": caller.label, "target": parsed.target, "http_status": result.status})
        return result

    # the span is named "METHOD /api/route" (OpenTelemetry's HTTP server convention); the target as requested, bounded
    with telemetry.span(route.name, route=route.name, target=(req.route_params.get("target") or "")[:64] or None) \
            as span:
        result = await run_mapped(call, route.name)
        span.set(outcome="ok" if result.status < 400 else "error", httpStatus=result.status)
    return _respond(result)


def _base_url(req: func.HttpRequest) -> str:
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _target(parsed: ParsedRequest) -> str:
    assert parsed.target is not None  # routes with {target} always have one after parsing
    return parsed.target


# -- health and discovery -----------------------------------------------------------------------------------


@app.route(route="health", methods=["GET"])
async def health(req: func.HttpRequest) -> func.HttpResponse:
    async def handler(ctx: AppContext, _parsed: ParsedRequest, _caller: Caller) -> HttpResult:
        from shared.operations import poisoned_operations

        body: dict[str, Any] = {"status": "ok", "version": __version__,
                                "targets": [t.name for t in ctx.settings.targets]}
        try:  # liveness must not fail on storage: say what could not be read instead
            body["poisonedOperations"] = await poisoned_operations(ctx)
        except Exception as exc:
            body["poisonedOperations"] = None
            body["warnings"] = [f"poisoned operations could not be listed ({getattr(exc, 'code', type(exc).__name__)})"]
        return ok(body)

    return await _serve(req, http_routes.HEALTH, handler)


@app.route(route="openapi.json", methods=["GET"])
async def openapi(req: func.HttpRequest) -> func.HttpResponse:
    async def call() -> HttpResult:  # needs no settings: served even when the configuration is broken
        from shared.openapi import openapi_document

        parse_request(http_routes.OPENAPI, url=req.url, body=req.get_body(), params=req.params)
        return ok(openapi_document())

    return _respond(await run_mapped(call, http_routes.OPENAPI.name))


@app.route(route="targets", methods=["GET"])
async def list_targets(req: func.HttpRequest) -> func.HttpResponse:
    from shared.diagnosis import list_targets as list_target_status

    return await _serve(req, http_routes.TARGETS, lambda ctx, _parsed, _caller: list_target_status(ctx))


@app.route(route="operations/{operation_id}", methods=["GET"])
async def operation(req: func.HttpRequest) -> func.HttpResponse:
    from shared.errors import BadRequestError
    from shared.http_request import quoted
    from shared.operations import operation_status
    from shared.operations.model import is_operation_id

    async def handler(ctx: AppContext, _parsed: ParsedRequest, _caller: Caller) -> HttpResult:
        operation_id = req.route_params.get("operation_id", "")
        if not is_operation_id(operation_id):
            raise BadRequestError(f"{quoted(operation_id)} is not an operation id.", code="invalid_operation_id",
                                  fix="Use the Location header of the 202 answer that started the operation.")
        return await operation_status(ctx, operation_id)

    return await _serve(req, http_routes.OPERATION, handler)


# -- diagnosis ----------------------------------------------------------------------------------------------


@app.route(route="targets/{target}/validate", methods=["POST"])
async def validate(req: func.HttpRequest) -> func.HttpResponse:
    from shared.diagnosis import validate_target

    return await _serve(req, http_routes.VALIDATE, lambda ctx, parsed, _caller: validate_target(ctx, _target(parsed)))


@app.timer_trigger(schedule="%HEALTH_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
async def check_credential_health(timer: func.TimerRequest) -> None:
    """Fan-out: one queued health check per target (resume_operation checks, records, alerts and, with
    AUTO_REMEDIATE, remediates each one), so the host spreads a fleet over instances (shared/fanout.py)."""
    from shared.fanout import enqueue_health_checks

    if timer.past_due:
        logger.warning("check_credential_health is running late (past due)")
    fanout = await enqueue_health_checks(_get_context())
    logger.info("credential health: %s", fanout.summary())


# -- rotation -----------------------------------------------------------------------------------------------


@app.route(route="targets/{target}/rotate", methods=["POST"])
async def rotate(req: func.HttpRequest) -> func.HttpResponse:
    async def handler(ctx: AppContext, parsed: ParsedRequest, caller: Caller) -> Any:
        if parsed.options["dry_run"]:
            from shared.rotation import rotate_target

            return await rotate_target(ctx, _target(parsed), force=parsed.options["force"], dry_run=True,
                                       deadline_seconds=ctx.settings.http_budget_seconds)
        from shared.operations import OperationKind, start_operation

        return await start_operation(ctx, OperationKind.ROTATE, _target(parsed), {"force": parsed.options["force"]},
                                     caller, base_url=_base_url(req))

    return await _serve(req, http_routes.ROTATE, handler)


@app.route(route="targets/{target}/rotation", methods=["GET"])
async def rotation(req: func.HttpRequest) -> func.HttpResponse:
    from shared.rotation import rotation_status

    return await _serve(req, http_routes.ROTATION, lambda ctx, parsed, _caller: rotation_status(ctx, _target(parsed)))


@app.timer_trigger(schedule="%ROTATION_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
async def rotate_due_secrets(timer: func.TimerRequest) -> None:
    """Fan-out: one rotation operation per secret target, continued through the queue like a 202's (the CLI's
    `rotate --all` keeps the in-process sweep for break-glass use)."""
    from shared.fanout import enqueue_due_rotations

    if timer.past_due:
        logger.warning("rotate_due_secrets is running late (past due); rotating what is due now")
    fanout = await enqueue_due_rotations(_get_context())
    logger.info("rotation sweep: %s", fanout.summary())


# -- long-running operations ----------------------------------------------------------------------------------


_CONTINUATION_QUEUE = os.environ.get("CONTINUATION_QUEUE") or DEFAULT_CONTINUATION_QUEUE  # read at indexing


@app.queue_trigger(arg_name="msg", queue_name=_CONTINUATION_QUEUE, connection="AzureWebJobsStorage")
async def resume_operation(msg: func.QueueMessage) -> None:
    """A 202's continuation (also a timer's rotation): resume the operation from its journal; or a timer's health
    check of one target (host.json: maxDequeueCount 5, batchSize and newBatchThreshold bound each instance)."""
    from shared.fanout import is_health_check, run_health_check
    from shared.operations import resume_operation as resume

    text = msg.get_body().decode("utf-8", errors="replace")
    if is_health_check(text):
        await run_health_check(_get_context(), text)
        return
    await resume(_get_context(), text, dequeue_count=int(msg.dequeue_count or 1), message_id=msg.id)


@app.queue_trigger(arg_name="msg", queue_name=_CONTINUATION_QUEUE + "-poison", connection="AzureWebJobsStorage")
async def record_poisoned_continuation(msg: func.QueueMessage) -> None:
    """A continuation the host moved to the poison queue: make sure its operation says so (never lost silently)."""
    from shared.fanout import is_health_check, record_poisoned_health_check
    from shared.operations import record_poisoned

    text = msg.get_body().decode("utf-8", errors="replace")
    if is_health_check(text):
        await record_poisoned_health_check(_get_context(), text, message_id=msg.id)
        return
    await record_poisoned(_get_context(), text, message_id=msg.id)


# -- roles and remediation ----------------------------------------------------------------------------------


@app.route(route="targets/{target}/roles/reconcile", methods=["POST"])
async def reconcile_roles(req: func.HttpRequest) -> func.HttpResponse:
    from shared.roles import reconcile_target_roles

    return await _serve(req, http_routes.RECONCILE, lambda ctx, parsed, _caller: reconcile_target_roles(
        ctx, _target(parsed), dry_run=parsed.options["dry_run"]))


@app.route(route="targets/{target}/remediate", methods=["POST"])
async def remediate(req: func.HttpRequest) -> func.HttpResponse:
    async def handler(ctx: AppContext, parsed: ParsedRequest, caller: Caller) -> Any:
        if parsed.options["dry_run"]:
            from shared.remediation import remediate_target

            return await remediate_target(ctx, _target(parsed), dry_run=True,
                                          deadline_seconds=ctx.settings.http_budget_seconds)
        from shared.operations import OperationKind, start_operation

        return await start_operation(ctx, OperationKind.REMEDIATE, _target(parsed), {}, caller,
                                     base_url=_base_url(req))

    return await _serve(req, http_routes.REMEDIATE, handler)


# -- migration to the CycleCloud VM's managed identity ------------------------------------------------------


@app.route(route="targets/{target}/migrate-to-managed-identity", methods=["POST"])
async def migrate_to_managed_identity(req: func.HttpRequest) -> func.HttpResponse:
    async def handler(ctx: AppContext, parsed: ParsedRequest, caller: Caller) -> Any:
        if parsed.options["dry_run"]:
            from shared.migration import migrate_target

            return await migrate_target(ctx, _target(parsed), dry_run=True)
        from shared.operations import OperationKind, start_operation

        return await start_operation(ctx, OperationKind.MIGRATE, _target(parsed),
                                     {"remove_secrets": parsed.options["remove_secrets"]}, caller,
                                     base_url=_base_url(req))

    return await _serve(req, http_routes.MIGRATE, handler)


# -- CycleCloud ---------------------------------------------------------------------------------------------


@app.route(route="targets/{target}/cyclecloud/probe", methods=["POST"])
async def cyclecloud_probe(req: func.HttpRequest) -> func.HttpResponse:
    from shared.cyclecloud_probe import probe_target

    return await _serve(req, http_routes.PROBE, lambda ctx, parsed, _caller: probe_target(ctx, _target(parsed)))
