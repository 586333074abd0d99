"""Small HTTP primitives the twin's services share: request, response, routing, error bodies."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


@dataclass
class Request:
    method: str
    host: str  # lowercased, no port
    port: int
    path: str  # decoded, duplicate slashes collapsed, no trailing slash (except "/")
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]  # lowercased names
    body: bytes
    service: str = ""
    operation: str = ""
    params: dict[str, str] = field(default_factory=dict)
    seq: int = 0  # global request number (1-based) across the whole twin

    @classmethod
    def build(cls, method: str, host: str, port: int, target: str, headers: dict[str, str], body: bytes) -> Request:
        parts = urlsplit(target)
        path = re.sub(r"/{2,}", "/", unquote(parts.path)) or "/"
        if len(path) > 1:
            path = path.rstrip("/")
        query = {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
        return cls(method.upper(), host.lower(), port, path, target, query, headers, body)

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v for k, v in parse_qsl(self.body.decode("utf-8"), keep_blank_values=True)}

    @property
    def bearer(self) -> str | None:
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    h = {"Content-Type": "application/json; charset=utf-8"}
    h.update(headers or {})
    return Response(status, json.dumps(payload).encode("utf-8"), h)


def empty(status: int = 204, headers: dict[str, str] | None = None) -> Response:
    return Response(status, b"", headers or {})


class HttpError(Exception):
    """Raised by handlers to answer with an error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    regex: re.Pattern[str]
    operation: str
    handler: Handler


class Router:
    """Maps (method, path) to an operation name and handler. `{name}` matches one segment,
    `{name:path}` matches one or more segments (e.g. an ARM scope). Matching is case-insensitive."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, operation: str, handler: Handler) -> None:
        regex = ""
        for part in re.split(r"(\{[^}]+\})", pattern):
            if part.startswith("{"):
                name, _, kind = part[1:-1].partition(":")
                regex += f"(?P<{name}>.+?)" if kind == "path" else f"(?P<{name}>[^/]+)"
            else:
                regex += re.escape(part)
        self.routes.append(Route(method.upper(), re.compile(f"^{regex}$", re.IGNORECASE), operation, handler))

    def match(self, request: Request) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.method != request.method and route.method != "*":
                continue
            m = route.regex.match(request.path)
            if m:
                return route, {k: v for k, v in m.groupdict().items()}
        return None
