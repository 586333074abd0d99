"""Shared set-up for the rotation tests: a world loaded into the twin, Azurite as the Functions storage
(a fresh container per test, so journals never leak between tests) and the product's settings."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.twin import Twin
from tests.world import World, account_record

DEV = "hpc-dev"  # a second target on the same app registration (another CycleCloud account)
DEV_SECRET_NAME = "cyclecloud-dev-secret"
DEV_KEY_ID = "d1d2c3b4-a596-4788-9a0b-1c2d3e4f5a6b"
DEV_SECRET = "Dev8Q~dev-secret-value-0123456789abcdefg"

Edit = Callable[[dict[str, Any]], None]


def rotation_env(twin: Twin, world: World, cc_ca: str, azurite: str, *, rotation: dict[str, Any] | None = None,
                 edit: Edit | None = None, extra_targets: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """Load `world` (optionally edited) into the twin; return the product's environment for it."""
    scenario = world.scenario()
    if edit is not None:
        edit(scenario)
    twin.load(scenario)
    target = world.target(ca_bundle=cc_ca)
    target["rotation"] = {"test_successes": 2, "test_timeout_seconds": 20, "grace_hours": 0,
                          **(rotation or {})}
    env = world.env(ca_bundle=cc_ca, storage=azurite)
    env["TARGETS"] = json.dumps([target, *(extra_targets or [])])
    env["STATE_CONTAINER"] = f"rot-{uuid.uuid4().hex[:20]}"
    return env


def apply_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TARGETS_FILE", raising=False)


def requests_of(twin: Twin, service: str, operation: str) -> int:
    return sum(1 for r in twin.request_log if r.service == service and r.operation == operation)


def shared_app(scenario: dict[str, Any]) -> None:
    """hpc-dev: a second CycleCloud account on the same app registration, with its own secret."""
    app = scenario["applications"][0]
    app["password_credentials"].append({"key_id": DEV_KEY_ID, "secret": DEV_SECRET, "display_name": "initial-dev",
                                        "start": "now-100d", "end": "now+10d"})
    scenario["vaults"][0]["secrets"][DEV_SECRET_NAME] = [{"value": DEV_SECRET, "tags": {"keyId": DEV_KEY_ID}}]
    dev = account_record(DEV_SECRET)
    dev["Name"] = "azure-dev"
    scenario["cyclecloud_servers"][0]["accounts"].append(dev)


def dev_target(cc_ca: str) -> dict[str, Any]:
    target = copy.deepcopy(World().target(ca_bundle=cc_ca))
    target.update(name=DEV, secret_name=DEV_SECRET_NAME)
    target["cyclecloud"]["account"] = "azure-dev"
    target["rotation"] = {"test_successes": 1, "test_timeout_seconds": 20, "grace_hours": 0}
    return target
