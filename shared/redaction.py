"""Defence in depth against secret leaks.

The code never puts a secret value into a log line, exception or response on purpose. In addition, every
secret value the process handles is registered here, and `scrub()` (used by the adapters on any service
text they pass on) and `SecretFilter` (installed on the log handlers by the Function and the CLI) replace
registered values with `***` should one slip through anyway.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

MASK = "***"
_MIN_LENGTH = 6  # shorter strings are too likely to match innocent text
_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    if not value:
        return
    with _lock:
        for candidate in (value, value.strip()):
            if len(candidate) >= _MIN_LENGTH:
                _secrets.add(candidate)


def scrub(text: str, *extra: str | None) -> str:
    with _lock:
        values = sorted(_secrets | {e for e in extra if e and len(e) >= _MIN_LENGTH}, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


class SecretFilter(logging.Filter):
    """Masks registered secret values in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix here
            return True
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = str(record.exc_info[1])
            if scrub(text) != text:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


def install_filter(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of the logger (root by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())


def _reset_for_tests() -> Any:  # pragma: no cover - tests only
    with _lock:
        _secrets.clear()
