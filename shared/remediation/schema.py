"""JSON Schema (2020-12, self-contained so OpenAPI 3.1 can embed it) of the remediation report: the body of
POST /api/targets/{target}/remediate and of `python -m shared remediate --json`. Tests validate real reports
against it, so the documented shape cannot drift."""

from __future__ import annotations

from typing import Any

from ..diagnosis.schema import FINDING_SCHEMA, REPORT_SCHEMA
from ..findings import FixAction
from .model import Outcome, Result

_EMBEDDED_REPORT = {k: v for k, v in REPORT_SCHEMA.items() if k != "$schema"}

ACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["action", "outcome", "addresses", "message", "reason", "fix", "details", "duration_ms"],
    "properties": {
        "action": {"type": "string", "enum": [a.value for a in FixAction]},
        "outcome": {"type": "string", "enum": [o.value for o in Outcome],
                    "description": "applied (changed something, verified) | nothing_to_do (ran, changed "
                                   "nothing) | failed | skipped (a dependency failed) | "
                                   "in_progress (resumable; call again) | deferred (time budget) | planned (dry run)"},
        "addresses": {"type": "array", "items": {"type": "string"}, "description": "finding codes it fixes"},
        "message": {"type": "string"},
        "reason": {"type": ["string", "null"], "description": "why it failed or was skipped"},
        "fix": {"type": ["string", "null"], "description": "what a person does about it"},
        "details": {"type": "object", "description": "the result of the module that did the work (role "
                                                     "assignments, rotation outcome, Key Vault version, ...)"},
        "duration_ms": {"type": "number", "minimum": 0},
    },
}

REMEDIATION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Remediation report",
    "description": "Before (a diagnosis report), the actions taken with their outcomes, after (a diagnosis "
                   "report), and the findings that still need a person.",
    "type": "object",
    "additionalProperties": False,
    "required": ["target", "dry_run", "result", "status", "message", "started_at", "duration_ms", "before",
                 "actions", "after", "needs_attention", "next"],
    "properties": {
        "target": {"type": "string"},
        "dry_run": {"type": "boolean"},
        "result": {"type": "string", "enum": [r.value for r in Result]},
        "status": {"type": "string", "enum": ["healthy", "degraded", "failing"],
                   "description": "The target's status as the call leaves it (before, on a dry run)."},
        "message": {"type": "string"},
        "started_at": {"type": "string", "format": "date-time"},
        "duration_ms": {"type": "number", "minimum": 0},
        "before": _EMBEDDED_REPORT,
        "actions": {"type": "array", "items": ACTION_SCHEMA},
        # object keywords (required, properties) apply only to objects, so this is "a report or null"
        "after": {**_EMBEDDED_REPORT, "type": ["object", "null"],
                  "description": "null on a dry run, or when the time budget ran out before the final validation"},
        "needs_attention": {"type": "array", "items": FINDING_SCHEMA},
        "next": {"type": "array", "items": {"type": "string"}, "description": "what to call next, if anything"},
        "statusUrl": {"type": "string", "description": "with result in_progress (HTTP 202): where to look: the "
                                                       "rotation's status, or (a role assignment still "
                                                       "propagating) the validate route"},
        "requestedBy": {"type": "string", "description": "HTTP only: who asked (the caller's identity label)"},
        "operation": {"type": "object", "description": "HTTP 202 only: the operation that continues the work "
                                                       "(see docs/http.md)"},
        "checkAgainAt": {"type": "string", "format": "date-time",
                         "description": "with a role assignment still propagating: when to validate again"},
        "retryAfterSeconds": {"type": "integer", "minimum": 1,
                              "description": "seconds until checkAgainAt (for a Retry-After header)"},
    },
}
