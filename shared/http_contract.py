"""The HTTP contract, in one place: JSON bodies in, JSON out, and the single mapping from domain errors to
status codes and the error body `{"error": {"code", "message", "target", "details"}}` (same code in the
`x-ms-error-code` header). A failed credential check is a 200 report, never an error. Unexpected exceptions
become a 500 with no internals in the body (they are logged, secret-free, with the invocation)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequestError, RemediatorError

logger = logging.getLogger(__name__)

JSON = "application/json; charset=utf-8"


@dataclass
class HttpResult:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        return json.dumps(self.body, indent=2, default=str)


def ok(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> HttpResult:
    return HttpResult(status, body, headers or {})


def error_result(exc: RemediatorError) -> HttpResult:
    return HttpResult(exc.status, {"error": exc.to_dict()}, {"x-ms-error-code": exc.code})


def parse_body(raw: bytes | None, schema: Mapping[str, type]) -> dict[str, Any]:
    """Parse a JSON object body whose keys must be in `schema` (name -> type). An empty body is `{}`."""
    if not raw or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequestError("The request body is not valid JSON.", reason=str(exc),
                              fix='Send a JSON object, e.g. {"dry_run": true}.') from None
    if not isinstance(data, dict):
        raise BadRequestError("The request body must be a JSON object.", fix='Send e.g. {"dry_run": true}.')
    problems = []
    for key, value in data.items():
        expected = schema.get(key)
        if expected is None:
            allowed = ", ".join(sorted(schema)) or "none"
            problems.append(f"'{key}' is not accepted (allowed: {allowed})")
        elif (expected is bool and not isinstance(value, bool)) or (expected is not bool and not isinstance(
                value, expected)):
            problems.append(f"'{key}' must be {expected.__name__}")
    if problems:
        raise BadRequestError("The request body is invalid: " + "; ".join(problems) + ".",
                              fix="Send only the documented fields (see the OpenAPI document at /api/openapi.json).",
                              details={"problems": problems})
    return data


async def run_mapped(call: Callable[[], Awaitable[HttpResult]]) -> HttpResult:
    """Run a handler; map domain errors once; never leak an unexpected exception's text."""
    try:
        return await call()
    except RemediatorError as exc:
        log = logger.warning if exc.status < 500 else logger.error
        log("request failed: %s (%s)", exc.code, exc.message)
        return error_result(exc)
    except Exception:
        logger.exception("unexpected failure while handling a request")
        return HttpResult(500, {"error": {"code": "internal_error", "message": "An unexpected error occurred; "
                                          "see the Function's logs for this invocation.", "target": None,
                                          "details": {}}}, {"x-ms-error-code": "internal_error"})
