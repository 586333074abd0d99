"""The OpenAPI 3.1 document describing every HTTP route (served at GET /api/openapi.json): every request option
(body and query, from the route table in `http_routes`, so the two cannot drift), every response with a real
schema, the 202's `Location` and `Retry-After` headers, and the error shape. Tests validate the document with
openapi-spec-validator and the replies they receive against it with jsonschema."""

from __future__ import annotations

from typing import Any

from . import __version__, http_routes
from .config import TARGET_NAME_PATTERN  # the name a target is configured with (config_models.TargetModel.name)
from .http_request import MAX_BODY_BYTES, RouteSpec

_NULLABLE_STRING = {"type": ["string", "null"]}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_DATE_TIME = {"type": "string", "format": "date-time"}

_ERROR_OBJECT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code", "message", "target", "details"],
    "properties": {
        "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$",
                 "description": "Stable code; also in the x-ms-error-code header."},
        "message": {"type": "string", "description": "What is wrong, in plain words; quotes at most a short, "
                                                    "escaped prefix of anything the caller sent."},
        "target": _NULLABLE_STRING,
        "details": {
            "type": "object",
            "description": "reason, fix, and error-specific evidence",
            "properties": {
                "reason": {"type": "string"},
                "fix": {"type": "string"},
                "problems": _STRINGS,
                "requiredRole": {"type": "string"},
                "option": {"type": "string"},
                "fields": _STRINGS,
                "parameters": _STRINGS,
                "count": {"type": "integer", "minimum": 0},
            },
        },
    },
}

_ERROR = {"type": "object", "additionalProperties": False, "required": ["error"],
          "properties": {"error": {"$ref": "#/components/schemas/ErrorObject"}}}

_OPERATION: dict[str, Any] = {
    "type": "object",
    "description": "A long-running operation (202 Accepted): where it stands and, when finished, its outcome.",
    "additionalProperties": False,
    "required": ["id", "kind", "target", "status", "createdAt", "updatedAt", "requestedBy", "attempt", "statusUrl"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "kind": {"type": "string", "enum": ["rotate", "remediate", "migrate"]},
        "target": {"type": "string"},
        "status": {"type": "string", "enum": ["running", "succeeded", "failed"]},
        "createdAt": _DATE_TIME,
        "updatedAt": _DATE_TIME,
        "requestedBy": {"type": "string", "description": "the caller's identity, or 'function key'"},
        "attempt": {"type": "integer", "minimum": 1, "description": "the continuation attempt queued last"},
        "statusUrl": {"type": "string", "format": "uri-reference"},
        "nextAttemptAt": _DATE_TIME,
        "failedDeliveries": {"type": "integer", "minimum": 1},
        "poisoned": {"type": "boolean", "description": "five deliveries failed; recorded and listed by /health"},
        "outcome": {"type": "object", "description": "the newest body of the work (the final one when finished): "
                                                     "a RotationOutcome or a Remediation report"},
        "error": {"$ref": "#/components/schemas/ErrorObject"},
    },
}

_POISONED = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "kind", "target", "at", "error"],
    "properties": {"id": {"type": "string"}, "kind": {"type": "string"}, "target": {"type": "string"},
                   "at": _DATE_TIME, "error": {"oneOf": [{"$ref": "#/components/schemas/ErrorObject"},
                                                         {"type": "null"}]}},
}

_HEALTH = {
    "type": "object",
    "additionalProperties": False,
    "required": ["status", "version", "targets", "poisonedOperations"],
    "properties": {
        "status": {"const": "ok"},
        "version": {"type": "string"},
        "targets": _STRINGS,
        "poisonedOperations": {"type": ["array", "null"], "items": {"$ref": "#/components/schemas/PoisonedOperation"},
                               "description": "continuations that failed five deliveries (null: could not list)"},
        "warnings": _STRINGS,
    },
}

_ROTATION_OUTCOME: dict[str, Any] = {
    "type": "object",
    "description": "What a rotate call ended with; fields without a value are left out.",
    "required": ["target", "status", "message"],
    "properties": {
        "target": {"type": "string"},
        "status": {"type": "string", "enum": ["not_due", "rotated", "in_progress", "failed", "planned"]},
        "message": {"type": "string"},
        "stage": {"type": "string", "enum": ["plan", "intent", "create", "test", "push", "commit", "retire", "done"]},
        "operationId": {"type": "string", "description": "the rotation's own operation id (in the journal)"},
        "due": {"type": "boolean"},
        "reason": {"type": "string"},
        "newKeyId": {"type": "string"},
        "previousKeyId": {"type": "string"},
        "expiresOn": {"type": "string"},
        "retireAfter": {"type": "string"},
        "steps": _STRINGS,
        "warnings": _STRINGS,
        "maintenance": _STRINGS,
        "kept": {"type": "array"},
        "findings": {"type": "array"},
        "pushConfirmed": {"type": "boolean"},
        "error": {"type": "object"},
        "plan": {"type": "object", "required": ["due", "steps"],
                 "properties": {"due": {"type": "boolean"}, "reason": {"type": "string"}, "steps": _STRINGS}},
        "statusUrl": {"type": "string", "format": "uri-reference"},
        "next": {"type": "string"},
        "requestedBy": {"type": "string"},
        "operation": {"$ref": "#/components/schemas/Operation"},
    },
}

_ROTATION_STATE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["target", "inProgress", "locked", "current", "pendingRetirements", "adoptedKeyId", "history",
                 "events"],
    "properties": {
        "target": {"type": "string"},
        "inProgress": {"type": "boolean"},
        "locked": {"type": "boolean"},
        "current": {"type": ["object", "null"], "description": "the operation in flight (stage, key ids, times)"},
        "pendingRetirements": {"type": "array", "items": {"type": "object"}},
        "adoptedKeyId": _NULLABLE_STRING,
        "history": {"type": "array", "items": {"type": "object"}},
        "events": {"type": "array", "items": {"type": "object"}},
    },
}

_ROLES = {
    "type": "object",
    "additionalProperties": False,
    "required": ["target", "mode", "dry_run", "ok", "message", "principal", "summary", "assignments"],
    "properties": {
        "target": {"type": "string"},
        "mode": {"type": "string"},
        "dry_run": {"type": "boolean"},
        "ok": {"type": "boolean"},
        "message": {"type": "string"},
        "principal": {"type": "object", "required": ["object_id", "source"],
                      "properties": {"object_id": {"type": "string"}, "source": {"type": "string"},
                                     "display_name": {"type": "string"}, "principal_type": {"type": "string"}}},
        "summary": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "assignments": {"type": "array", "items": {
            "type": "object",
            "required": ["subscription_id", "scope", "role_id", "state"],
            "properties": {
                "subscription_id": {"type": "string"}, "scope": {"type": "string"}, "role_id": {"type": "string"},
                "role": _NULLABLE_STRING, "principal_id": _NULLABLE_STRING,
                "state": {"type": "string", "enum": ["present", "missing", "created", "failed", "extra", "removed"]},
                "assignment_name": _NULLABLE_STRING, "assignment_id": _NULLABLE_STRING,
                "inherited_from": _NULLABLE_STRING, "managed_by_product": {"type": ["boolean", "null"]},
                "verified": {"type": ["boolean", "null"]}, "reason": _NULLABLE_STRING, "fix": _NULLABLE_STRING,
                "error_code": _NULLABLE_STRING, "details": {"type": ["object", "null"]},
            },
        }},
        "requestedBy": {"type": "string"},
    },
}

_MIGRATION = {
    "type": "object",
    "additionalProperties": False,
    "required": ["target", "action", "dry_run", "status", "ok", "message", "migration_id", "stage", "steps",
                 "config_change", "offer"],
    "properties": {
        "target": {"type": "string"},
        "action": {"type": "string", "enum": ["plan", "migrate", "rollback", "remove_secrets"]},
        "dry_run": {"type": "boolean"},
        "status": {"type": "string", "enum": ["planned", "migrated", "finished", "rolled_back", "waiting",
                                              "blocked"]},
        "ok": {"type": "boolean"},
        "message": {"type": "string"},
        "migration_id": {"type": ["string", "null"]},
        "stage": {"type": ["string", "null"]},
        "steps": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "status", "detail", "fix"],
            "properties": {"name": {"type": "string", "enum": ["preflight", "identity", "roles", "account", "mode",
                                                               "secrets"]},
                           "status": {"type": "string", "enum": ["done", "would", "pending", "failed", "skipped"]},
                           "detail": {"type": "string"}, "fix": {"type": "string"}}}},
        "config_change": {"type": ["object", "null"]},
        "offer": {"type": ["object", "null"]},
        "retryAfterSeconds": {"type": "number", "minimum": 1},
        "requestedBy": {"type": "string"},
        "next": {},
        "operation": {"$ref": "#/components/schemas/Operation"},
    },
}

_PROBE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["target", "transport", "url", "ok", "checks"],
    "properties": {
        "target": {"type": "string"},
        "transport": {"type": "string", "enum": ["rest", "runcommand"]},
        "url": {"type": "string"},
        "ok": {"type": "boolean"},
        "checks": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "status", "detail", "fix"],
            "properties": {"name": {"type": "string"},
                           "status": {"type": "string", "enum": ["ok", "failed", "skipped"]},
                           "detail": {"type": "string"}, "fix": {"type": "string"}}}},
    },
}

_DOCUMENT = {"type": "object", "required": ["openapi", "info", "paths"]}


def _report_schema() -> dict[str, Any]:
    from .diagnosis.schema import REPORT_SCHEMA

    return {k: v for k, v in REPORT_SCHEMA.items() if k != "$schema"}


def _target_list_schema() -> dict[str, Any]:
    from .diagnosis.schema import TARGET_LIST_SCHEMA

    return {k: v for k, v in TARGET_LIST_SCHEMA.items() if k != "$schema"}


def _remediation_schema() -> dict[str, Any]:
    from .remediation.schema import REMEDIATION_SCHEMA

    return {k: v for k, v in REMEDIATION_SCHEMA.items() if k != "$schema"}


# -- building blocks ------------------------------------------------------------------------------------------

_ERROR_TEXT = {
    400: "The request is invalid (body, query string, target name); the message says what, in plain words",
    403: "REQUIRE_APP_ROLE is set and the caller does not hold the app role this change needs",
    404: "Unknown target or operation",
    409: "The target is locked: another run is in progress",
    413: f"The body is larger than {MAX_BODY_BYTES} bytes",
    500: "Invalid configuration, or an unexpected failure (no internals in the body)",
    502: "An Azure or CycleCloud call failed",
    503: "The product's own identity is unavailable",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _errors(*statuses: int) -> dict[str, Any]:
    """Every route can answer 400 (query string, identity header), 413 (a body over the limit, even where none
    is taken) and 500 (configuration); `statuses` adds the route's own."""
    return {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in sorted({400, 413, 500, *statuses})}


def _accepted(schema: dict[str, Any], description: str) -> dict[str, Any]:
    body = {"allOf": [schema, {"type": "object", "required": ["operation"],
                               "properties": {"operation": _ref("Operation")}}]}
    return _json(body, description, {"Location": {"$ref": "#/components/headers/Location"},
                                     "Retry-After": {"$ref": "#/components/headers/Retry-After"}})


def _parameters(route: RouteSpec) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    if route.target:
        params.append({"$ref": "#/components/parameters/target"})
    for name, default in sorted(route.options.items()):
        params.append({"name": name, "in": "query", "required": False,
                       "schema": {"type": "boolean", "default": default},
                       "description": f"Same as the body field '{name}' (default {str(default).lower()}); giving "
                                      "both with different values is a 400."})
    return params


def _request_body(route: RouteSpec) -> dict[str, Any]:
    properties = {name: {"type": "boolean", "default": default} for name, default in sorted(route.options.items())}
    return {"required": False, "description": f"A JSON object of at most {MAX_BODY_BYTES} bytes; only these "
            "fields (or the same options as query parameters).",
            "content": {"application/json": {"schema": {"type": "object", "additionalProperties": False,
                                                        "properties": properties}}}}


def _operation(route: RouteSpec, operation_id: str, summary: str, responses: dict[str, Any],
               extra_params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary,
                          "parameters": _parameters(route) + (extra_params or []), "responses": responses}
    if route.body:
        op["requestBody"] = _request_body(route)
    if not op["parameters"]:
        del op["parameters"]
    return op


def openapi_document() -> dict[str, Any]:
    r = http_routes
    target_errors = (404,)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CycleCloud Credential Remediator",
            "version": __version__,
            "description": "Validate, rotate and repair the Azure credentials of Azure CycleCloud. Every route needs "
                           "a function key (x-functions-key header). Requests never name a principal, role or "
                           "scope: only configured targets are acted on. Work that cannot finish within the HTTP "
                           "budget answers 202 with Location and Retry-After and continues on its own "
                           "(docs/http.md).",
        },
        "servers": [{"url": "/api"}],
        "security": [{"functionKey": []}],
        "paths": {
            "/health": {"get": _operation(r.HEALTH, "health", "Liveness, configured targets, poisoned operations", {
                "200": _json(_ref("Health"), "ok"), **_errors(400, 500)})},
            "/openapi.json": {"get": _operation(r.OPENAPI, "openapi", "This document", {
                "200": _json(_DOCUMENT, "OpenAPI document"), **_errors(400)})},
            "/targets": {"get": _operation(r.TARGETS, "listTargets",
                                           "Every target with status, days to expiry, last rotation", {
                "200": _json(_ref("TargetList"), "targets"), **_errors(400, 500, 502)})},
            "/operations/{operationId}": {"get": _operation(
                r.OPERATION, "operationStatus", "A long-running operation: its state and, when finished, the outcome",
                {"200": _json(_ref("Operation"), "the operation (Retry-After while running)",
                              {"Retry-After": {"required": False, "description": "while running: seconds until "
                                               "the next attempt", "schema": {"type": "integer", "minimum": 0}}}),
                 **_errors(400, 404, 500, 502)},
                [{"$ref": "#/components/parameters/operationId"}])},
            "/targets/{target}/validate": {"post": _operation(
                r.VALIDATE, "validate", "Diagnose a target; a broken credential is a 200 report, not an error", {
                    "200": _json(_ref("Report"), "diagnosis report"), **_errors(*target_errors, 503)})},
            "/targets/{target}/rotate": {"post": _operation(
                r.ROTATE, "rotate", "Rotate the client secret (crash-safe); dry_run returns the plan", {
                    "200": _json(_ref("RotationOutcome"), "done (rotated, not due, failed) or the plan (dry_run)"),
                    "202": _accepted(_ref("RotationOutcome"), "still in progress: continues on its own; poll "
                                                              "Location after Retry-After seconds"),
                    **_errors(*target_errors, 403, 409, 413, 502, 503)})},
            "/targets/{target}/rotation": {"get": _operation(
                r.ROTATION, "rotationStatus", "Journal state and recent rotations (no secret)", {
                    "200": _json(_ref("RotationState"), "rotation status"), **_errors(*target_errors, 502)})},
            "/targets/{target}/roles/reconcile": {"post": _operation(
                r.RECONCILE, "reconcileRoles", "Plan (dry_run, the default) or apply the target's role assignments", {
                    "200": _json(_ref("RoleReconciliation"), "plan or result per assignment"),
                    **_errors(*target_errors, 403, 413, 502, 503)})},
            "/targets/{target}/remediate": {"post": _operation(
                r.REMEDIATE, "remediate", "Validate, fix everything fixable in a safe order, validate again", {
                    "200": _json(_ref("Remediation"), "before, actions, after"),
                    "202": _accepted(_ref("Remediation"), "work continues on its own; poll Location after "
                                                          "Retry-After seconds"),
                    **_errors(*target_errors, 403, 409, 413, 502, 503)})},
            "/targets/{target}/migrate-to-managed-identity": {"post": _operation(
                r.MIGRATE, "migrateToManagedIdentity",
                "Move the target from its client secret to the CycleCloud VM's managed identity (dry_run, the "
                "default, returns the plan; remove_secrets finishes a migration after its grace period)", {
                    "200": _json(_ref("Migration"), "the plan, or the migration's state"),
                    "202": _accepted(_ref("Migration"), "waiting (role propagation): continues on its own; poll "
                                                        "Location after Retry-After seconds"),
                    **_errors(*target_errors, 403, 409, 413, 502, 503)})},
            "/targets/{target}/cyclecloud/probe": {"post": _operation(
                r.PROBE, "cyclecloudProbe", "Check the CycleCloud connection without changing anything (no body)", {
                    "200": _json(_ref("Probe"), "checklist"), **_errors(*target_errors, 502)})},
        },
        "components": {
            "securitySchemes": {"functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"}},
            "parameters": {
                "target": {"name": "target", "in": "path", "required": True,
                           "schema": {"type": "string", "pattern": TARGET_NAME_PATTERN},
                           "description": "A configured target name (TARGETS setting)."},
                "operationId": {"name": "operationId", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                                "description": "From the Location header of a 202 answer."},
            },
            "headers": {
                "Location": {"required": True, "description": "GET this for the operation's state",
                             "schema": {"type": "string", "format": "uri-reference"}},
                "Retry-After": {"required": True, "description": "seconds to wait before polling",
                                "schema": {"type": "integer", "minimum": 0}},
                "x-ms-error-code": {"required": True, "description": "the error's code",
                                    "schema": {"type": "string"}},
            },
            "responses": {f"Error{s}": _json(_ref("Error"), text, {
                "x-ms-error-code": {"$ref": "#/components/headers/x-ms-error-code"}})
                for s, text in _ERROR_TEXT.items()},
            "schemas": {
                "Error": _ERROR, "ErrorObject": _ERROR_OBJECT, "Operation": _OPERATION, "PoisonedOperation": _POISONED,
                "Health": _HEALTH, "TargetList": _target_list_schema(), "Report": _report_schema(),
                "Remediation": _remediation_schema(), "RotationOutcome": _ROTATION_OUTCOME,
                "RotationState": _ROTATION_STATE, "RoleReconciliation": _ROLES, "Probe": _PROBE,
                "Migration": _MIGRATION,
            },
        },
    }
