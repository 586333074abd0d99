"""function_app.py as the Functions host sees it: indexed and invoked through the real azure-functions-runtime
worker handlers (Python 3.13), with the twin behind it."""

from __future__ import annotations

import json

import pytest

from shared.operations import MAX_DEQUEUE_COUNT
from tests.functions_host import ROOT, FunctionsHost
from tests.twin import Twin
from tests.world import TARGET

EXPECTED_ROUTES = {
    "health": ("health", ["GET"]),
    "openapi": ("openapi.json", ["GET"]),
    "list_targets": ("targets", ["GET"]),
    "validate": ("targets/{target}/validate", ["POST"]),
    "rotate": ("targets/{target}/rotate", ["POST"]),
    "rotation": ("targets/{target}/rotation", ["GET"]),
    "reconcile_roles": ("targets/{target}/roles/reconcile", ["POST"]),
    "remediate": ("targets/{target}/remediate", ["POST"]),
    "cyclecloud_probe": ("targets/{target}/cyclecloud/probe", ["POST"]),
    "migrate_to_managed_identity": ("targets/{target}/migrate-to-managed-identity", ["POST"]),
    "operation": ("operations/{operation_id}", ["GET"]),
}
EXPECTED_TIMERS = {"rotate_due_secrets": "%ROTATION_SCHEDULE%", "check_credential_health": "%HEALTH_SCHEDULE%"}


@pytest.fixture
def host(functions_host: FunctionsHost) -> FunctionsHost:
    return functions_host


def test_worker_indexes_every_function(host: FunctionsHost) -> None:
    assert set(host.metadata) == set(EXPECTED_ROUTES) | set(EXPECTED_TIMERS) | {"resume_operation",
                                                                                 "record_poisoned_continuation"}
    for meta in host.metadata.values():
        assert meta.language == "python"
        assert meta.script_file.endswith("function_app.py")


@pytest.mark.parametrize("name", sorted(EXPECTED_ROUTES))
def test_http_bindings_have_route_methods_and_function_auth(host: FunctionsHost, name: str) -> None:
    trigger, output = host.raw_bindings(name)
    route, methods = EXPECTED_ROUTES[name]
    assert trigger["type"] == "httpTrigger" and trigger["direction"] == "IN"
    assert trigger["route"] == route
    assert trigger["methods"] == methods
    assert trigger["authLevel"] == "FUNCTION"
    assert output == {"direction": "OUT", "type": "http", "name": "$return"}


@pytest.mark.parametrize("name", sorted(EXPECTED_TIMERS))
def test_timer_schedules_come_from_app_settings(host: FunctionsHost, name: str) -> None:
    (trigger,) = host.raw_bindings(name)
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == EXPECTED_TIMERS[name]
    assert trigger["runOnStartup"] is False
    assert trigger["useMonitor"] is True


def test_continuations_are_a_queue_trigger_on_the_functions_storage(host: FunctionsHost) -> None:
    (trigger,) = host.raw_bindings("resume_operation")
    assert trigger["type"] == "queueTrigger" and trigger["direction"] == "IN"
    assert trigger["queueName"] == "remediator-continuations" and trigger["connection"] == "AzureWebJobsStorage"
    (poison,) = host.raw_bindings("record_poisoned_continuation")
    assert poison["type"] == "queueTrigger" and poison["queueName"] == "remediator-continuations-poison"
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queues["maxDequeueCount"] == 5 == MAX_DEQUEUE_COUNT and queues["messageEncoding"] == "base64"


def test_health_answers_through_the_worker(host: FunctionsHost, product_env: dict[str, str], twin: Twin) -> None:
    host.reset_app()  # settings are read on first use; this test's environment applies
    reply = host.http("health", "GET", "http://localhost/api/health")
    assert reply.status == 200
    body = reply.json()
    assert body["status"] == "ok" and body["targets"] == [TARGET]
    assert reply.headers["Content-Type"].startswith("application/json")


def test_bad_configuration_is_an_error_body_listing_every_problem(host: FunctionsHost, twin: Twin,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARGETS", '[{"name": "Bad Name", "tenant_id": "contoso", "subscription_ids": []}]')
    monkeypatch.setenv("KEY_VAULT_URL", "http://not-a-vault")
    host.reset_app()
    reply = host.http("health", "GET", "http://localhost/api/health")
    host.reset_app()
    assert reply.status == 500
    error = reply.json()["error"]
    assert error["code"] == "invalid_configuration" == reply.headers["x-ms-error-code"]
    problems = error["details"]["problems"]
    assert any(p.startswith("KEY_VAULT_URL:") for p in problems)
    assert any("tenant_id: 'contoso' is not a GUID" in p for p in problems)
    assert any(".name:" in p for p in problems)
    assert any("subscription_ids" in p for p in problems)
