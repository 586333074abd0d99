"""Helpers the twin's services share: authenticating callers by their bearer token."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..http import HttpError, Request, json_response
from ..tokens import TokenInfo

if TYPE_CHECKING:
    from ..server import Twin


def require_token(twin: Twin, request: Request, audience: str, *, challenge: dict[str, str] | None = None) -> TokenInfo:
    """The caller's token, or a 401 in the service's own shape."""
    info = twin.tokens.lookup(request.bearer)
    if info is None or info.audience.rstrip("/") != audience.rstrip("/"):
        headers = challenge or {}
        message = "Access token is empty." if request.bearer is None else "Access token validation failure."
        raise HttpError(json_response(401, {"error": {"code": "InvalidAuthenticationToken", "message": message}},
                                      headers))
    return info
