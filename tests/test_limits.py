"""Per-service limits (shared/limits.py): a gate bounds requests in flight and their rate per key, holds a key
after a 429 for its Retry-After, keeps keys apart; the client factory's real SDK clients pass their gates on
every attempt (through the Azure twin), and a throttled vault is held rather than hammered."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared import limits
from shared.adapters.graph import GraphAdapter
from shared.adapters.vault import VaultAdapter
from shared.clients import ClientFactory
from shared.config import Settings
from tests.twin import Fault, Twin
from tests.world import APP_ID, SECRET_NAME


async def test_a_gate_bounds_requests_in_flight_and_their_rate() -> None:
    gate = limits.Gate(limits.Limit(concurrency=3, per_second=50.0, burst=5))

    async def request() -> None:
        async with gate.slot():
            await asyncio.sleep(0.02)

    started = time.monotonic()
    await asyncio.gather(*(request() for _ in range(30)))
    elapsed = time.monotonic() - started
    assert gate.peak_in_flight == 3
    assert elapsed >= (30 - 5) / 50 * 0.9, elapsed  # beyond the burst, 50 a second at most
    assert gate.in_flight == 0


async def test_a_429_holds_the_key_for_its_retry_after_and_keys_are_apart() -> None:
    throttled, other = limits.gate("vault", "a.vault.azure.net"), limits.gate("vault", "b.vault.azure.net")
    assert limits.gate("vault", "A.vault.azure.net") is throttled  # host names are case-insensitive
    throttled.hold(0.4)
    started = time.monotonic()
    async with other.slot():
        assert time.monotonic() - started < 0.1  # another vault is not held
    async with throttled.slot():
        assert time.monotonic() - started >= 0.35
    assert throttled.throttled == 1
    assert ("vault", "a.vault.azure.net") in limits.gates()


def test_each_event_loop_has_its_own_gates() -> None:
    async def one() -> limits.Gate:
        return limits.gate("arm", "sub")

    assert asyncio.run(one()) is not asyncio.run(one())  # a semaphore of a closed loop is never reused


def test_retry_after_and_keys() -> None:
    assert limits.retry_after_seconds({"retry-after": "7"}) == 7.0
    assert limits.retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert limits.retry_after_seconds({}) == 1.0
    sub = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    assert limits.arm_key(f"https://management.azure.com/subscriptions/{sub}/providers/x?api-version=1") == sub
    assert limits.arm_key("https://management.azure.com/providers/Microsoft.Authorization/x") == "tenant"
    assert limits.host_key("https://cc.contoso.com:8443/x") == "cc.contoso.com:8443"


async def test_the_factory_clients_pass_their_gates(clients: ClientFactory, twin: Twin) -> None:
    await GraphAdapter(clients).get_application(APP_ID)
    await VaultAdapter(clients).get_secret(SECRET_NAME)
    used = {service for service, _ in limits.gates()}
    assert {"graph", "vault"} <= used
    assert all(gate.in_flight == 0 for gate in limits.gates().values())


async def test_a_throttled_vault_is_held_not_hammered(clients: ClientFactory, twin: Twin) -> None:
    twin.faults.add(Fault(service="keyvault", status=429, retry_after=1, times=2,
                          body={"error": {"code": "Throttled", "message": "Too many requests"}}))
    vault = VaultAdapter(clients)
    started = time.monotonic()
    await asyncio.gather(*(vault.get_secret(SECRET_NAME) for _ in range(4)))
    (gate,) = [g for (service, _), g in limits.gates().items() if service == "vault"]
    assert gate.throttled >= 1
    assert time.monotonic() - started >= 1.0  # everyone waited the Retry-After, not just the throttled request


def test_each_instance_takes_its_share_of_the_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.config import load_settings
    from tests.world import World

    assert limits.share(limits.Limit(64, 160.0, 160), 40) == limits.Limit(1, 4.0, 4)
    assert limits.share(limits.Limit(8, 20.0, 20), 40) == limits.Limit(1, 0.5, 1)  # never none at all
    assert limits.share(limits.LIMITS["graph"], 1) == limits.LIMITS["graph"]  # the CLI: the whole budget

    env = World().env()
    assert load_settings(env).maximum_instance_count == 1
    assert load_settings({**env, "MAXIMUM_INSTANCE_COUNT": "40"}).maximum_instance_count == 40
    with pytest.raises(Exception, match="MAXIMUM_INSTANCE_COUNT"):
        load_settings({**env, "MAXIMUM_INSTANCE_COUNT": "0"})

    async def graph_gate() -> limits.Gate:
        return limits.gate("graph", "tenant")

    monkeypatch.setattr(limits, "_processes", 1)
    limits.configure(40)
    assert asyncio.run(graph_gate()).limit == limits.share(limits.LIMITS["graph"], 40)


def test_the_factory_shares_the_budgets_only_in_azure(settings: Settings, twin: Twin,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    monkeypatch.setattr(limits, "_processes", 1)
    ClientFactory(replace(settings, maximum_instance_count=40))  # the twin stands in for App Service's MSI
    assert limits._processes == 40
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    ClientFactory(replace(settings, maximum_instance_count=40))  # an operator's laptop: one process
    assert limits._processes == 1
