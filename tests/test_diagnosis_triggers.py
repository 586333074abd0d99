"""The diagnosis triggers through the real Functions worker: POST /api/targets/{target}/validate (a broken
credential is a 200 report), the hourly check_credential_health timer (records every target's status, an ERROR
record with structured fields for failing ones, one target's failure never stops the others) and
GET /api/targets (status, days to expiry, last rotation)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import pytest

from shared.diagnosis import REPORT_SCHEMA, TARGET_LIST_SCHEMA
from tests.fanout_support import deliver_through_host
from tests.functions_host import FunctionsHost
from tests.leaks import assert_no_leak
from tests.schema_check import validate_json, validate_response
from tests.twin import Twin
from tests.world import BROKEN_TARGET, CC_PASSWORD, CURRENT_SECRET, SUBSCRIPTION, TARGET, TENANT, World


@pytest.fixture
def host(functions_host: FunctionsHost) -> FunctionsHost:
    return functions_host


@pytest.fixture(autouse=True)
def _fresh_context(functions_host: FunctionsHost) -> Iterator[None]:
    functions_host.reset_app()  # each test's environment applies; clients close on the loop they were made on
    yield
    functions_host.reset_app()


def _setup(twin: Twin, world: World, cc_ca: str, monkeypatch: pytest.MonkeyPatch, storage: str | None = None) -> None:
    twin.load(world.scenario())
    for key, value in world.env(ca_bundle=cc_ca, storage=storage).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TARGETS_FILE", raising=False)


def test_validate_route_answers_200_with_the_report_even_when_the_secret_expired(
        host: FunctionsHost, twin: Twin, cc_ca: str, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(secret_end="now-2d")
    _setup(twin, world, cc_ca, monkeypatch)
    reply = host.http("validate", "POST", f"http://localhost/api/targets/{TARGET}/validate", body=b"",
                      route_params={"target": TARGET})
    assert reply.status == 200
    assert_no_leak(reply.body.decode(), CURRENT_SECRET, CC_PASSWORD)
    report = reply.json()
    validate_json(report, REPORT_SCHEMA)
    validate_response("/targets/{target}/validate", "post", 200, report, reply.headers)
    assert report["status"] == "failing"
    assert [f["code"] for f in report["findings"]] == ["secret.expired"]
    assert report["findings"][0]["evidence"]["aadsts"] == "AADSTS7000222"


def test_validate_route_for_an_unknown_target_is_404(host: FunctionsHost, twin: Twin, world: World, cc_ca: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _setup(twin, world, cc_ca, monkeypatch)
    reply = host.http("validate", "POST", "http://localhost/api/targets/nope/validate", route_params={"target": "nope"})
    assert reply.status == 404
    assert reply.json()["error"]["code"] == "target_not_found" == reply.headers["x-ms-error-code"]
    validate_response("/targets/{target}/validate", "post", 404, reply.json(), reply.headers)


def test_validate_route_refuses_a_body_that_names_anything(host: FunctionsHost, twin: Twin, world: World,
                                                           cc_ca: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _setup(twin, world, cc_ca, monkeypatch)
    reply = host.http("validate", "POST", f"http://localhost/api/targets/{TARGET}/validate",
                      body=b'{"principal_id": "x"}', route_params={"target": TARGET})
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "unknown_field" and "'principal_id'" in reply.json()["error"]["message"]
    validate_response("/targets/{target}/validate", "post", 400, reply.json(), reply.headers)


def test_health_timer_records_every_target_and_alerts_on_the_failing_one(
        host: FunctionsHost, twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    broken = {"name": BROKEN_TARGET, "mode": "service_principal", "tenant_id": TENANT,
              "app_id": "0f0e0d0c-0b0a-4909-8807-060504030201", "subscription_ids": [SUBSCRIPTION],
              "secret_name": "no-such-secret"}
    world = World(extra_targets=[broken])
    _setup(twin, world, cc_ca, monkeypatch, storage=azurite)
    monkeypatch.setenv("STATE_CONTAINER", "diag-timer")
    monkeypatch.setenv("CONTINUATION_QUEUE", f"diag-timer-{uuid.uuid4().hex[:12]}")  # this test's fan-out only
    caplog.set_level(logging.INFO)

    host.timer("check_credential_health")
    assert deliver_through_host(host) == 2  # the timer fans out: one queued health check per target

    alerts = [r for r in caplog.records if r.levelno == logging.ERROR and getattr(r, "target", None) == BROKEN_TARGET]
    assert alerts, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    alert = alerts[0]
    assert alert.health_status == "failing"  # type: ignore[attr-defined]
    assert "secret.missing_in_vault" in alert.finding_codes  # type: ignore[attr-defined]
    assert not any(r.levelno == logging.ERROR and getattr(r, "target", None) == TARGET for r in caplog.records)
    assert_no_leak(caplog, CURRENT_SECRET, CC_PASSWORD)

    function_app_reset()
    reply = host.http("list_targets", "GET", "http://localhost/api/targets")
    assert reply.status == 200
    body = reply.json()
    validate_json(body, TARGET_LIST_SCHEMA)
    validate_response("/targets", "get", 200, body, reply.headers)
    by_name = {t["name"]: t for t in body["targets"]}
    assert by_name[TARGET]["status"] == "healthy" and by_name[BROKEN_TARGET]["status"] == "failing"
    assert 199 <= by_name[TARGET]["days_to_expiry"] <= 200
    assert by_name[TARGET]["last_rotation"] is None  # no rotation journal yet
    assert "secret.missing_in_vault" in by_name[BROKEN_TARGET]["findings"]
    assert json.dumps(body).count(CURRENT_SECRET) == 0


def test_target_list_before_any_health_check_reads_the_expiry_from_key_vault(
        host: FunctionsHost, twin: Twin, world: World, cc_ca: str, azurite: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _setup(twin, world, cc_ca, monkeypatch, storage=azurite)
    monkeypatch.setenv("STATE_CONTAINER", "diag-list-fresh")
    reply = host.http("list_targets", "GET", "http://localhost/api/targets")
    assert reply.status == 200
    (entry,) = reply.json()["targets"]
    assert entry["status"] is None and entry["checked_at"] is None
    assert 199 <= entry["days_to_expiry"] <= 200


def function_app_reset() -> None:
    import function_app

    function_app._context = None
