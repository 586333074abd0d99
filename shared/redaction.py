"""Defence in depth against secret leaks.

The code never puts a secret value into a log line, exception or response on purpose. In addition, every
secret value the process handles is registered here, and `scrub()` (used by the adapters on any service
text they pass on) and `SecretFilter` (installed on the log handlers by the Function and the CLI) replace
registered values with `***` should one slip through anyway.

Where every record passes: `install_filter()` also installs a log record factory, so a record is scrubbed when
it is created (message, arguments, and the whole exception chain: `__cause__` and `__context__` too), before
any handler sees it, including handlers and OpenTelemetry exporters attached after start-up; `extra`
attributes, stored after the factory returns, are masked as they are stored (`_ScrubbingAttributes`).
`SecretFilter` on the handlers and `RedactingLogRecordProcessor` (which runs before the Azure Monitor
exporter) check again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
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


class RedactedException(Exception):
    """Stands in for a logged exception whose text held a secret: `args[0]` is its scrubbed message, and it
    prints as the scrubbed traceback of the whole chain."""

    def __init__(self, message: str, traceback_text: str) -> None:
        super().__init__(message)
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return self.traceback_text


# what a plain LogRecord has; anything else on a record came from `extra`
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _exception_chain_text(exc: BaseException) -> str:
    """Every message in the chain (cause and context too): what a traceback would print."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(str(current))
        parts.extend(str(a) for a in current.args if isinstance(a, str))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def scrub_record(record: logging.LogRecord) -> None:
    """Mask registered values in the record's message, exception chain and `extra` attributes, in place."""
    if not _secrets:
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed record is not ours to fix here
        message = None
    if message is not None:
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        original = record.exc_info[1]
        text = _exception_chain_text(original)
        if scrub(text) != text:
            # the live exception (and its causes) holds the secret: handlers get its scrubbed traceback instead
            # (`exc_text`, which logging's formatters print as is), and exporters that read `exc_info` (the
            # OpenTelemetry handler) a stand-in with the original type and the scrubbed message and traceback
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = (type(original), RedactedException(scrub(str(original)), record.exc_text),
                               original.__traceback__)
    if record.exc_text and scrub(record.exc_text) != record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info and scrub(record.stack_info) != record.stack_info:
        record.stack_info = scrub(record.stack_info)
    for key, value in list(vars(record).items()):
        if key not in _RECORD_FIELDS:
            cleaned_value = _scrub_value(value)
            if cleaned_value is not value:
                setattr(record, key, cleaned_value)


def _scrub_value(value: Any) -> Any:
    """A scrubbed copy of a string or a (nested) list/tuple/dict of them; the same object when nothing changed."""
    if isinstance(value, str):
        cleaned = scrub(value)
        return cleaned if cleaned != value else value
    if isinstance(value, (list, tuple)):
        items = [_scrub_value(v) for v in value]
        return type(value)(items) if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(value, dict):
        pairs = {k: _scrub_value(v) for k, v in value.items()}
        return pairs if any(pairs[k] is not value[k] for k in value) else value
    return value


class SecretFilter(logging.Filter):
    """Masks registered secret values in a record's message, arguments, exception chain and extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


_factory_lock = threading.Lock()


class _ScrubbingAttributes(dict[str, Any]):
    """A record's attribute dict that masks values as they are stored. `Logger.makeRecord` stores `extra` with
    `record.__dict__[key] = value` after the factory returns, so this is the one place that sees them for
    every handler, including ones without `SecretFilter`."""

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, _scrub_value(value) if _secrets and key not in _RECORD_FIELDS else value)


class _ScrubbingFactory:
    """Wraps the process's log record factory: every record is scrubbed as it is created."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        with contextlib.suppress(Exception):  # never let redaction break logging (logging here would recurse)
            scrub_record(record)
            record.__dict__ = _ScrubbingAttributes(record.__dict__)
        return record


def install_record_factory() -> None:
    """Once per process (idempotent): scrub every log record where it is made."""
    with _factory_lock:
        current = logging.getLogRecordFactory()
        if not isinstance(current, _ScrubbingFactory):
            logging.setLogRecordFactory(_ScrubbingFactory(current))


def redacting_log_record_processor() -> Any:
    """An OpenTelemetry log record processor that masks registered values in the body and every string
    attribute (extras, exception message and stack trace) before the exporter's processor sees the record.
    Imported lazily: OpenTelemetry is loaded only when telemetry is on."""
    from opentelemetry.sdk._logs import LogRecordProcessor

    class RedactingLogRecordProcessor(LogRecordProcessor):
        def on_emit(self, log_record: Any) -> None:
            record = getattr(log_record, "log_record", log_record)
            if isinstance(record.body, str):
                record.body = scrub(record.body)
            attributes = record.attributes
            if attributes:
                for key, value in list(attributes.items()):
                    cleaned = _scrub_value(value)
                    if cleaned is not value:
                        attributes[key] = cleaned

        def shutdown(self) -> None:
            return None

        def force_flush(self, timeout_millis: int = 30000) -> bool:  # noqa: ARG002 - OTel's signature
            return True

    return RedactingLogRecordProcessor()


def install_filter(logger: logging.Logger | None = None) -> None:
    """Scrub every record at creation (the record factory) and attach the filter to every handler of the
    logger (root by default), which also covers `extra` attributes."""
    install_record_factory()
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())
