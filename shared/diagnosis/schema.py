"""JSON Schema (2020-12, self-contained: no $ref, so OpenAPI 3.1 can embed it as-is) of the diagnosis report
and of the target list. Tests validate real reports against these, so the documented shape cannot drift."""

from __future__ import annotations

from typing import Any

from ..findings import CATALOG, FixAction, Severity

_NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}

FINDING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code", "severity", "title", "summary", "detail", "subject", "check", "evidence", "remediation",
                 "fixable_by_remediate", "remediate_action", "remediate_how"],
    "properties": {
        "code": {"type": "string", "enum": sorted(CATALOG), "description": "Stable finding code (docs/diagnosis.md)."},
        "severity": {"type": "string", "enum": [s.value for s in Severity]},
        "title": {"type": "string"},
        "summary": {"type": "string", "description": "One plain-English sentence: what this means."},
        "detail": {"type": "string", "description": "One sentence about this target: which secret, subscription, "
                                                   "action."},
        "subject": {**_NULLABLE_STRING, "description": "What it is about: secret name, subscription id, principal."},
        "check": {"type": "string", "description": "Name of the check that found it."},
        "evidence": {"type": "object", "description": "What a support case needs: AADSTS code, trace_id, "
                                                      "correlation_id, timestamp, failing action and scope, ids."},
        "remediation": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["action", "portal", "cli"],
                "properties": {"action": {"type": "string"}, "portal": {"type": "string"},
                               "cli": {"type": "string"}},
            },
        },
        "fixable_by_remediate": {"type": "boolean"},
        "remediate_action": {"type": ["string", "null"], "enum": [*(a.value for a in FixAction), None]},
        "remediate_how": _NULLABLE_STRING,
    },
}

CHECK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "description", "outcome", "started_ms", "duration_ms", "findings", "note"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "outcome": {"type": "string", "enum": ["passed", "problems", "skipped", "failed", "timed_out"]},
        "started_ms": {"type": "number", "minimum": 0},
        "duration_ms": {"type": "number", "minimum": 0},
        "findings": {"type": "array", "items": {"type": "string"}},
        "note": _NULLABLE_STRING,
    },
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Diagnosis report",
    "description": "Everything wrong with one target's credential, in plain English, with evidence and fixes.",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "target", "mode", "status", "generated_at", "duration_ms", "counts", "findings",
                 "advice", "checks", "observations"],
    "properties": {
        "schema_version": {"type": "string", "const": "1"},
        "target": {"type": "string"},
        "mode": {"type": "string", "enum": ["service_principal", "managed_identity"]},
        "status": {"type": "string", "enum": ["healthy", "degraded", "failing"],
                   "description": "failing: any error finding; degraded: any warning; healthy: neither."},
        "generated_at": {"type": "string", "format": "date-time"},
        "duration_ms": {"type": "number", "minimum": 0},
        "counts": {
            "type": "object",
            "additionalProperties": False,
            "required": [s.value for s in Severity],
            "properties": {s.value: {"type": "integer", "minimum": 0} for s in Severity},
        },
        "findings": {"type": "array", "items": FINDING_SCHEMA,
                     "description": "Problems (severity error or warning), most severe first."},
        "advice": {"type": "array", "items": FINDING_SCHEMA,
                   "description": "Recommendations (severity info); they do not change the status."},
        "checks": {"type": "array", "items": CHECK_SCHEMA},
        "observations": {
            "type": "object",
            "description": "What the checks saw on the way, whether or not it is a problem: secret_expires_on, "
                           "secret_key_id, days_to_expiry, principal_id (never a secret).",
        },
    },
}

TARGET_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "mode", "status", "checked_at", "days_to_expiry", "secret_expires_on", "last_rotation",
                 "open_operation", "unconfirmed_pushes", "findings"],
    "properties": {
        "name": {"type": "string"},
        "mode": {"type": "string", "enum": ["service_principal", "managed_identity"]},
        "status": {"type": ["string", "null"], "enum": ["healthy", "degraded", "failing", None],
                   "description": "From the last health check (null: never checked)."},
        "checked_at": {**_NULLABLE_STRING, "format": "date-time"},
        "days_to_expiry": {"type": ["number", "null"]},
        "secret_expires_on": {**_NULLABLE_STRING, "format": "date-time"},
        "last_rotation": {"type": ["object", "null"],
                          "description": "The last finished rotation: id, finished_at, result (committed, "
                                         "abandoned), new_key_id, new_end, reason, push_confirmed."},
        "open_operation": {"type": ["object", "null"],
                           "description": "The rotation in progress (null: none): id, stage it runs next, "
                                          "started_at, updated_at, reason, attempts, last_error (stage, code, "
                                          "message, at), requested_by."},
        "unconfirmed_pushes": {"type": "array", "items": {"type": "string"},
                               "description": "Operations whose push CycleCloud's read-back could not confirm."},
        "findings": {"type": "array", "items": {"type": "string"}, "description": "codes from the last check"},
    },
}

TARGET_LIST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Targets",
    "type": "object",
    "additionalProperties": False,
    "required": ["targets"],
    "properties": {"targets": {"type": "array", "items": TARGET_STATUS_SCHEMA}},
}
