"""Azure Functions entry points (Python v2 programming model). Only wiring lives here: each trigger parses
its input, makes one call into `shared`, and turns the result into a response. Feature modules are imported
inside the handlers so a cold start pays only for what the invoked function uses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func

from shared import __version__
from shared.context import AppContext
from shared.http_contract import JSON, HttpResult, ok, parse_body, run_mapped
from shared.redaction import install_filter

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
logger = logging.getLogger("function_app")
logging.getLogger("azure").setLevel(logging.WARNING)
install_filter()

_context: AppContext | None = None


def _get_context() -> AppContext:
    """Settings and clients are built once per worker process, on first use (config errors surface then)."""
    global _context
    if _context is None:
        _context = AppContext.from_environment()
    return _context


def _respond(result: HttpResult) -> func.HttpResponse:
    return func.HttpResponse(result.text(), status_code=result.status, mimetype="application/json",
                             headers={"Content-Type": JSON, **result.headers})


async def _serve(handler: Callable[[AppContext], Awaitable[Any]]) -> func.HttpResponse:
    async def call() -> HttpResult:
        result = await handler(_get_context())
        if isinstance(result, HttpResult):
            return result
        return ok(result.to_dict(), status=getattr(result, "http_status", 200))

    return _respond(await run_mapped(call))


def _budget(ctx: AppContext) -> float:
    return ctx.settings.http_budget_seconds


# -- health and discovery -----------------------------------------------------------------------------------


@app.route(route="health", methods=["GET"])
async def health(req: func.HttpRequest) -> func.HttpResponse:
    async def handler(ctx: AppContext) -> HttpResult:
        return ok({"status": "ok", "version": __version__, "targets": [t.name for t in ctx.settings.targets]})

    return await _serve(handler)


@app.route(route="openapi.json", methods=["GET"])
async def openapi(req: func.HttpRequest) -> func.HttpResponse:
    from shared.openapi import openapi_document

    return _respond(ok(openapi_document()))


@app.route(route="targets", methods=["GET"])
async def list_targets(req: func.HttpRequest) -> func.HttpResponse:
    from shared.diagnosis import list_targets as list_target_status

    return await _serve(list_target_status)


# -- diagnosis ----------------------------------------------------------------------------------------------


@app.route(route="targets/{target}/validate", methods=["POST"])
async def validate(req: func.HttpRequest) -> func.HttpResponse:
    from shared.diagnosis import validate_target

    async def handler(ctx: AppContext) -> Any:
        parse_body(req.get_body(), {})
        return await validate_target(ctx, req.route_params["target"])

    return await _serve(handler)


@app.timer_trigger(schedule="%HEALTH_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
async def check_credential_health(timer: func.TimerRequest) -> None:
    from shared.diagnosis import check_all_targets

    if timer.past_due:
        logger.warning("check_credential_health is running late (past due)")
    sweep = await check_all_targets(_get_context())
    logger.info("credential health: %s", sweep.summary())
    if _get_context().settings.auto_remediate:  # AUTO_REMEDIATE (default off)
        from shared.remediation import remediate_unhealthy

        remediation = await remediate_unhealthy(_get_context(), sweep)
        logger.info("auto-remediation: %s", remediation.summary())


# -- rotation -----------------------------------------------------------------------------------------------


@app.route(route="targets/{target}/rotate", methods=["POST"])
async def rotate(req: func.HttpRequest) -> func.HttpResponse:
    from shared.rotation import rotate_target

    async def handler(ctx: AppContext) -> Any:
        body = parse_body(req.get_body(), {"force": bool, "dry_run": bool})
        return await rotate_target(ctx, req.route_params["target"], force=body.get("force", False),
                                   dry_run=body.get("dry_run", False), deadline_seconds=_budget(ctx))

    return await _serve(handler)


@app.route(route="targets/{target}/rotation", methods=["GET"])
async def rotation(req: func.HttpRequest) -> func.HttpResponse:
    from shared.rotation import rotation_status

    return await _serve(lambda ctx: rotation_status(ctx, req.route_params["target"]))


@app.timer_trigger(schedule="%ROTATION_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
async def rotate_due_secrets(timer: func.TimerRequest) -> None:
    from shared.rotation import rotate_all_due

    if timer.past_due:
        logger.warning("rotate_due_secrets is running late (past due); rotating what is due now")
    sweep = await rotate_all_due(_get_context())
    logger.info("rotation sweep: %s", sweep.summary())


# -- roles and remediation ----------------------------------------------------------------------------------


@app.route(route="targets/{target}/roles/reconcile", methods=["POST"])
async def reconcile_roles(req: func.HttpRequest) -> func.HttpResponse:
    from shared.roles import reconcile_target_roles

    async def handler(ctx: AppContext) -> Any:
        body = parse_body(req.get_body(), {"dry_run": bool})
        return await reconcile_target_roles(ctx, req.route_params["target"], dry_run=body.get("dry_run", True))

    return await _serve(handler)


@app.route(route="targets/{target}/remediate", methods=["POST"])
async def remediate(req: func.HttpRequest) -> func.HttpResponse:
    from shared.remediation import remediate_target

    async def handler(ctx: AppContext) -> Any:
        body = parse_body(req.get_body(), {"dry_run": bool})
        return await remediate_target(ctx, req.route_params["target"], dry_run=body.get("dry_run", False),
                                      deadline_seconds=_budget(ctx))

    return await _serve(handler)


# -- CycleCloud ---------------------------------------------------------------------------------------------


@app.route(route="targets/{target}/cyclecloud/probe", methods=["POST"])
async def cyclecloud_probe(req: func.HttpRequest) -> func.HttpResponse:
    from shared.adapters.cyclecloud import probe_target

    return await _serve(lambda ctx: probe_target(ctx, req.route_params["target"]))
