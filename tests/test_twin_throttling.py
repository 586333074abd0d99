"""The twin enforces the services' documented limits (tests/twin/throttling.py), so a fan-out that floods ARM, Graph
or Key Vault is answered 429 with `Retry-After`, and the unmodified SDKs wait and retry as they would in Azure."""

from __future__ import annotations

import time
from typing import Any

from azure.identity import ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.authorization import AuthorizationManagementClient
from msgraph.generated.applications_with_app_id.applications_with_app_id_request_builder import (
    ApplicationsWithAppIdRequestBuilder,
)
from msgraph.graph_service_client import GraphServiceClient

from tests.twin import Twin
from tests.twin.http import Request
from tests.twin.throttling import DOCUMENTED_LIMITS, Throttle
from tests.world import APP_ID, CURRENT_SECRET, SECRET_NAME, SUBSCRIPTION, VAULT_URL, World

OTHER_SUBSCRIPTION = "22222222-3333-4444-5555-666666666666"


def _load(twin: Twin, throttling: Any) -> None:
    scenario = World().scenario()
    scenario["throttling"] = throttling
    twin.load(scenario)


def _throttled(twin: Twin, service: str) -> int:
    return sum(1 for r in twin.request_log if r.service == service and r.status == 429)


def _arm_get(path: str, method: str = "GET") -> Request:
    request = Request.build(method, "management.azure.com", 443, path, {}, b"")
    request.service = "arm"
    return request


def test_arm_reads_run_out_at_the_documented_bucket_per_caller_and_subscription() -> None:
    throttle = Throttle()
    capacity, _ = DOCUMENTED_LIMITS["arm_read"]
    path = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleAssignments"
    answers = [throttle.check(_arm_get(path), "caller-a") for _ in range(int(capacity) + 1)]
    assert all(a is None for a in answers[:-1])
    last = answers[-1]
    assert last is not None and last.status == 429
    assert last.headers["Retry-After"] == "1"
    assert b"TooManyRequests" in last.body
    # other partitions have their own buckets: another subscription, another caller, and writes
    assert throttle.check(_arm_get(path.replace(SUBSCRIPTION, OTHER_SUBSCRIPTION)), "caller-a") is None
    assert throttle.check(_arm_get(path), "caller-b") is None
    assert throttle.check(_arm_get(path + "/x", "PUT"), "caller-a") is None
    assert throttle.throttled == 1


def test_a_bucket_refills_at_its_documented_rate() -> None:
    throttle = Throttle()
    throttle.configure({"arm_write": [1, 20]})
    path = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleAssignments/x"
    assert throttle.check(_arm_get(path, "PUT"), "c") is None
    assert throttle.check(_arm_get(path, "PUT"), "c") is not None
    time.sleep(0.06)  # 20 tokens a second: one is back after 50 ms
    assert throttle.check(_arm_get(path, "PUT"), "c") is None


def test_limits_can_be_turned_off_and_unknown_names_are_refused() -> None:
    throttle = Throttle()
    throttle.configure(False)
    path = f"/subscriptions/{SUBSCRIPTION}/resourceGroups"
    assert all(throttle.check(_arm_get(path), "c") is None for _ in range(400))
    try:
        throttle.configure({"arm_reed": [1, 1]})
    except ValueError as exc:
        assert "arm_reed" in str(exc)
    else:
        raise AssertionError("an unknown limit name was accepted")


def test_key_vault_answers_429_over_its_limit_and_the_sdk_honours_retry_after(twin: Twin) -> None:
    _load(twin, {"keyvault": [3, 1]})
    started = time.monotonic()
    with SecretClient(VAULT_URL, ManagedIdentityCredential()) as kv:
        values = [kv.get_secret(SECRET_NAME).value for _ in range(4)]
    assert values == [CURRENT_SECRET] * 4
    assert _throttled(twin, "keyvault") >= 1
    assert time.monotonic() - started >= 0.9  # azure-core waited the Retry-After (1 s) before asking again


def test_arm_answers_429_over_its_limit_and_the_sdk_retries(twin: Twin) -> None:
    _load(twin, {"arm_read": [2, 2]})
    scope = f"/subscriptions/{SUBSCRIPTION}"
    with AuthorizationManagementClient(ManagedIdentityCredential(), SUBSCRIPTION) as client:
        counts = [len(list(client.role_assignments.list_for_scope(scope))) for _ in range(4)]
    assert len(set(counts)) == 1 and counts[0] > 0
    assert _throttled(twin, "arm") >= 1


async def test_graph_answers_429_over_its_limit_and_kiota_retries(twin: Twin) -> None:
    _load(twin, {"graph": [2, 2]})
    credential = AsyncManagedIdentityCredential()
    try:
        graph = GraphServiceClient(credentials=credential)
        builder: ApplicationsWithAppIdRequestBuilder = graph.applications_with_app_id(APP_ID)
        apps = [await builder.get() for _ in range(4)]
    finally:
        await credential.close()
    assert all(app is not None and app.app_id == APP_ID for app in apps)
    assert _throttled(twin, "graph") >= 1


def test_the_default_limits_leave_an_ordinary_run_alone(twin: Twin) -> None:
    _load(twin, True)
    with SecretClient(VAULT_URL, ManagedIdentityCredential()) as kv:
        for _ in range(20):
            kv.get_secret(SECRET_NAME)
    assert _throttled(twin, "keyvault") == 0
