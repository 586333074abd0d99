"""The timers fan out through the continuation queue (shared/fanout.py): the rotation timer records one operation
per secret target and queues its first continuation; the health timer queues one health check per target; the
queue trigger processes one target per message (through the real worker and Azurite's queue service); a
poisoned health check is recorded and listed by /api/health; a target whose rotation already runs is not
queued twice."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.fanout import FanOut, HealthCheckMessage, is_health_check
from shared.operations import ContinuationMessage, OperationKind
from tests.functions_host import FunctionsHost
from tests.rotation_invariants import check_invariants
from tests.rotation_support import apply_env, requests_of, rotation_env
from tests.schema_check import validate_response
from tests.test_http_operations import QueueListener
from tests.twin import Twin
from tests.world import BROKEN_TARGET, KEY_ID, SUBSCRIPTION, TARGET, TENANT, World

QUEUE = "remediator-fanout"


@pytest.fixture
def env(functions_host: FunctionsHost, twin: Twin, cc_ca: str, azurite: str,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def load(world: World, **kwargs: Any) -> dict[str, str]:
        values = rotation_env(twin, world, cc_ca, azurite, **kwargs)
        values.update({"CONTINUATION_BACKOFF_SECONDS": "1",
                       "CONTINUATION_QUEUE": QUEUE + "-" + values["STATE_CONTAINER"][-8:]})
        apply_env(monkeypatch, values)
        functions_host.reset_app()
        return values

    yield load
    functions_host.reset_app()


def _queue(values: dict[str, str]) -> QueueClient:
    codec: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(),
                             "message_decode_policy": TextBase64DecodePolicy()}
    return QueueClient.from_connection_string(values["AzureWebJobsStorage"], values["CONTINUATION_QUEUE"], **codec)


def _peek(values: dict[str, str]) -> list[str]:
    return [m.content for m in _queue(values).peek_messages(max_messages=32)]


def _operation(host: FunctionsHost, operation_id: str) -> Any:
    return host.http("operation", "GET", f"http://localhost/api/operations/{operation_id}",
                     route_params={"operation_id": operation_id}).json()


def test_rotation_timer_queues_one_operation_per_target_and_the_queue_rotates_it(
        functions_host: FunctionsHost, twin: Twin, env: Any) -> None:
    values = env(World(secret_end="now+10d"))
    functions_host.timer("rotate_due_secrets")
    assert twin.request_log == []  # the timer only queues: no Graph, Key Vault or CycleCloud call
    (text,) = _peek(values)
    message = ContinuationMessage.parse(text)
    assert message is not None and message.kind is OperationKind.ROTATE and message.target == TARGET
    queued = _operation(functions_host, message.operation_id)
    assert queued["status"] == "running" and queued["requestedBy"] == "timer"

    functions_host.timer("rotate_due_secrets")  # the next schedule while it still runs: not queued twice
    assert len(_peek(values)) == 1

    listener = QueueListener(functions_host, values["AzureWebJobsStorage"], values["CONTINUATION_QUEUE"])
    listener.run_until(lambda: _operation(functions_host, message.operation_id)["status"] != "running", timeout=90)
    final = _operation(functions_host, message.operation_id)
    assert final["status"] == "succeeded" and final["outcome"]["status"] == "rotated", json.dumps(final)[:800]
    assert requests_of(twin, "graph", "addPassword") == 1
    check_invariants(twin, settled=True, initial_key_ids={KEY_ID})


def test_rotation_timer_skips_managed_identity_targets(functions_host: FunctionsHost, twin: Twin, env: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    mi = {"name": "hpc-mi", "mode": "managed_identity", "tenant_id": TENANT,
          "subscription_ids": [SUBSCRIPTION],
          "vm_resource_id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Compute/"
                            "virtualMachines/cc"}
    caplog.set_level(logging.INFO, logger="function_app")
    values = env(World(), extra_targets=[mi])
    functions_host.timer("rotate_due_secrets")
    assert [ContinuationMessage.parse(t).target for t in _peek(values)] == [TARGET]  # type: ignore[union-attr]
    assert any("rotation sweep: 1 queued, 1 skipped" in r.getMessage() for r in caplog.records)


def test_health_timer_queues_one_check_per_target_and_each_is_recorded(
        functions_host: FunctionsHost, twin: Twin, env: Any, caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    broken = {"name": BROKEN_TARGET, "mode": "service_principal", "tenant_id": TENANT,
              "app_id": "0f0e0d0c-0b0a-4909-8807-060504030201", "subscription_ids": [SUBSCRIPTION],
              "secret_name": "no-such-secret"}
    values = env(world, extra_targets=[broken])
    functions_host.timer("check_credential_health")
    assert twin.request_log == []
    messages = [HealthCheckMessage.parse(t) for t in _peek(values)]
    assert sorted(m.target for m in messages if m) == sorted([TARGET, BROKEN_TARGET])
    assert len({m.sweep for m in messages if m}) == 1

    caplog.set_level(logging.INFO)
    listener = QueueListener(functions_host, values["AzureWebJobsStorage"], values["CONTINUATION_QUEUE"])
    listener.run_until(lambda: not _peek(values) and len(listener.deliveries) >= 2, timeout=90)
    assert all(ok for _, _, ok in listener.deliveries)
    alerts = [r for r in caplog.records if r.levelno == logging.ERROR and getattr(r, "target", None) == BROKEN_TARGET]
    assert alerts and alerts[0].health_status == "failing"  # type: ignore[attr-defined]

    functions_host.reset_app()
    reply = functions_host.http("list_targets", "GET", "http://localhost/api/targets")
    by_name = {t["name"]: t for t in reply.json()["targets"]}
    assert by_name[TARGET]["status"] == "healthy" and by_name[BROKEN_TARGET]["status"] == "failing"


def test_a_poisoned_health_check_is_recorded_and_listed_by_health(functions_host: FunctionsHost, twin: Twin,
                                                                  env: Any) -> None:
    values = env(World())
    text = HealthCheckMessage(TARGET, "s" * 32).to_json()
    for _ in range(2):  # idempotent: the same message recorded twice is one marker
        functions_host.queue("record_poisoned_continuation", text, message_id="p1", dequeue_count=1)
    health = functions_host.http("health", "GET", "http://localhost/api/health")
    validate_response("/health", "get", 200, health.json(), health.headers)
    (listed,) = health.json()["poisonedOperations"]
    assert listed["kind"] == "health" and listed["target"] == TARGET
    assert listed["error"]["code"] == "health_check_poisoned"
    container = BlobServiceClient.from_connection_string(values["AzureWebJobsStorage"]).get_container_client(
        values["STATE_CONTAINER"])
    assert f"operations/poisoned/{listed['id']}.json" in {b.name for b in container.list_blobs()}
    assert twin.request_log == []


def test_health_check_messages_parse_strictly() -> None:
    message = HealthCheckMessage("t1", "abc")
    assert HealthCheckMessage.parse(message.to_json()) == message and is_health_check(message.to_json())
    continuation = ContinuationMessage("c" * 32, OperationKind.ROTATE, "t1", 1).to_json()
    for other in (continuation, "", "[]", '{"v": 1, "kind": "health"}', '{"v": 2, "kind": "health", "target": "t",'
                  ' "sweep": "s"}', '{"v": 1, "kind": "health", "target": "", "sweep": "s"}'):
        assert not is_health_check(other)
    assert FanOut(queued=["a"], skipped={"b": "x"}, errors={"c": "service_error"}).summary() == \
        "1 queued, 1 skipped, 1 not queued (c)"


def test_the_queue_order_alternates_cyclecloud_servers() -> None:
    # an instance takes neighbouring messages as one batch and holds a small share of each server's limit: a batch
    # of one server's targets would queue behind that share while the other instances' shares sit idle
    from shared.config import CycleCloudConnection, Mode, Target
    from shared.fanout import spread

    def target(name: str, host: str | None) -> Target:
        return Target(name=name, mode=Mode.SERVICE_PRINCIPAL, tenant_id=TENANT, subscription_ids=(SUBSCRIPTION,),
                      cyclecloud=CycleCloudConnection(url=f"https://{host}") if host else None)

    fleet = [target("a1", "a.contoso.com"), target("a2", "A.contoso.com"), target("a3", "a.contoso.com"),
             target("b1", "b.contoso.com"), target("m1", None), target("b2", "b.contoso.com")]
    order = [t.name for t in spread(fleet)]
    assert order == ["a1", "b1", "m1", "a2", "b2", "a3"]
    assert sorted(order) == sorted(t.name for t in fleet), "every target exactly once"
