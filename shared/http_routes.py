"""Every HTTP route's request contract in one table: its options with their defaults (the dry_run defaults
table in docs/http.md is this), whether it takes a body, and whether applying it changes Azure. function_app.py
parses with it and the OpenAPI document is generated from it, so the two cannot drift."""

from __future__ import annotations

from .http_request import RouteSpec

HEALTH = RouteSpec("GET /api/health", target=False)
OPENAPI = RouteSpec("GET /api/openapi.json", target=False)
TARGETS = RouteSpec("GET /api/targets", target=False)
OPERATION = RouteSpec("GET /api/operations/{operationId}", target=False)
VALIDATE = RouteSpec("POST /api/targets/{target}/validate", body=True)
ROTATE = RouteSpec("POST /api/targets/{target}/rotate", {"force": False, "dry_run": False}, body=True,
                   changes_azure=True)
ROTATION = RouteSpec("GET /api/targets/{target}/rotation")
RECONCILE = RouteSpec("POST /api/targets/{target}/roles/reconcile", {"dry_run": True}, body=True, changes_azure=True)
REMEDIATE = RouteSpec("POST /api/targets/{target}/remediate", {"dry_run": False}, body=True, changes_azure=True)
PROBE = RouteSpec("POST /api/targets/{target}/cyclecloud/probe")
MIGRATE = RouteSpec("POST /api/targets/{target}/migrate-to-managed-identity",
                    {"dry_run": True, "remove_secrets": False}, body=True, changes_azure=True)

ROUTES = (HEALTH, OPENAPI, TARGETS, OPERATION, VALIDATE, ROTATE, ROTATION, RECONCILE, REMEDIATE, PROBE, MIGRATE)
