"""POST /api/targets/{target}/migrate-to-managed-identity through the real Functions worker: a dry run by
default that changes nothing, and an applied migration that waits for role propagation longer than the HTTP
budget: it answers 202 and finishes through the queue continuation, without another call."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.migration import MigrationStage, runner
from shared.migration.store import MigrationStore
from tests.functions_host import FunctionsHost
from tests.schema_check import validate_response
from tests.test_http_operations import BUDGET, QueueListener, operation
from tests.test_http_operations import env as env  # the worker + Azurite fixture, reused
from tests.test_migration import account, assert_migrated, identity_off
from tests.twin import Twin
from tests.world import TARGET, World

ROUTE = "/targets/{target}/migrate-to-managed-identity"
URL = f"http://localhost/api/targets/{TARGET}/migrate-to-managed-identity"


def call(host: FunctionsHost, body: bytes = b"") -> Any:
    return host.http("migrate_to_managed_identity", "POST", URL, body=body, route_params={"target": TARGET},
                     headers={"Content-Type": "application/json"} if body else None)


async def stage_of(values: dict[str, str]) -> MigrationStage | None:
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient.from_connection_string(values["AzureWebJobsStorage"]) as service:
        journal = (await MigrationStore(service, values["STATE_CONTAINER"]).read_migration(TARGET)).journal
    return journal.stage if journal else None


def test_the_route_plans_by_default_and_changes_nothing(functions_host: FunctionsHost, twin: Twin, env: Any) -> None:
    env(World(transport="runcommand"), edit=identity_off)
    before = (account(twin), sorted(twin.state.role_assignments))
    reply = call(functions_host)
    assert reply.status == 200, reply.body[:400]
    body = reply.json()
    validate_response(ROUTE, "post", 200, body, reply.headers)
    assert body["dry_run"] is True and body["status"] == "planned"
    assert [s["name"] for s in body["steps"]][:3] == ["preflight", "identity", "roles"]
    assert (account(twin), sorted(twin.state.role_assignments)) == before
    # reading the account over Run Command is a PUT and DELETE of a `ccr-show-*` command: a read
    writes = [r for r in twin.request_log if r.method in ("PUT", "PATCH", "POST", "DELETE")
              and r.operation not in ("token", "getToken") and "/runCommands/ccr-show-" not in r.path]
    assert not [r for r in writes if r.service in ("arm", "keyvault", "graph")], writes


def test_an_applied_migration_waiting_for_roles_answers_202_and_finishes_through_the_queue(
        functions_host: FunctionsHost, twin: Twin, env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "ROLE_PROPAGATION_SECONDS", BUDGET + 4)  # longer than the HTTP budget
    values = env(World(transport="runcommand"), edit=identity_off)
    reply = call(functions_host, b'{"dry_run": false}')
    assert reply.status == 202, reply.body[:600]
    body = reply.json()
    validate_response(ROUTE, "post", 202, body, reply.headers)
    assert body["status"] == "waiting" and body["operation"]["kind"] == "migrate"
    assert "role assignments" in body["message"] and body["retryAfterSeconds"] >= 1
    assert int(reply.headers["Retry-After"]) >= 1

    import asyncio

    assert asyncio.run(stage_of(values)) is MigrationStage.ROLES_ASSIGNED  # CycleCloud not switched yet

    listener = QueueListener(functions_host, values["AzureWebJobsStorage"], values["CONTINUATION_QUEUE"])
    op_id = body["operation"]["id"]
    listener.run_until(lambda: operation(functions_host, op_id).json()["status"] != "running", timeout=120)
    final = operation(functions_host, op_id).json()
    assert final["status"] == "succeeded", json.dumps(final)[:800]
    assert final["outcome"]["status"] == "migrated"
    assert asyncio.run(stage_of(values)) is MigrationStage.MODE_RECORDED
    assert_migrated(twin)
