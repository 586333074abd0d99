"""A cold `validate` fetches each thing once (issue 15): one managed-identity token per resource even though the
checks run concurrently (shared/single_flight.py), the CycleCloud password read once when the login works, one
token for the CycleCloud principal and one read of its CycleCloud account. Counted in the Azure twin's request
log."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from shared.context import AppContext
from shared.diagnosis import validate_target
from shared.single_flight import SingleFlightCredential
from tests.twin import Twin
from tests.world import TARGET, World


async def test_concurrent_requests_for_one_token_share_one_request() -> None:
    calls: list[tuple[str, ...]] = []

    class Slow:
        async def get_token(self, *scopes: str, **_options: Any) -> Any:
            calls.append(scopes)
            await asyncio.sleep(0.05)
            return f"token for {scopes[0]}"

        async def close(self) -> None:
            pass

    credential = SingleFlightCredential(Slow())  # type: ignore[arg-type]
    tokens = await asyncio.gather(*(credential.get_token("graph") for _ in range(5)), credential.get_token("arm"))
    assert calls == [("graph",), ("arm",)]
    assert tokens[:5] == ["token for graph"] * 5
    await credential.get_token("graph")  # finished requests are not kept: the inner credential's cache decides
    assert len(calls) == 3


def test_a_cold_validate_fetches_each_token_and_password_once(twin: Twin, cc_ca: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    twin.load(world.scenario())
    for key, value in world.env(ca_bundle=cc_ca).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TARGETS_FILE", raising=False)

    async def run() -> Any:
        async with AppContext.from_environment() as ctx:
            return await validate_target(ctx, TARGET)

    report = asyncio.run(run())
    assert report.status.value == "healthy"
    # one token each for ARM, Key Vault and Graph (the twin's log has no query: the MSI path is the same)
    assert sum(1 for r in twin.request_log if r.service == "msi") == 3
    reads = Counter((r.path, r.caller) for r in twin.request_log if r.service == "keyvault" and r.caller)
    assert reads and max(reads.values()) == 1, reads  # each secret read once (plus Key Vault's 401 challenge)
    # the CycleCloud principal's token: the token check's, which the ARM reads as that principal then reuse
    assert sum(1 for r in twin.request_log if r.service == "entra" and r.operation == "token") == 1
    # the CycleCloud account: read by the probe's account check, then compared from that same answer
    assert sum(1 for r in twin.request_log if r.service == "cyclecloud" and r.operation == "getAccount") == 1
