"""The rotation protocol end to end against the twin (real SDKs over HTTPS) and Azurite: every step's happy
path, the already-expired and missing-secret cases, adoption, lifetime clamped by policy, a rejected CycleCloud
push, propagation waits, a failed Key Vault write, dry run, status, the sweep, and concurrency."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.context import AppContext
from shared.errors import LockedError
from shared.rotation import RotationStage, RotationStatus, rotate_all_due, rotate_target, rotation_status
from tests.leaks import assert_no_leak
from tests.rotation_invariants import check_invariants, secret_works, snapshot
from tests.rotation_support import apply_env, requests_of, rotation_env
from tests.twin import Fault, Twin
from tests.world import (
    APP_OBJECT_ID,
    CC_PASSWORD,
    CURRENT_SECRET,
    KEY_ID,
    SECRET_NAME,
    TARGET,
    VAULT_NAME,
    World,
)

INITIAL = {KEY_ID}


def setup(twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, world: World | None = None,
          **kwargs: Any) -> dict[str, str]:
    env = rotation_env(twin, world or World(), cc_ca, azurite, **kwargs)
    apply_env(monkeypatch, env)
    return env


async def rotate(**kwargs: Any) -> Any:
    async with AppContext.from_environment() as ctx:
        return await rotate_target(ctx, TARGET, deadline_seconds=kwargs.pop("deadline_seconds", 120), **kwargs)


def all_secrets(twin: Twin) -> list[str]:
    return [*snapshot(twin).all_values(), CURRENT_SECRET, CC_PASSWORD]


async def test_not_due_changes_nothing_and_adopts_the_current_credential(twin: Twin, cc_ca: str, azurite: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch)
    outcome = await rotate()
    assert outcome.status is RotationStatus.NOT_DUE and outcome.http_status == 200
    assert requests_of(twin, "graph", "addPassword") == 0
    assert any("adopted credential " + KEY_ID in m for m in outcome.maintenance)
    async with AppContext.from_environment() as ctx:
        state = (await rotation_status(ctx, TARGET)).to_dict()
    assert state["adoptedKeyId"] == KEY_ID and state["current"] is None
    check_invariants(twin, settled=True, initial_key_ids=INITIAL)


async def test_due_secret_is_rotated_through_every_step(twin: Twin, cc_ca: str, azurite: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now+10d"), rotation={"lifetime_days": 90})
    outcome = await rotate()
    assert outcome.status is RotationStatus.ROTATED, outcome.to_dict()
    text = " | ".join(outcome.steps)
    for step in ("intent:", "create:", "test:", "push:", "commit:"):
        assert step in text
    # the replaced credential was created by a person, not the product: it is kept (and said so), never removed
    assert [k["keyId"] for k in outcome.kept] == [KEY_ID] and "did not create" in outcome.kept[0]["reason"]
    assert not any("retired" in m for m in outcome.maintenance)
    snap = check_invariants(twin, settled=True, initial_key_ids=INITIAL)
    assert [c["key_id"] for c in snap.credentials] == [KEY_ID, outcome.new_key_id]
    newest = snap.newest_enabled_main()
    assert newest is not None
    assert set(newest["tags"]) >= {"keyId", "appId", "tenantId", "operationId", "rotatedAt"}
    assert newest["tags"]["operationId"] == outcome.operation_id
    cred_end = snap.credentials[1]["end"]
    assert newest["expires"] == cred_end
    assert abs((cred_end - datetime.now(UTC)) - timedelta(days=90)) < timedelta(minutes=5)
    # the old main version stays enabled with its (kept) credential; the pending value is disabled after commit
    assert [v["enabled"] for v in snap.main] == [True, True]
    assert [v["enabled"] for v in snap.pending] == [False] and snap.pending[0]["tags"]["state"] == "committed"
    assert outcome.to_dict()["status"] == "rotated"
    async with AppContext.from_environment() as ctx:
        state = (await rotation_status(ctx, TARGET)).to_dict()
    assert state["history"][0]["id"] == outcome.operation_id and state["history"][0]["result"] == "committed"
    assert_no_leak([json.dumps(state), json.dumps(outcome.to_dict())], *all_secrets(twin), min_length=6)
    # a second call finds nothing to do
    assert (await rotate()).status is RotationStatus.NOT_DUE
    assert requests_of(twin, "graph", "addPassword") == 1


async def test_replaced_credential_is_kept_for_the_grace_period_then_retired(twin: Twin, cc_ca: str, azurite: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now+10d"), rotation={"grace_hours": 0.0015})
    first = await rotate()  # K0 (a person's) -> K1 (the product's): K0 is kept, it is not the product's
    assert first.status is RotationStatus.ROTATED and first.retire_after is None
    second = await rotate(force=True)  # K1 -> K2: K1 is the product's, retired after the grace period
    assert second.status is RotationStatus.ROTATED and second.retire_after
    assert second.previous_key_id == first.new_key_id
    snap = check_invariants(twin, settled=True, initial_key_ids=INITIAL | {str(first.new_key_id)})
    assert {c["key_id"] for c in snap.credentials} == {KEY_ID, first.new_key_id, second.new_key_id}
    k1_value = snap.main[-2]["value"]
    assert secret_works(twin, k1_value)  # the replaced secret still works during the grace period
    due = datetime.fromisoformat(str(second.retire_after).replace("Z", "+00:00"))
    await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.3)
    again = await rotate()
    assert again.status is RotationStatus.NOT_DUE
    assert any(f"retired replaced credential {first.new_key_id}" in m for m in again.maintenance)
    snap = check_invariants(twin, settled=True, initial_key_ids=INITIAL | {str(first.new_key_id)},
                            product_key_ids=frozenset({str(first.new_key_id)}))
    assert [c["key_id"] for c in snap.credentials] == [KEY_ID, second.new_key_id]
    assert [v["enabled"] for v in snap.main] == [True, False, True]  # K1's version disabled with its credential


async def test_expired_secret_is_rotated_without_needing_the_old_one(twin: Twin, cc_ca: str, azurite: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now-1d"))
    assert not secret_works(twin, CURRENT_SECRET)
    outcome = await rotate()
    assert outcome.status is RotationStatus.ROTATED and "expired" in (outcome.reason or "")
    check_invariants(twin, settled=True, initial_key_ids=INITIAL)


async def test_missing_stored_secret_is_due_and_leaves_unknown_credentials_alone(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def drop_main(scenario: dict[str, Any]) -> None:
        del scenario["vaults"][0]["secrets"][SECRET_NAME]

    setup(twin, cc_ca, azurite, monkeypatch, edit=drop_main)
    outcome = await rotate()
    assert outcome.status is RotationStatus.ROTATED and "no secret" in (outcome.reason or "")
    assert outcome.previous_key_id is None
    snap = check_invariants(twin, settled=True, initial_key_ids=INITIAL)
    assert KEY_ID in {c["key_id"] for c in snap.credentials}  # not ours to remove: we do not know it was replaced


async def test_first_contact_adopts_by_hint_when_the_stored_secret_has_no_tags(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def untag(scenario: dict[str, Any]) -> None:
        scenario["vaults"][0]["secrets"][SECRET_NAME][0]["tags"] = {}

    setup(twin, cc_ca, azurite, monkeypatch, edit=untag)
    outcome = await rotate()
    assert outcome.status is RotationStatus.NOT_DUE
    assert any(f"adopted credential {KEY_ID} (matched by hint)" in m for m in outcome.maintenance)
    forced = await rotate(force=True)
    assert forced.status is RotationStatus.ROTATED and forced.previous_key_id == KEY_ID


async def test_lifetime_is_clamped_to_the_app_management_policy(twin: Twin, cc_ca: str, azurite: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def limit(scenario: dict[str, Any]) -> None:
        scenario["applications"][0]["max_password_lifetime_days"] = 60
        scenario["principals"][0]["graph_app_roles"].append("Policy.Read.ApplicationConfiguration")

    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now+10d"), edit=limit,
          rotation={"lifetime_days": 180})
    twin.clock.advance(-120)  # Entra's clock two minutes behind ours: a lifetime of exactly 60 days is refused
    outcome = await rotate()
    assert outcome.status is RotationStatus.ROTATED, outcome.to_dict()
    assert any("using 59 days instead of 180" in w and "rotation.lifetime_days" in w for w in outcome.warnings)
    snap = check_invariants(twin, settled=True, initial_key_ids=INITIAL)
    end = snap.credentials[-1]["end"]
    assert timedelta(days=58) < end - datetime.now(UTC) <= timedelta(days=59)
    assert requests_of(twin, "graph", "addPassword") == 2  # refused once, then within the policy
    # the learned maximum is saved: the next rotation asks for 59 days at once, and is not refused again
    again = await rotate(force=True)
    assert again.status is RotationStatus.ROTATED, again.to_dict()
    assert requests_of(twin, "graph", "addPassword") == 3
    # 59-day secrets are due 29 days before expiry (half their life), not rotate_before_days=30: no churn
    assert any("due 29 days before expiry" in w for w in again.warnings)
    assert (await rotate()).status is RotationStatus.NOT_DUE


async def test_policy_maximum_at_or_below_the_lead_time_does_not_rotate_on_every_run(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def limit(scenario: dict[str, Any]) -> None:
        scenario["applications"][0]["max_password_lifetime_days"] = 20
        scenario["principals"][0]["graph_app_roles"].append("Policy.Read.ApplicationConfiguration")

    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now+10d"), edit=limit,
          rotation={"lifetime_days": 90, "rotate_before_days": 30})
    assert (await rotate()).status is RotationStatus.ROTATED
    for _ in range(2):  # a 19-day secret is not "due within 30 days" on every run
        outcome = await rotate()
        assert outcome.status is RotationStatus.NOT_DUE, outcome.to_dict()
    assert requests_of(twin, "graph", "addPassword") == 2
    async with AppContext.from_environment() as ctx:
        plan = (await rotate_target(ctx, TARGET, dry_run=True)).plan
    assert plan is not None and plan["leadDays"] == 9 and plan["lifetimeDays"] == 19
    from shared.diagnosis import validate_target

    async with AppContext.from_environment() as ctx:
        report = (await validate_target(ctx, TARGET, timeout_seconds=30)).to_dict()
    assert not [f for f in report["findings"] if f["code"] == "secret.expiring_soon"]  # the same rule as rotation
    limited = next(f for f in report["advice"] if f["code"] == "rotation.lifetime_limited")
    assert "20 days" in limited["detail"] and "rotated 9 days before expiry" in limited["detail"]


async def test_policy_limit_that_cannot_be_read_is_reported_exactly(twin: Twin, cc_ca: str, azurite: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def limit(scenario: dict[str, Any]) -> None:
        scenario["applications"][0]["max_password_lifetime_days"] = 60

    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now+10d"), edit=limit)
    outcome = await rotate()
    assert outcome.status is RotationStatus.FAILED and outcome.stage is RotationStage.CREATE
    assert outcome.error and outcome.error["code"] == "credential_lifetime_policy"
    assert "limits their lifetime" in outcome.message
    check_invariants(twin, settled=True, initial_key_ids=INITIAL)
    assert len(snapshot(twin).credentials) == 1


async def test_rejected_cyclecloud_push_keeps_the_old_secret_working_then_resumes(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now+10d"))
    twin.faults.add(Fault(service="cyclecloud", operation="updateAccount", status=400, times=None,
                          body={"code": "InvalidCredentials", "message": "Invalid Azure credentials provided."}))
    outcome = await rotate()
    assert outcome.status is RotationStatus.FAILED and outcome.stage is RotationStage.PUSH, outcome.to_dict()
    assert "keeps its old secret" in outcome.message and outcome.error
    snap = check_invariants(twin, settled=True, initial_key_ids=INITIAL)  # KV main == CycleCloud == old, works
    assert snap.cyclecloud_secret == CURRENT_SECRET
    assert [v["enabled"] for v in snap.pending] == [True]  # the tested value waits in Key Vault for the retry
    twin.faults.clear()
    resumed = await rotate()
    assert resumed.status is RotationStatus.ROTATED and resumed.operation_id == outcome.operation_id
    assert requests_of(twin, "graph", "addPassword") == 1
    check_invariants(twin, settled=True, initial_key_ids=INITIAL)


async def test_propagation_wait_answers_202_and_the_next_call_resumes(twin: Twin, cc_ca: str, azurite: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(scenario: dict[str, Any]) -> None:
        scenario["propagation"] = {"new_secret_seconds": 4}

    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now+10d"), edit=slow,
          rotation={"test_timeout_seconds": 1.5})
    outcome = await rotate()
    assert outcome.status is RotationStatus.IN_PROGRESS and outcome.http_status == 202
    assert outcome.stage is RotationStage.TEST and outcome.to_dict()["statusUrl"].endswith("/rotation")
    check_invariants(twin, settled=False, initial_key_ids=INITIAL)
    await asyncio.sleep(3)
    resumed = await rotate()
    assert resumed.status is RotationStatus.ROTATED and resumed.operation_id == outcome.operation_id
    check_invariants(twin, settled=True, initial_key_ids=INITIAL)


async def test_deadline_is_honoured_with_202(twin: Twin, cc_ca: str, azurite: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(scenario: dict[str, Any]) -> None:
        scenario["propagation"] = {"new_secret_seconds": 60}

    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now+10d"), edit=slow)
    started = asyncio.get_running_loop().time()
    outcome = await rotate(deadline_seconds=12)
    assert asyncio.get_running_loop().time() - started < 12
    assert outcome.http_status == 202 and outcome.stage is RotationStage.TEST


async def test_failed_key_vault_write_withdraws_the_new_credential(twin: Twin, cc_ca: str, azurite: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now+10d"))
    twin.faults.add(Fault(service="keyvault", operation="setSecret", status=403, times=None,
                          body={"error": {"code": "Forbidden", "message": "Caller is not authorized.",
                                          "innererror": {"code": "ForbiddenByRbac"}}}))
    outcome = await rotate()
    assert outcome.status is RotationStatus.FAILED and outcome.stage is RotationStage.CREATE, outcome.to_dict()
    assert requests_of(twin, "graph", "addPassword") == 1 and requests_of(twin, "graph", "removePassword") == 1
    snap = check_invariants(twin, settled=True, initial_key_ids=INITIAL)
    assert [c["key_id"] for c in snap.credentials] == [KEY_ID]
    twin.faults.clear()
    assert (await rotate()).status is RotationStatus.ROTATED
    check_invariants(twin, settled=True, initial_key_ids=INITIAL)


async def test_dry_run_returns_the_plan_and_changes_nothing(twin: Twin, cc_ca: str, azurite: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now+10d"))
    outcome = await rotate(dry_run=True)
    assert outcome.status is RotationStatus.PLANNED and outcome.plan and outcome.plan["due"] is True
    assert outcome.plan["currentKeyId"] == KEY_ID and any(s.startswith("create:") for s in outcome.plan["steps"])
    writes = [r for r in twin.request_log if r.method in ("POST", "PUT", "PATCH", "DELETE")
              and not (r.service == "entra" and r.operation == "token")]
    assert writes == []
    async with AppContext.from_environment() as ctx:
        state = (await rotation_status(ctx, TARGET)).to_dict()
    assert state["current"] is None and state["history"] == [] and state["adoptedKeyId"] is None


async def test_ten_concurrent_calls_create_exactly_one_credential(twin: Twin, cc_ca: str, azurite: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now+10d"))
    async with AppContext.from_environment() as ctx:
        results = await asyncio.gather(*(rotate_target(ctx, TARGET, deadline_seconds=120) for _ in range(10)),
                                       return_exceptions=True)
    rotated = [r for r in results if not isinstance(r, BaseException) and r.status is RotationStatus.ROTATED]
    locked = [r for r in results if isinstance(r, LockedError)]
    others = [r for r in results if r not in rotated and r not in locked]
    assert len(rotated) == 1, results
    assert all(not isinstance(r, BaseException) and r.status is RotationStatus.NOT_DUE for r in others), others
    assert len(locked) + len(others) == 9
    assert requests_of(twin, "graph", "addPassword") == 1
    for exc in locked:
        assert exc.status == 409 and exc.details["statusUrl"].endswith("/rotation")
    check_invariants(twin, settled=True, initial_key_ids=INITIAL)


async def test_sweep_rotates_every_target_and_one_failure_does_not_stop_the_others(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(secret_end="now+10d")
    broken = {**world.target(ca_bundle=cc_ca), "name": "hpc-broken", "app_id": "99999999-9999-4999-8999-999999999999",
              "secret_name": "broken-secret"}
    broken["cyclecloud"] = {**broken["cyclecloud"], "account": "azure-broken"}
    mi = {"name": "hpc-mi", "mode": "managed_identity", "tenant_id": broken["tenant_id"],
          "subscription_ids": broken["subscription_ids"], "vm_resource_id": broken["vm_resource_id"]}
    setup(twin, cc_ca, azurite, monkeypatch, world, extra_targets=[broken, mi])
    async with AppContext.from_environment() as ctx:
        sweep = await rotate_all_due(ctx)
    assert sweep.outcomes[TARGET]["status"] == "rotated"
    assert "hpc-broken" in sweep.errors and sweep.skipped == {"hpc-mi": "managed identity: no secret to rotate"}
    assert "hpc-prod=rotated" in sweep.summary() and "hpc-broken=error(" in sweep.summary()
    check_invariants(twin, settled=True, initial_key_ids=INITIAL)


async def test_no_secret_in_logs_outcomes_or_status(twin: Twin, cc_ca: str, azurite: str,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, World(secret_end="now+10d"))
    twin.faults.add(Fault(service="cyclecloud", operation="updateAccount", status=400, times=1,
                          body={"code": "InvalidCredentials", "message": "Invalid Azure credentials provided."}))
    caplog.set_level(logging.DEBUG)
    texts = []
    for _ in range(2):
        outcome = await rotate()
        texts.append(json.dumps(outcome.to_dict()))
    async with AppContext.from_environment() as ctx:
        texts.append(json.dumps((await rotation_status(ctx, TARGET)).to_dict()))
    assert outcome.status is RotationStatus.ROTATED
    texts.append(caplog.text)
    assert_no_leak(texts, *all_secrets(twin), min_length=6)
    assert VAULT_NAME and APP_OBJECT_ID  # ids are fine to log; values are not
