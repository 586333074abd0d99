"""Rotation safety (docs/rotation.md, "What may be removed"): the product never removes or strands a credential
that something still uses, also when people change things between two runs. Each test is one case a careful
reviewer found, run through the real SDKs against the twin and Azurite; a person's hand is the test changing the
twin's state directly, as the portal would."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.context import AppContext
from shared.rotation import RotationStage, RotationStatus, rotate_target, rotation_status
from tests.leaks import assert_no_leak
from tests.rotation_invariants import check_invariants, secret_works, snapshot
from tests.rotation_support import (
    DEV,
    DEV_KEY_ID,
    DEV_SECRET_NAME,
    apply_env,
    dev_target,
    requests_of,
    rotation_env,
    shared_app,
)
from tests.twin import Fault, Twin
from tests.world import (
    APP_OBJECT_ID,
    CC_HOST,
    CC_PASSWORD,
    CC_PASSWORD_SECRET,
    CURRENT_SECRET,
    KEY_ID,
    PENDING,
    SECRET_NAME,
    TARGET,
    VAULT_NAME,
    World,
)

VAULT_HOST = f"{VAULT_NAME}.vault.azure.net"


def setup(twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, world: World | None = None,
          **kwargs: Any) -> dict[str, str]:
    env = rotation_env(twin, world or World(secret_end="now+10d"), cc_ca, azurite, **kwargs)
    apply_env(monkeypatch, env)
    return env


async def rotate(target: str = TARGET, **kwargs: Any) -> Any:
    async with AppContext.from_environment() as ctx:
        return await rotate_target(ctx, target, deadline_seconds=kwargs.pop("deadline_seconds", 120), **kwargs)


def credential_ids(twin: Twin) -> list[str]:
    with twin.state.lock:
        return [c.key_id for c in twin.state.applications[APP_OBJECT_ID].password_credentials]


def vault_secret(twin: Twin, name: str) -> Any:
    return twin.state.vaults[VAULT_HOST].secrets[name]


def cyclecloud_secret(twin: Twin, account: str = "azure") -> str:
    with twin.state.lock:
        return str(twin.state.cyclecloud_servers[CC_HOST].accounts[account]["AzureRMApplicationSecret"])


def assert_cyclecloud_works(twin: Twin, account: str = "azure") -> None:
    assert secret_works(twin, cyclecloud_secret(twin, account)), f"CycleCloud account {account} lost its credential"


async def stop_at_test(twin: Twin) -> Any:
    """Start a rotation that cannot pass its test yet (Entra has not propagated the new secret)."""
    twin.state.propagation.new_secret_seconds = 3600
    outcome = await rotate(force=True)
    assert outcome.status is RotationStatus.IN_PROGRESS and outcome.stage is RotationStage.TEST, outcome.to_dict()
    twin.state.propagation.new_secret_seconds = 0
    return outcome


async def journal_of(target: str = TARGET) -> dict[str, Any]:
    async with AppContext.from_environment() as ctx:
        return (await rotation_status(ctx, target)).to_dict()


# -- 1. two targets on one app registration -----------------------------------------------------------------


async def test_two_targets_on_one_app_never_remove_each_others_credentials(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, edit=shared_app, extra_targets=[dev_target(cc_ca)])
    prod1 = await rotate()
    dev1 = await rotate(DEV)
    assert prod1.status is RotationStatus.ROTATED and dev1.status is RotationStatus.ROTATED
    assert_cyclecloud_works(twin)
    assert_cyclecloud_works(twin, "azure-dev")
    # prod's next rotations see dev's credential (a `ccremediator` credential in no prod secret): not prod's
    for _ in range(2):
        outcome = await rotate(force=True)
        assert outcome.status is RotationStatus.ROTATED, outcome.to_dict()
        assert dev1.new_key_id in credential_ids(twin)
        assert_cyclecloud_works(twin, "azure-dev")
    # dev retires its own replaced credential, and nothing of prod's
    prod_now = credential_ids(twin)
    dev2 = await rotate(DEV, force=True)
    assert dev2.status is RotationStatus.ROTATED
    assert dev1.new_key_id not in credential_ids(twin)  # dev's own, replaced, unused: retired
    assert {k for k in prod_now if k != dev1.new_key_id} <= set(credential_ids(twin))
    assert KEY_ID in credential_ids(twin) and DEV_KEY_ID in credential_ids(twin)  # people's: never removed
    assert_cyclecloud_works(twin)
    assert_cyclecloud_works(twin, "azure-dev")
    assert len(credential_ids(twin)) <= 4  # two people's credentials + one live credential per target


async def test_another_targets_journal_and_vault_protect_a_credential_it_holds(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prod replaced a credential that dev also holds (a person pasted prod's secret into dev's vault): prod's
    retirement must not remove it."""
    setup(twin, cc_ca, azurite, monkeypatch, edit=shared_app, extra_targets=[dev_target(cc_ca)])
    assert (await rotate()).status is RotationStatus.ROTATED
    p1 = (await journal_of())["history"][0]["new_key_id"]
    p1_value = vault_secret(twin, SECRET_NAME).versions[-1].value
    with twin.state.lock:  # the person copies prod's current secret into dev's secret, untagged
        dev = vault_secret(twin, DEV_SECRET_NAME)
        newest = copy.deepcopy(dev.versions[-1])
        newest.value, newest.tags, newest.version = p1_value, {}, "f" * 32
        newest.created = newest.updated = twin.state.now()
        dev.versions.append(newest)
    outcome = await rotate(force=True)  # prod: P1 -> P2, P1 due at once (grace 0)
    assert outcome.status is RotationStatus.ROTATED
    assert p1 in credential_ids(twin)
    kept = {k["keyId"]: k["reason"] for k in outcome.kept}
    assert p1 in kept and "target 'hpc-dev'" in kept[p1], outcome.kept


# -- 2. the main secret soft-deleted or disabled by a person ------------------------------------------------


GRACE_HOURS = 0.0015  # 5.4 s: long enough that no retirement falls due before a test has interfered


async def wait_for_retirement(outcome: Any) -> None:
    """Sleep until the replaced credential of `outcome` is due for retirement."""
    due = datetime.fromisoformat(str(outcome.retire_after).replace("Z", "+00:00"))
    await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.3)


async def rotate_twice(twin: Twin) -> tuple[Any, Any]:
    """K0 (a person's) -> P1 -> P2: P1 is the product's and is scheduled for retirement."""
    first = await rotate()
    second = await rotate(force=True)
    assert first.status is RotationStatus.ROTATED and second.status is RotationStatus.ROTATED
    return first, second


async def test_soft_deleted_main_secret_blocks_every_removal_until_recovered(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, rotation={"grace_hours": GRACE_HOURS})
    first, second = await rotate_twice(twin)
    with twin.state.lock:
        vault_secret(twin, SECRET_NAME).deleted_at = twin.state.now()
    await wait_for_retirement(second)
    outcome = await rotate()
    assert outcome.status is RotationStatus.FAILED, outcome.to_dict()
    assert [f["code"] for f in outcome.findings] == ["secret.deleted"] and "recover" in outcome.findings[0]["fix"]
    assert first.new_key_id in credential_ids(twin) and requests_of(twin, "graph", "removePassword") == 0
    assert requests_of(twin, "graph", "addPassword") == 2  # no rotation started on a secret nobody can read
    state = await journal_of()
    assert state["pendingRetirements"][0]["key_id"] == first.new_key_id
    assert "soft-deleted" in state["pendingRetirements"][0]["kept_because"]
    with twin.state.lock:  # the person recovers it
        vault_secret(twin, SECRET_NAME).deleted_at = None
    again = await rotate()
    assert again.status is RotationStatus.NOT_DUE
    assert first.new_key_id not in credential_ids(twin)
    check_invariants(twin, settled=True, initial_key_ids={KEY_ID, str(first.new_key_id)},
                     product_key_ids=frozenset({str(first.new_key_id)}))


async def test_main_secret_still_being_deleted_blocks_every_removal(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Key Vault finishes a soft delete in the background: meanwhile the secret lists nothing and is not yet in
    the deleted list, which looks like "never created". The journal knows better: nothing is removed."""
    from datetime import timedelta

    setup(twin, cc_ca, azurite, monkeypatch, rotation={"grace_hours": GRACE_HOURS})
    first, second = await rotate_twice(twin)
    with twin.state.lock:
        secret = vault_secret(twin, SECRET_NAME)
        secret.deleted_at = twin.state.now()
        secret.deleting_until = secret.deleted_at + timedelta(minutes=10)
    await wait_for_retirement(second)
    outcome = await rotate()
    assert first.new_key_id in credential_ids(twin) and requests_of(twin, "graph", "removePassword") == 0
    kept = {k["keyId"]: k["reason"] for k in outcome.kept}
    assert "being deleted, or purged" in kept[str(first.new_key_id)], outcome.to_dict()


async def test_disabled_newest_main_version_blocks_removal_and_does_not_churn(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, rotation={"grace_hours": GRACE_HOURS})
    first, second = await rotate_twice(twin)
    with twin.state.lock:
        vault_secret(twin, SECRET_NAME).versions[-1].enabled = False
    await wait_for_retirement(second)
    for _ in range(2):  # the newest enabled version is P1's now, yet nothing rotates and nothing is removed
        outcome = await rotate()
        assert outcome.status is RotationStatus.FAILED and outcome.findings[0]["code"] == "secret.disabled"
    assert first.new_key_id in credential_ids(twin) and requests_of(twin, "graph", "removePassword") == 0
    assert requests_of(twin, "graph", "addPassword") == 2
    assert_cyclecloud_works(twin)


async def test_commit_recovers_a_main_secret_deleted_while_the_operation_waited(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch)
    # the commit's write is refused once: the operation waits at stage commit (CycleCloud already holds it)
    twin.faults.add(Fault(service="keyvault", operation="setSecret", skip=1, status=403, times=1,
                          body={"error": {"code": "Forbidden", "message": "Caller is not authorized.",
                                          "innererror": {"code": "ForbiddenByRbac"}}}))
    stopped = await rotate()
    assert stopped.status is RotationStatus.FAILED and stopped.stage is RotationStage.COMMIT, stopped.to_dict()
    assert (await journal_of())["current"]["last_error"]["stage"] == "commit"
    with twin.state.lock:
        vault_secret(twin, SECRET_NAME).deleted_at = twin.state.now()
    outcome = await rotate()
    assert outcome.status is RotationStatus.ROTATED, outcome.to_dict()
    assert any("recovered" in w for w in outcome.warnings)
    check_invariants(twin, settled=True, initial_key_ids={KEY_ID})


async def test_commit_that_cannot_recover_the_main_secret_records_why(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch)
    twin.faults.add(Fault(service="keyvault", operation="setSecret", skip=1, status=403, times=1,
                          body={"error": {"code": "Forbidden", "message": "Caller is not authorized.",
                                          "innererror": {"code": "ForbiddenByRbac"}}}))
    await rotate()
    with twin.state.lock:
        vault_secret(twin, SECRET_NAME).deleted_at = twin.state.now()
    twin.faults.add(Fault(service="keyvault", operation="recoverDeletedSecret", status=403, times=None,
                          body={"error": {"code": "Forbidden", "message": "Caller is not authorized.",
                                          "innererror": {"code": "ForbiddenByRbac"}}}))
    outcome = await rotate()
    assert outcome.status is RotationStatus.FAILED and outcome.stage is RotationStage.COMMIT
    assert "az keyvault secret recover" in outcome.message
    error = (await journal_of())["current"]["last_error"]
    assert error["stage"] == "commit" and error["code"] == "access_denied"
    assert_cyclecloud_works(twin)


# -- 3. the pending value lost --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["disabled", "deleted", "purged"])
async def test_lost_pending_value_closes_the_operation_and_starts_over(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    setup(twin, cc_ca, azurite, monkeypatch)
    stopped = await stop_at_test(twin)
    with twin.state.lock:
        pending = vault_secret(twin, PENDING)
        if how == "disabled":
            pending.versions[-1].enabled = False
        elif how == "deleted":
            pending.deleted_at = twin.state.now()
        else:
            del twin.state.vaults[VAULT_HOST].secrets[PENDING]
    outcome = await rotate()
    assert outcome.status is RotationStatus.ROTATED, outcome.to_dict()
    assert outcome.operation_id != stopped.operation_id
    state = await journal_of()
    closed = next(h for h in state["history"] if h["id"] == stopped.operation_id)
    assert closed["result"] == "abandoned" and how[:5] in closed["last_error"]["message"]
    assert state["current"] is None
    assert stopped.new_key_id not in credential_ids(twin)  # this target's orphan, used by nobody: removed
    check_invariants(twin, settled=True, initial_key_ids={KEY_ID})


# -- 4. an operator rolls back --------------------------------------------------------------------------------


async def test_rolled_back_value_keeps_its_credential(twin: Twin, cc_ca: str, azurite: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, rotation={"grace_hours": GRACE_HOURS})
    first, second = await rotate_twice(twin)
    with twin.state.lock:  # Terraform re-applies P1's value as a new, untagged version
        main = vault_secret(twin, SECRET_NAME)
        p1 = next(v for v in main.versions if v.tags.get("keyId") == first.new_key_id)
        rollback = copy.deepcopy(p1)
        rollback.tags, rollback.version = {}, "e" * 32
        rollback.created = rollback.updated = twin.state.now()
        main.versions.append(rollback)
    await wait_for_retirement(second)
    outcome = await rotate()
    assert first.new_key_id in credential_ids(twin)
    kept = {k["keyId"]: k["reason"] for k in outcome.kept}
    assert "untagged" in kept[str(first.new_key_id)], outcome.to_dict()
    assert secret_works(twin, rollback.value) and secret_works(twin, cyclecloud_secret(twin))


# -- 6. a read-back that cannot confirm the push --------------------------------------------------------------


async def rotate_behind_a_masking_server(twin: Twin, cc_ca: str, azurite: str,
                                        monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """One rotation CycleCloud confirms, then the server starts masking the whole secret and a forced one follows:
    (the first outcome, the unconfirmed second)."""
    setup(twin, cc_ca, azurite, monkeypatch, rotation={"grace_hours": 0})
    first = await rotate()
    twin.state.cyclecloud_servers[CC_HOST].masks_secret_fully = True
    return first, await rotate(force=True)


async def test_fully_masked_read_back_is_unconfirmed_and_never_retires(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = await rotate_behind_a_masking_server(twin, cc_ca, azurite, monkeypatch)
    assert second.status is RotationStatus.ROTATED and second.push_confirmed is False, second.to_dict()
    assert "unconfirmed" in second.message and second.findings[0]["code"] == "push.unconfirmed"
    assert first.new_key_id in credential_ids(twin)  # grace 0, yet kept: which secret CycleCloud holds is unknown
    again = await rotate()
    assert first.new_key_id in credential_ids(twin) and "masked" in json.dumps(again.kept)
    # the health check says so too: the push is unconfirmed and the replaced credential kept, with why
    from shared.diagnosis import validate_target

    async with AppContext.from_environment() as ctx:
        report = (await validate_target(ctx, TARGET, timeout_seconds=30)).to_dict()
    codes = {f["code"]: f for f in report["findings"]}
    assert {"rotation.push_unconfirmed", "rotation.credential_kept"} <= set(codes), sorted(codes)
    assert "masked" in codes["rotation.credential_kept"]["detail"]
    # CycleCloud shows hints again and holds the new secret: the push is confirmed, the replaced one retired
    twin.state.cyclecloud_servers[CC_HOST].masks_secret_fully = False
    await rotate()
    assert first.new_key_id not in credential_ids(twin)


async def test_on_a_fully_masking_server_a_kept_credential_goes_once_it_has_expired(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # found by the chaos year: every push to such a server is unconfirmed, so every replaced credential was kept
    # and a target gathered a dead credential a rotation (4 product credentials after 5 months)
    first, second = await rotate_behind_a_masking_server(twin, cc_ca, azurite, monkeypatch)
    assert second.push_confirmed is False
    await rotate()
    assert first.new_key_id in credential_ids(twin)  # unexpired: kept, nobody can say CycleCloud does not use it
    with twin.state.lock:  # its end date passes (as months do): it signs nobody in any more
        app = next(iter(twin.state.applications.values()))
        dead = next(c for c in app.password_credentials if c.key_id == first.new_key_id)
        dead.end = twin.state.now() - timedelta(hours=2)
    outcome = await rotate()
    assert first.new_key_id not in credential_ids(twin), outcome.to_dict()
    assert second.new_key_id in credential_ids(twin)  # the one CycleCloud and Key Vault hold stays
    assert secret_works(twin, cyclecloud_secret(twin))


async def test_server_that_answers_200_without_applying_fails_the_push(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, rotation={"grace_hours": 0})
    twin.state.cyclecloud_servers[CC_HOST].ignores_updates = True
    outcome = await rotate()
    assert outcome.status is RotationStatus.FAILED and outcome.stage is RotationStage.PUSH
    assert "may or may not hold" in outcome.message and "keeps its old secret" not in outcome.message
    assert cyclecloud_secret(twin) == CURRENT_SECRET
    assert_cyclecloud_works(twin)


# -- 7. the new credential of an operation in flight removed by a person -------------------------------------


@pytest.mark.parametrize("force", [False, True])
async def test_removed_in_flight_credential_closes_the_operation(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, force: bool) -> None:
    setup(twin, cc_ca, azurite, monkeypatch)
    stopped = await stop_at_test(twin)
    with twin.state.lock:
        app = twin.state.applications[APP_OBJECT_ID]
        app.password_credentials = [c for c in app.password_credentials if c.key_id != stopped.new_key_id]
    outcome = await rotate(force=force)
    assert outcome.status is RotationStatus.ROTATED, outcome.to_dict()
    assert outcome.operation_id != stopped.operation_id
    assert any("was removed from the app registration" in w for w in outcome.warnings)
    check_invariants(twin, settled=True, initial_key_ids={KEY_ID})


# -- 8. a stale Graph read right after a rotation -------------------------------------------------------------


async def test_stale_graph_read_after_a_rotation_starts_no_second_one(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, rotation={"grace_hours": 1})
    first = await rotate()
    twin.state.propagation.graph_stale_read_seconds = 3
    second = await rotate(force=True)
    assert second.status is RotationStatus.ROTATED
    outcome = await rotate()  # Graph still lists the credentials as they were before the rotation
    assert outcome.status is RotationStatus.NOT_DUE, outcome.to_dict()
    assert requests_of(twin, "graph", "addPassword") == 2
    state = await journal_of()
    assert [r["key_id"] for r in state["pendingRetirements"]] == [first.new_key_id]


# -- 9. addPassword answered 5xx after it succeeded -----------------------------------------------------------


async def test_add_password_that_succeeded_behind_a_5xx_leaves_one_new_credential(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch)
    fault = twin.faults.add(Fault(service="graph", operation="addPassword", status=504, after=True, times=1))
    outcome = await rotate()
    assert fault.hits == 1
    assert outcome.status is RotationStatus.ROTATED, outcome.to_dict()
    assert requests_of(twin, "graph", "addPassword") >= 2  # the answer was lost, so it was asked again
    assert sorted(credential_ids(twin)) == sorted([KEY_ID, str(outcome.new_key_id)])
    check_invariants(twin, settled=True, initial_key_ids={KEY_ID})


async def test_add_password_whose_connection_dropped_after_it_succeeded_leaves_one_new_credential(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # no HTTP retry sees this one (the connection is gone, not answered): the run retries from its journal and
    # calls addPassword a second time; the first call's credential, whose value nobody received, must not stay
    setup(twin, cc_ca, azurite, monkeypatch)
    fault = twin.faults.add(Fault(service="graph", operation="addPassword", drop=True, after=True, times=1))
    outcome = await rotate()
    assert fault.hits == 1
    assert outcome.status is RotationStatus.ROTATED, outcome.to_dict()
    assert requests_of(twin, "graph", "addPassword") == 2
    assert sorted(credential_ids(twin)) == sorted([KEY_ID, str(outcome.new_key_id)])
    check_invariants(twin, settled=True, initial_key_ids={KEY_ID})


async def test_a_rotation_whose_add_password_went_out_once_does_not_list_the_app_for_duplicates(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch)
    outcome = await rotate()
    assert outcome.status is RotationStatus.ROTATED, outcome.to_dict()
    graph = [r.operation for r in twin.request_log if r.service == "graph"]
    assert graph == ["getApplication", "addPassword"], graph  # the read before, the POST; nothing to look for after


# -- 10. errors that are not CycleCloud's, and permanent Graph refusals --------------------------------------


async def test_missing_cyclecloud_password_is_recorded_at_push(twin: Twin, cc_ca: str, azurite: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch)
    with twin.state.lock:
        del twin.state.vaults[VAULT_HOST].secrets[CC_PASSWORD_SECRET]
    outcome = await rotate()
    assert outcome.status is RotationStatus.FAILED and outcome.stage is RotationStage.PUSH, outcome.to_dict()
    error = (await journal_of())["current"]["last_error"]
    assert error["stage"] == "push" and error["code"] == "secret_not_found"
    assert_cyclecloud_works(twin)
    from shared.diagnosis import validate_target

    async with AppContext.from_environment() as ctx:
        report = (await validate_target(ctx, TARGET, timeout_seconds=30)).to_dict()
    stopped = next(f for f in report["findings"] if f["code"] == "rotation.stopped")
    assert "stage 'push'" in stopped["detail"] and "secret_not_found" in stopped["detail"]
    assert_no_leak(json.dumps(outcome.to_dict()), CURRENT_SECRET, CC_PASSWORD, *snapshot(twin).all_values(),
                   min_length=6)


async def test_permanent_graph_refusal_is_not_retried(twin: Twin, cc_ca: str, azurite: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch)
    twin.faults.add(Fault(service="graph", operation="addPassword", status=400, times=None, body={
        "error": {"code": "Request_BadRequest", "message": "Invalid value specified for property 'endDateTime'."}}))
    outcome = await rotate()
    assert outcome.status is RotationStatus.FAILED and outcome.stage is RotationStage.CREATE, outcome.to_dict()
    assert requests_of(twin, "graph", "addPassword") == 1
    assert (await journal_of())["current"]["last_error"]["code"] == "graph_request_rejected"


# -- 12. reading the status creates nothing -------------------------------------------------------------------


async def test_status_never_creates_the_state_container(twin: Twin, cc_ca: str, azurite: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    env = setup(twin, cc_ca, azurite, monkeypatch)
    state = await journal_of()
    assert state["current"] is None and state["locked"] is False
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"]) as service:
        assert not await service.get_container_client(env["STATE_CONTAINER"]).exists()


# -- configuration: sharing an app registration is supported, sharing a secret or an account is not ----------


def test_targets_may_share_an_app_but_not_a_secret_or_a_cyclecloud_account() -> None:
    from shared.config import load_settings
    from shared.errors import ConfigError

    world = World()
    prod = world.target()
    dev = {**copy.deepcopy(prod), "name": DEV, "secret_name": DEV_SECRET_NAME}
    dev["cyclecloud"]["account"] = "azure-dev"
    env = world.env()
    settings = load_settings({**env, "TARGETS": json.dumps([prod, dev])})
    assert [t.app_id for t in settings.targets] == [prod["app_id"], prod["app_id"]]
    same_secret = {**copy.deepcopy(dev), "secret_name": SECRET_NAME}
    same_account = {**copy.deepcopy(dev)}
    same_account["cyclecloud"]["account"] = "azure"
    with pytest.raises(ConfigError) as caught:
        load_settings({**env, "TARGETS": json.dumps([prod, same_secret, same_account | {"name": "hpc-x",
                                                                                        "secret_name": "x-secret"}])})
    problems = caught.value.problems
    assert any("secret_name: is also the secret_name of target 'hpc-prod'" in p for p in problems), problems
    assert any("cyclecloud.account: is the same CycleCloud account as target 'hpc-prod'" in p for p in problems)


def test_config_check_says_when_the_lead_time_adapts_to_a_short_lifetime(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from shared.cli import main

    world = World()
    target = world.target()
    target["rotation"] = {"lifetime_days": 50, "rotate_before_days": 30}
    # config check also wants the Functions storage account that rotation journals in (never contacted here)
    for key, value in {**world.env(storage="UseDevelopmentStorage=true"), "TARGETS": json.dumps([target])}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TARGETS_FILE", raising=False)
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "rotate 25 days before expiry" in out and "rotate_before_days=30 is more than half" in out
