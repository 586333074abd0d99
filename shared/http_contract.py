"""The HTTP contract, in one place: JSON out (requests are parsed by `http_request`), and the single mapping
from domain errors to status codes and the error body `{"error": {"code", "message", "target", "details"}}`
(same code in the `x-ms-error-code` header). A failed credential check is a 200 report, never an error.
Unexpected exceptions become a 500 with no internals in the body (logged, secret-free, with the invocation)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import RemediatorError
from .http_request import log_safe

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


async def run_mapped(call: Callable[[], Awaitable[HttpResult]], route: str = "") -> HttpResult:
    """Run a handler; map domain errors once; never leak an unexpected exception's text. A message may quote a
    (short, escaped) prefix of caller input, so it reaches the log through `log_safe` too."""
    try:
        return await call()
    except RemediatorError as exc:
        log = logger.warning if exc.status < 500 else logger.error
        log("%s failed: %s %s (%s)", route or "request", exc.status, exc.code, log_safe(exc.message, 300),
            extra={"error_code": exc.code, "http_status": exc.status})
        return error_result(exc)
    except Exception:
        logger.exception("unexpected failure while handling %s", route or "a request")
        return HttpResult(500, {"error": {"code": "internal_error", "message": "An unexpected error occurred; "
                                          "see the Function's logs for this invocation.", "target": None,
                                          "details": {}}}, {"x-ms-error-code": "internal_error"})
