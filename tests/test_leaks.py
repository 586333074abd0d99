"""The leak check itself: it must fail when a secret is there, in every form the tests hand it, and its failure
must not print the secret."""

from __future__ import annotations

import logging

import pytest

from shared.errors import RemediatorError
from tests.leaks import assert_no_leak

SECRET = "Lk9Q~a-secret-value-for-the-leak-check-01"


def _fails(where: object, *secrets: str, **kwargs: int) -> str:
    with pytest.raises(pytest.fail.Exception) as failed:
        assert_no_leak(where, *secrets, **kwargs)
    return str(failed.value)


def test_a_secret_in_text_fails_without_printing_it() -> None:
    message = _fails(f"token={SECRET}; done", "other-secret-value", SECRET)
    assert "secret #1 (Lk9…)" in message and "<SECRET>" in message and SECRET not in message
    assert_no_leak("nothing here", SECRET)


def test_the_trimmed_secret_is_looked_for_too() -> None:
    assert "<SECRET>" in _fails(f"x {SECRET} y", f"  {SECRET}\r\n")


def test_every_source_is_read() -> None:
    record = logging.LogRecord("shared", logging.INFO, __file__, 1, "pushed %s", (SECRET,), None)
    error = RemediatorError("failed", reason="r", fix="f", details={"value": SECRET})
    for where in ([record], record, error, {"body": [SECRET]}, [b"ok", SECRET.encode()], ("a", SECRET)):
        _fails(where, SECRET)


def test_caplog_is_read(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="shared.test_leaks")
    logging.getLogger("shared.test_leaks").debug("value %s", SECRET)
    _fails(caplog, SECRET)


def test_short_values_are_skipped_only_when_asked() -> None:
    assert_no_leak("ab", "ab", SECRET, min_length=6)
    _fails("ab", "ab")
    with pytest.raises(ValueError, match="empty or blank"):
        assert_no_leak("text", " ")
