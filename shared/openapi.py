"""The OpenAPI 3.1 document describing every HTTP route (served at GET /api/openapi.json)."""

from __future__ import annotations

from typing import Any

from . import __version__

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable code; also in the x-ms-error-code header."},
                "message": {"type": "string"},
                "target": {"type": ["string", "null"]},
                "details": {"type": "object", "description": "reason, fix, and error-specific evidence"},
            },
        }
    },
}


def _report_schema() -> dict[str, Any]:
    from .diagnosis.schema import REPORT_SCHEMA

    return {k: v for k, v in REPORT_SCHEMA.items() if k != "$schema"}


def _remediation_schema() -> dict[str, Any]:
    from .remediation.schema import REMEDIATION_SCHEMA

    return {k: v for k, v in REMEDIATION_SCHEMA.items() if k != "$schema"}


def _json(schema: dict[str, Any] | str, description: str) -> dict[str, Any]:
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Invalid request body", 404: "Unknown target", 409: "Target locked (operation in progress)",
            500: "Invalid configuration or unexpected failure", 502: "An Azure or CycleCloud call failed",
            503: "The product's own identity is unavailable"}
    return {str(s): _json("Error", text[s]) for s in statuses}


def _body(properties: dict[str, Any]) -> dict[str, Any]:
    return {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False, "properties": properties}}}}


_TARGET = [{"name": "target", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "A configured target name (TARGETS setting)."}]
_DRY_RUN = {"dry_run": {"type": "boolean"}}


def openapi_document() -> dict[str, Any]:
    generic = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CycleCloud Credential Remediator",
            "version": __version__,
            "description": "Validate, rotate and repair the Azure credentials of Azure CycleCloud. Every route needs "
                           "a function key (x-functions-key header). Request bodies never name a principal, role "
                           "or scope: only configured targets are acted on.",
        },
        "servers": [{"url": "/api"}],
        "security": [{"functionKey": []}],
        "paths": {
            "/health": {"get": {"operationId": "health", "summary": "Liveness and configuration check",
                                "responses": {"200": _json(generic, "ok"), **_errors(500)}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                      "responses": {"200": _json(generic, "OpenAPI document")}}},
            "/targets": {"get": {"operationId": "listTargets",
                                 "summary": "Every target with status, days to expiry, last rotation",
                                 "responses": {"200": _json(generic, "targets"), **_errors(500)}}},
            "/targets/{target}/validate": {"post": {
                "operationId": "validate", "parameters": _TARGET,
                "summary": "Diagnose a target; a broken credential is a 200 report, not an error",
                "requestBody": _body({}),
                "responses": {"200": _json("Report", "diagnosis report"), **_errors(400, 404, 500, 503)}}},
            "/targets/{target}/rotate": {"post": {
                "operationId": "rotate", "parameters": _TARGET, "summary": "Rotate the client secret (crash-safe)",
                "requestBody": _body({"force": {"type": "boolean"}, **_DRY_RUN}),
                "responses": {"200": _json(generic, "done, with the outcome (or the plan when dry_run)"),
                              "202": _json(generic, "still in progress: stage, operation id, where to look"),
                              **_errors(400, 404, 409, 500, 502, 503)}}},
            "/targets/{target}/rotation": {"get": {
                "operationId": "rotationStatus", "parameters": _TARGET,
                "summary": "Journal state and recent rotations (no secret)",
                "responses": {"200": _json(generic, "rotation status"), **_errors(404, 500, 502)}}},
            "/targets/{target}/roles/reconcile": {"post": {
                "operationId": "reconcileRoles", "parameters": _TARGET,
                "summary": "Plan (dry_run, the default) or apply the target's role assignments",
                "requestBody": _body(_DRY_RUN),
                "responses": {"200": _json(generic, "plan or result per assignment"),
                              **_errors(400, 404, 500, 502, 503)}}},
            "/targets/{target}/remediate": {"post": {
                "operationId": "remediate", "parameters": _TARGET,
                "summary": "Validate, fix everything fixable in a safe order, validate again",
                "requestBody": _body(_DRY_RUN),
                "responses": {"200": _json("Remediation", "before, actions, after"),
                              "202": _json("Remediation", "work continues: statusUrl and next say where to look"),
                              **_errors(400, 404, 409, 500, 502, 503)}}},
            "/targets/{target}/cyclecloud/probe": {"post": {
                "operationId": "cyclecloudProbe", "parameters": _TARGET,
                "summary": "Check the CycleCloud connection without changing anything",
                "responses": {"200": _json(generic, "checklist"), **_errors(404, 500, 502)}}},
        },
        "components": {
            "securitySchemes": {"functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"}},
            "schemas": {"Error": _ERROR, "Report": _report_schema(), "Remediation": _remediation_schema()},
        },
    }
