"""Long-running operations through the real worker and Azurite's queue service: a rotation that must wait for
Entra ID propagation answers 202 (Location, Retry-After, operation) within the HTTP budget and then completes
by itself through the continuation queue (nobody calls the rotate route again); the status route follows it;
poison messages (five failed deliveries) are recorded, listed by /api/health, and never lost silently.

`QueueListener` does what the Functions host's queue trigger does: receive a visible message, invoke
`resume_operation` through the worker with the message's text, id and dequeue count, delete it when the
function returns, leave it for redelivery when it raises, and move it to `<queue>-poison` on the fifth failure."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.clock import now_iso
from shared.context import AppContext
from shared.operations import MAX_DEQUEUE_COUNT, ContinuationMessage, OperationKind, OperationRecord, OperationState
from shared.operations.queue import ContinuationQueue
from shared.operations.store import OperationStore
from tests.functions_host import FunctionsHost, InvocationFailed
from tests.rotation_invariants import check_invariants
from tests.rotation_support import apply_env, requests_of, rotation_env
from tests.schema_check import validate_response
from tests.twin import Twin
from tests.twin.faults import Fault
from tests.world import KEY_ID, TARGET, World

QUEUE = "remediator-continuations"
BUDGET = 10.0


class QueueListener:
    def __init__(self, host: FunctionsHost, connection: str, queue: str = QUEUE) -> None:
        codec: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(),
                                 "message_decode_policy": TextBase64DecodePolicy()}
        self.host = host
        self.queue = QueueClient.from_connection_string(connection, queue, **codec)
        self.poison = QueueClient.from_connection_string(connection, queue + "-poison", **codec)
        self.deliveries: list[tuple[str, int, bool]] = []  # message id, dequeue count, succeeded

    def poll_once(self, retry_visibility: int = 1) -> int:
        handled = 0
        for message in self.queue.receive_messages(visibility_timeout=retry_visibility, max_messages=4):
            handled += 1
            try:
                self.host.queue("resume_operation", message.content, message_id=message.id,
                                dequeue_count=message.dequeue_count or 1)
            except InvocationFailed:
                self.deliveries.append((message.id, message.dequeue_count or 1, False))
                if (message.dequeue_count or 1) >= MAX_DEQUEUE_COUNT:  # the host's maxDequeueCount
                    with contextlib.suppress(ResourceExistsError):
                        self.poison.create_queue()
                    self.poison.send_message(message.content)
                    self.queue.delete_message(message)
                    self.host.queue("record_poisoned_continuation", message.content, message_id=message.id,
                                    dequeue_count=1)
                continue
            self.deliveries.append((message.id, message.dequeue_count or 1, True))
            self.queue.delete_message(message)
        return handled

    def run_until(self, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll_once()
            if done():
                return
            time.sleep(0.3)
        raise AssertionError(f"not done within {timeout:g} s; deliveries: {self.deliveries}")


@pytest.fixture
def env(functions_host: FunctionsHost, twin: Twin, cc_ca: str, azurite: str,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def load(world: World, edit: Any = None, **settings: str) -> dict[str, str]:
        values = rotation_env(twin, world, cc_ca, azurite, edit=edit)
        values.update({"HTTP_BUDGET_SECONDS": str(BUDGET), "CONTINUATION_BACKOFF_SECONDS": "1",
                       "CONTINUATION_QUEUE": QUEUE + "-" + values["STATE_CONTAINER"][-8:], **settings})
        apply_env(monkeypatch, values)
        functions_host.reset_app()
        return values

    yield load
    functions_host.reset_app()


def operation(host: FunctionsHost, url_or_id: str) -> Any:
    operation_id = url_or_id.rsplit("/", 1)[-1]
    return host.http("operation", "GET", f"http://localhost/api/operations/{operation_id}",
                     route_params={"operation_id": operation_id})


def test_rotation_waiting_for_propagation_answers_202_and_completes_through_the_queue(
        functions_host: FunctionsHost, twin: Twin, env: Any) -> None:
    def slow(scenario: dict[str, Any]) -> None:
        scenario["propagation"] = {"new_secret_seconds": 14}

    values = env(World(secret_end="now+10d"), edit=slow)
    started = time.monotonic()
    reply = functions_host.http("rotate", "POST", f"http://localhost/api/targets/{TARGET}/rotate",
                                route_params={"target": TARGET})
    elapsed = time.monotonic() - started
    assert reply.status == 202, reply.body[:500]
    assert elapsed < BUDGET, elapsed
    body = reply.json()
    validate_response("/targets/{target}/rotate", "post", 202, body, reply.headers)
    assert body["status"] == "in_progress" and body["stage"] == "test"
    op = body["operation"]
    assert op["status"] == "running" and op["kind"] == "rotate" and op["requestedBy"] == "function key"
    assert reply.headers["Location"] == f"http://localhost/api/operations/{op['id']}"
    assert int(reply.headers["Retry-After"]) >= 1
    assert "continues on its own" in body["next"]
    check_invariants(twin, settled=False, initial_key_ids={KEY_ID})

    running = operation(functions_host, reply.headers["Location"])
    assert running.status == 200 and running.json()["status"] == "running" and "Retry-After" in running.headers
    validate_response("/operations/{operationId}", "get", 200, running.json(), running.headers)

    listener = QueueListener(functions_host, values["AzureWebJobsStorage"], values["CONTINUATION_QUEUE"])
    listener.run_until(lambda: operation(functions_host, op["id"]).json()["status"] != "running", timeout=90)

    final = operation(functions_host, op["id"])
    validate_response("/operations/{operationId}", "get", 200, final.json(), final.headers)
    result = final.json()
    assert result["status"] == "succeeded", json.dumps(result)[:800]
    assert result["outcome"]["status"] == "rotated" and result["outcome"]["operationId"] == body["operationId"]
    assert "Retry-After" not in final.headers
    assert requests_of(twin, "graph", "addPassword") == 1  # one credential: the queue resumed the same rotation
    assert all(ok for _, _, ok in listener.deliveries)
    check_invariants(twin, settled=True, initial_key_ids={KEY_ID})


def test_repeated_calls_share_one_running_operation_and_one_continuation(functions_host: FunctionsHost,
                                                                          twin: Twin, env: Any) -> None:
    def slow(scenario: dict[str, Any]) -> None:
        scenario["propagation"] = {"new_secret_seconds": 120}

    values = env(World(secret_end="now+10d"), edit=slow)
    ids = []
    for _ in range(2):
        reply = functions_host.http("rotate", "POST", f"http://localhost/api/targets/{TARGET}/rotate",
                                    route_params={"target": TARGET})
        assert reply.status == 202, reply.body[:300]
        ids.append(reply.json()["operation"]["id"])
        assert reply.headers["Location"].endswith(ids[-1])
    assert ids[0] == ids[1]
    queue = QueueClient.from_connection_string(values["AzureWebJobsStorage"], values["CONTINUATION_QUEUE"])
    assert queue.get_queue_properties().approximate_message_count == 1
    assert requests_of(twin, "graph", "addPassword") == 1


def test_remediation_answers_202_and_finishes_through_the_queue(functions_host: FunctionsHost, twin: Twin,
                                                                 env: Any) -> None:
    def slow(scenario: dict[str, Any]) -> None:
        scenario["propagation"] = {"new_secret_seconds": 14}

    values = env(World(secret_end="now-2d"), edit=slow)
    started = time.monotonic()
    reply = functions_host.http("remediate", "POST", f"http://localhost/api/targets/{TARGET}/remediate",
                                route_params={"target": TARGET}, headers=_caller("ops@contoso.com"))
    assert time.monotonic() - started < BUDGET
    assert reply.status == 202, reply.body[:500]
    validate_response("/targets/{target}/remediate", "post", 202, reply.json(), reply.headers)
    op = reply.json()["operation"]
    assert op["kind"] == "remediate" and op["requestedBy"] == "ops@contoso.com"

    listener = QueueListener(functions_host, values["AzureWebJobsStorage"], values["CONTINUATION_QUEUE"])
    listener.run_until(lambda: operation(functions_host, op["id"]).json()["status"] != "running", timeout=90)
    result = operation(functions_host, op["id"]).json()
    assert result["status"] == "succeeded", json.dumps(result)[:800]
    assert result["outcome"]["after"]["status"] == "healthy" and result["outcome"]["requestedBy"] == "ops@contoso.com"
    assert requests_of(twin, "graph", "addPassword") == 1


def test_a_continuation_that_keeps_failing_is_poisoned_recorded_and_listed_by_health(
        functions_host: FunctionsHost, twin: Twin, env: Any) -> None:
    values = env(World(secret_end="now+10d"))
    record = asyncio.run(_queued_operation(OperationKind.ROTATE))
    # the product's own Graph permission is gone: every delivery fails with a 502-class error
    twin.faults.add(Fault(service="graph", status=403, times=None,
                          body={"error": {"code": "Authorization_RequestDenied",
                                          "message": "Insufficient privileges to complete the operation."}}))
    listener = QueueListener(functions_host, values["AzureWebJobsStorage"], values["CONTINUATION_QUEUE"])
    listener.run_until(lambda: _poisoned_messages(listener.poison) >= 1, timeout=60)

    assert [count for _, count, ok in listener.deliveries] == [1, 2, 3, 4, 5]
    assert not any(ok for _, _, ok in listener.deliveries)
    result = operation(functions_host, record.id).json()
    assert result["status"] == "failed" and result["poisoned"] is True and result["failedDeliveries"] == 5
    assert result["error"]["code"] == "access_denied"
    health = functions_host.http("health", "GET", "http://localhost/api/health")
    validate_response("/health", "get", 200, health.json(), health.headers)
    (listed,) = health.json()["poisonedOperations"]
    assert listed["id"] == record.id and listed["target"] == TARGET
    container = BlobServiceClient.from_connection_string(values["AzureWebJobsStorage"]).get_container_client(
        values["STATE_CONTAINER"])
    assert f"operations/poisoned/{record.id}.json" in {b.name for b in container.list_blobs()}


def test_an_operation_whose_deliveries_died_without_an_answer_is_poisoned_from_the_poison_queue(
        functions_host: FunctionsHost, twin: Twin, env: Any) -> None:
    """Five deliveries that timed out or lost their worker never reached our error handling: the poison queue's
    trigger records the operation as poisoned instead of leaving it "running" for ever."""
    env(World())
    record = asyncio.run(_queued_operation(OperationKind.ROTATE))
    text = ContinuationMessage(record.id, OperationKind.ROTATE, TARGET, 1).to_json()
    functions_host.queue("record_poisoned_continuation", text, message_id="p1", dequeue_count=1)
    result = operation(functions_host, record.id).json()
    assert result["status"] == "failed" and result["poisoned"] is True
    assert result["error"]["code"] == "continuation_poisoned"
    (listed,) = functions_host.http("health", "GET", "http://localhost/api/health").json()["poisonedOperations"]
    assert listed["id"] == record.id
    functions_host.queue("record_poisoned_continuation", text, message_id="p1", dequeue_count=1)  # idempotent
    assert operation(functions_host, record.id).json()["updatedAt"] == result["updatedAt"]
    assert twin.request_log == []


def test_stale_foreign_and_unknown_messages_are_dropped_without_retry(functions_host: FunctionsHost, twin: Twin,
                                                                      env: Any) -> None:
    env(World())
    record = asyncio.run(_queued_operation(OperationKind.REMEDIATE, attempt=3))
    stale = ContinuationMessage(record.id, OperationKind.REMEDIATE, TARGET, 2).to_json()
    unknown = ContinuationMessage("f" * 32, OperationKind.ROTATE, TARGET, 1).to_json()
    for text in (stale, unknown, "not json", '{"v": 1, "operationId": "../x"}'):
        functions_host.queue("resume_operation", text, message_id="m1", dequeue_count=1)  # returns: no redelivery
    assert twin.request_log == []
    assert operation(functions_host, record.id).json()["status"] == "running"


def test_a_finished_remediation_records_its_outcome(functions_host: FunctionsHost, env: Any) -> None:
    env(World())
    record = asyncio.run(_queued_operation(OperationKind.REMEDIATE))
    functions_host.queue("resume_operation", ContinuationMessage(record.id, OperationKind.REMEDIATE, TARGET,
                                                                 1).to_json(), message_id="m2", dequeue_count=1)
    result = operation(functions_host, record.id).json()
    assert result["status"] == "succeeded" and result["outcome"]["result"] == "healthy"
    assert result["outcome"]["requestedBy"] == "tester"


def test_bad_operation_ids_and_unknown_operations(functions_host: FunctionsHost, env: Any) -> None:
    env(World())
    bad = operation(functions_host, "..%0d%0a")
    assert bad.status == 400 and bad.json()["error"]["code"] == "invalid_operation_id"
    missing = operation(functions_host, "0" * 32)
    assert missing.status == 404 and missing.json()["error"]["code"] == "operation_not_found"
    validate_response("/operations/{operationId}", "get", 404, missing.json(), missing.headers)


# -- helpers ------------------------------------------------------------------------------------------------


def _caller(name: str) -> dict[str, str]:
    return {"content-type": "application/json", "X-MS-CLIENT-PRINCIPAL-NAME": name}


async def _queued_operation(kind: OperationKind, attempt: int = 1) -> OperationRecord:
    """An operation as an HTTP 202 leaves it: a running record and its continuation on the queue."""
    async with AppContext.from_environment() as ctx:
        now = now_iso()
        record = OperationRecord(id="a" * 31 + str(attempt), kind=kind, target=TARGET, state=OperationState.RUNNING,
                                 created_at=now, updated_at=now, requested_by="tester", attempt=attempt)
        await OperationStore(ctx.clients.blob_service(), ctx.settings.storage.container).create(record)
        await ContinuationQueue(ctx.clients.continuation_queue()).send(
            ContinuationMessage(record.id, kind, TARGET, attempt), 0)
        return record


def _poisoned_messages(queue: QueueClient) -> int:
    try:
        return int(queue.get_queue_properties().approximate_message_count or 0)
    except ResourceNotFoundError:  # the host has not created the poison queue yet
        return 0


def test_backoff_and_continuation_options() -> None:
    from shared.operations.model import backoff_seconds
    from shared.operations.runner import _continuation_options

    assert [backoff_seconds(30, n) for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]
    now = now_iso()
    forced = OperationRecord(id="b" * 32, kind=OperationKind.ROTATE, target=TARGET, state=OperationState.RUNNING,
                             created_at=now, updated_at=now, requested_by="x", options={"force": True})
    assert _continuation_options(forced) == {"force": True}  # stopped before the rotation journaled its operation
    journaled = OperationRecord(**{**forced.__dict__, "outcome": {"operationId": "op-1"}})
    assert _continuation_options(journaled) == {"force": False}  # only resume it; never a second rotation
    parsed = ContinuationMessage.parse(ContinuationMessage("c" * 32, OperationKind.ROTATE, TARGET, 2).to_json())
    assert parsed == ContinuationMessage("c" * 32, OperationKind.ROTATE, TARGET, 2)
    for bad in ("", "[]", '{"v": 2}', '{"v": 1, "operationId": "' + "c" * 32 + '", "kind": "x", "target": "t", '
                '"attempt": 1}', '{"v": 1, "operationId": "' + "c" * 32 + '", "kind": "rotate", "target": "t", '
                '"attempt": true}'):
        assert ContinuationMessage.parse(bad) is None
