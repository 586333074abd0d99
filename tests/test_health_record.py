"""The health sweep's record of a target (health/<target>.json in the state container): written with one request
when the container exists, and into a container it creates when it does not (the first record ever)."""

from __future__ import annotations

import asyncio
import json

import pytest
from azure.storage.blob import BlobServiceClient

from shared.context import AppContext
from shared.diagnosis import check_all_targets
from tests.rotation_support import apply_env, rotation_env
from tests.twin import Twin
from tests.world import TARGET, World


async def _sweep() -> list[bool]:
    async with AppContext.from_environment() as ctx:
        return [r.recorded for r in (await check_all_targets(ctx)).results]


def test_the_first_record_creates_the_container_and_later_ones_overwrite_it(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = rotation_env(twin, World(), cc_ca, azurite)
    apply_env(monkeypatch, env)
    container = BlobServiceClient.from_connection_string(azurite).get_container_client(env["STATE_CONTAINER"])
    assert not container.exists()
    assert asyncio.run(_sweep()) == [True]
    first = json.loads(container.download_blob(f"health/{TARGET}.json").readall())
    assert asyncio.run(_sweep()) == [True]
    second = json.loads(container.download_blob(f"health/{TARGET}.json").readall())
    assert first["target"] == second["target"] == TARGET and second["status"] == "healthy"
    assert second["checked_at"] >= first["checked_at"]
