"""Rotation under the tenant-wide default app management policy (no policy assigned to the app): the product
falls back to the tenant default, which the twin can enable (`tenants[].default_app_management_policy`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.context import AppContext
from shared.rotation import RotationStage, RotationStatus, rotate_target
from tests.rotation_invariants import check_invariants, snapshot
from tests.rotation_support import apply_env, requests_of, rotation_env
from tests.twin import Twin
from tests.world import KEY_ID, TARGET, World


def tenant_policy(max_days: int | None = None, blocked: bool = False, can_read: bool = True) -> Any:
    def edit(scenario: dict[str, Any]) -> None:
        scenario["tenants"][0]["default_app_management_policy"] = {
            "enabled": True, "max_password_lifetime_days": max_days, "password_addition_blocked": blocked}
        if can_read:
            scenario["principals"][0]["graph_app_roles"].append("Policy.Read.ApplicationConfiguration")
    return edit


async def rotate(**kwargs: Any) -> Any:
    async with AppContext.from_environment() as ctx:
        return await rotate_target(ctx, TARGET, deadline_seconds=120, **kwargs)


async def test_tenant_default_lifetime_is_read_and_respected(twin: Twin, cc_ca: str, azurite: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now+10d"), cc_ca, azurite,
                                        edit=tenant_policy(max_days=45), rotation={"lifetime_days": 180}))
    outcome = await rotate()
    assert outcome.status is RotationStatus.ROTATED, outcome.to_dict()
    snap = check_invariants(twin, settled=True, initial_key_ids={KEY_ID})
    lifetime = snap.credentials[-1]["end"] - datetime.now(UTC)
    assert lifetime <= timedelta(days=45)  # the tenant's maximum, not the configured 180 days
    assert any("180" in w for w in outcome.warnings), outcome.warnings  # says it used less than configured
    policy_reads = [r for r in twin.request_log if r.operation == "getDefaultAppManagementPolicy"]
    assert policy_reads and all(r.status == 200 for r in policy_reads)  # the fallback was really read


async def test_tenant_default_refusal_is_survived_when_the_policy_cannot_be_read(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now+10d"), cc_ca, azurite,
                                        edit=tenant_policy(max_days=45, can_read=False),
                                        rotation={"lifetime_days": 180}))
    outcome = await rotate()
    # Graph's refusal names the tenant default policy but not its maximum: the product must stop cleanly,
    # leaving nothing half-created, and say what limits the lifetime
    assert outcome.status is RotationStatus.FAILED and outcome.stage is RotationStage.CREATE, outcome.to_dict()
    assert outcome.error and outcome.error["code"] == "credential_lifetime_policy"
    assert requests_of(twin, "graph", "addPassword") >= 1
    assert len(snapshot(twin).credentials) == 1
    check_invariants(twin, settled=True, initial_key_ids={KEY_ID})


async def test_tenant_default_blocking_passwords_fails_without_side_effects(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now+10d"), cc_ca, azurite,
                                        edit=tenant_policy(blocked=True)))
    outcome = await rotate()
    assert outcome.status is RotationStatus.FAILED, outcome.to_dict()
    assert len(snapshot(twin).credentials) == 1
    check_invariants(twin, settled=True, initial_key_ids={KEY_ID})
