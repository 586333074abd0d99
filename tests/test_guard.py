"""The test run's network guard and the twin's proxy refuse anything outside 127.0.0.1."""

from __future__ import annotations

import socket

import pytest
import requests

from tests.twin import Twin


def test_guard_refuses_a_non_loopback_connection() -> None:
    import tests.conftest as conftest

    before = len(conftest._violations)
    with pytest.raises(OSError, match="test guard"), socket.socket() as s:
        s.connect(("10.255.255.1", 443))
    # the attempt is recorded; the session would fail on it, so forget this deliberate one
    assert len(conftest._violations) == before + 1
    del conftest._violations[before:]


def test_the_proxy_refuses_unmodelled_hosts_and_records_them(twin: Twin) -> None:
    with pytest.raises(requests.exceptions.ProxyError):
        requests.get("https://example.com/", timeout=5)
    assert twin.unrouted == ["example.com"]
    twin.unrouted.clear()  # the fixture fails tests that reach unmodelled hosts; this one did on purpose
