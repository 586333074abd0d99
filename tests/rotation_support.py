"""Shared set-up for the rotation tests: a world loaded into the twin, Azurite as the Functions storage
(a fresh container per test, so journals never leak between tests) and the product's settings."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.twin import Twin
from tests.world import World

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
