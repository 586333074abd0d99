"""The one check that secret values never reach what people or other systems read: logs, exception messages,
HTTP bodies, CLI output, telemetry, what the twin's services keep.

`assert_no_leak(where, *secrets)` reads `where` as text (see `readable`) and fails naming which secret leaked
and where, by its first three characters only, so the failure report does not itself print the secret.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest


def readable(where: Any) -> str:
    """Everything readable in `where`: a string as is; pytest's `caplog` as its formatted text (messages and
    tracebacks) plus every record's message; a log record as its message and exception text; an exception as its
    message, its attributes and `to_dict()` when it has one; a dict as JSON; a list or tuple item by item;
    anything else as `repr`."""
    if isinstance(where, str):
        return where
    if isinstance(where, bytes):
        return where.decode("utf-8", "replace")
    if isinstance(where, pytest.LogCaptureFixture):
        return "\n".join([where.text, *(r.getMessage() for r in where.records)])
    if isinstance(where, logging.LogRecord):
        return "\n".join([where.getMessage(), logging.Formatter().formatException(where.exc_info)
                          if where.exc_info else ""])
    if isinstance(where, BaseException):
        parts = [str(where), repr(where.__dict__)]
        to_dict = getattr(where, "to_dict", None)
        if callable(to_dict):
            parts.append(json.dumps(to_dict(), default=str, ensure_ascii=False))
        return "\n".join(parts)
    if isinstance(where, Mapping):
        return json.dumps(where, default=str, ensure_ascii=False)
    if isinstance(where, list | tuple):
        return "\n".join(readable(item) for item in where)
    return repr(where)


def assert_no_leak(where: Any, *secrets: str, min_length: int = 1) -> None:
    """Fail if any secret, or the secret with its surrounding whitespace trimmed, appears in `where`.

    `min_length` skips values shorter than it: for checks over every value a store holds, where empty values and
    short placeholders are not secrets. By default every secret is checked and an empty one is a mistake in the
    test (it would match any text)."""
    text = readable(where)
    for index, secret in enumerate(secrets):
        if min_length <= 1 and not secret.strip():
            raise ValueError(f"secret #{index} is empty or blank: it cannot be checked")
        if len(secret) < min_length:
            continue
        for form in dict.fromkeys([secret, secret.strip()]):
            if len(form) >= max(min_length, 1) and form in text:
                at = text.index(form)
                context = text[max(0, at - 40):at + len(form) + 40]
                maskable = [s for s in secrets if len(s.strip()) >= max(min_length, 3)]
                for other in sorted(maskable, key=len, reverse=True):
                    context = context.replace(other, "<SECRET>").replace(other.strip(), "<SECRET>")
                pytest.fail(f"a secret value leaked: secret #{index} ({secret.strip()[:3]}…) in "
                            f"{type(where).__name__}: …{context}…")
