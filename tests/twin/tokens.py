"""Access tokens the twin issues: opaque strings mapped to who asked, for which audience, until when."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

TOKEN_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class TokenInfo:
    tenant_id: str
    object_id: str  # the caller's principal object id
    app_id: str  # the caller's client id
    audience: str  # e.g. https://management.azure.com
    expires: datetime


class Tokens:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, TokenInfo] = {}

    def issue(self, tenant_id: str, object_id: str, app_id: str, audience: str, now: datetime) -> tuple[str, TokenInfo]:
        # Shaped like a JWT so nothing downstream trips over an unusual token, but opaque to the SDKs.
        token = f"eyJ0eXAiOiJKV1QifQ.{secrets.token_urlsafe(24)}.{secrets.token_urlsafe(16)}"
        info = TokenInfo(tenant_id, object_id, app_id, audience.rstrip("/"), now + TOKEN_LIFETIME)
        with self._lock:
            self._tokens[token] = info
        return token, info

    def lookup(self, token: str | None) -> TokenInfo | None:
        if not token:
            return None
        with self._lock:
            return self._tokens.get(token)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()
