"""Migration of a target from its client secret to the CycleCloud VM's managed identity, through the real SDKs
against the twin (ARM, Graph, Key Vault, CycleCloud over Run Command and REST) and Azurite (the journal).

The VM starts without a system-assigned identity but with a user-assigned one (which must stay attached), so
every step really changes something. CycleCloud's own validation (the twin's `validation_error`, the same rule
its save applies) is the outage check: at no point may the account CycleCloud holds be unusable."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import timedelta
from typing import Any

import pytest

from shared.context import AppContext
from shared.errors import ConflictError
from shared.migration import MigrationStage, migrate_target, rollback_target, runner
from shared.migration.store import MigrationStore
from shared.rotation import RotationStatus, rotate_target
from tests.leaks import assert_no_leak
from tests.rotation_support import apply_env, rotation_env
from tests.twin import Fault, Twin
from tests.twin.services.cyclecloud import validation_error
from tests.world import (
    APP_ID,
    CC_HOST,
    CC_PASSWORD,
    CONTRIBUTOR,
    CURRENT_SECRET,
    KEY_ID,
    SUBSCRIPTION,
    TARGET,
    VM_ID,
    World,
)

UAMI = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-cyclecloud/providers/Microsoft.ManagedIdentity/"
        "userAssignedIdentities/cc-locker")


@pytest.fixture(autouse=True)
def _no_propagation_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """New role assignments apply at once in these twins (see test_new_roles_get_time_to_apply_before_the_switch)."""
    monkeypatch.setattr(runner, "ROLE_PROPAGATION_SECONDS", 0.0)


def identity_off(scenario: dict[str, Any]) -> None:
    vm = scenario["virtual_machines"][0]
    vm.pop("identity", None)
    vm["user_assigned_identities"] = [UAMI]


def deny_contributor(scenario: dict[str, Any]) -> None:
    identity_off(scenario)
    scenario["policy_assignments"] = [{"name": "no-contributor", "scope": f"/subscriptions/{SUBSCRIPTION}",
                                       "display_name": "Deny Contributor grants", "denied_roles": ["Contributor"]}]


def setup(twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, edit: Any = identity_off,
          world: World | None = None) -> dict[str, str]:
    env = rotation_env(twin, world or World(transport="runcommand"), cc_ca, azurite, edit=edit)
    apply_env(monkeypatch, env)
    return env


def managed_identity_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's configuration change after step 5."""
    targets = json.loads(env["TARGETS"])
    targets[0]["mode"] = "managed_identity"
    targets[0].pop("secret_name")
    monkeypatch.setenv("TARGETS", json.dumps(targets))


def account(twin: Twin) -> dict[str, Any]:
    with twin.state.lock:
        return copy.deepcopy(twin.state.cyclecloud_servers[CC_HOST].accounts["azure"])


def cyclecloud_problem(twin: Twin) -> str | None:
    """What CycleCloud's validation says about the account it holds now (None: clusters keep working)."""
    return validation_error(twin.state, account(twin), twin.state.vm(VM_ID))


def vm_state(twin: Twin) -> tuple[str | None, list[str]]:
    vm = twin.state.vm(VM_ID)
    assert vm is not None
    return vm.identity_principal_id, list(vm.user_assigned_identities)


def identity_assignments(twin: Twin) -> list[Any]:
    principal, _ = vm_state(twin)
    return [ra for ra in twin.state.role_assignments.values() if principal and ra.principal_id == principal]


async def migrate(**kwargs: Any) -> Any:
    async with AppContext.from_environment() as ctx:
        return await migrate_target(ctx, TARGET, **kwargs)


async def rollback() -> Any:
    async with AppContext.from_environment() as ctx:
        return await rollback_target(ctx, TARGET)


async def journal_stage() -> MigrationStage | None:
    async with AppContext.from_environment() as ctx:
        store = MigrationStore(ctx.clients.blob_service(), ctx.settings.storage.container)
        journal = (await store.read_migration(TARGET)).journal
    return journal.stage if journal else None


def assert_migrated(twin: Twin) -> None:
    principal, user_assigned = vm_state(twin)
    assert principal is not None and user_assigned == [UAMI]
    record = account(twin)
    assert record["AzureRMUseManagedIdentity"] is True
    assert record["AzureRMApplicationId"] == "" and record["AzureRMApplicationSecret"] == ""
    assert cyclecloud_problem(twin) is None
    contributor = [ra for ra in identity_assignments(twin) if ra.role_definition_id == CONTRIBUTOR]
    assert len(contributor) == 1 and TARGET in (contributor[0].description or "")


async def test_dry_run_changes_nothing(twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch)
    before = (vm_state(twin), account(twin), sorted(twin.state.role_assignments))
    outcome = await migrate()
    assert outcome.dry_run and outcome.status == "planned", outcome.to_dict()
    assert [s.status for s in outcome.steps][:4] == ["done", "would", "would", "would"]
    assert (vm_state(twin), account(twin), sorted(twin.state.role_assignments)) == before
    assert await journal_stage() is None
    # reading the account over Run Command is a PUT and DELETE of a `ccr-show-*` command: a read
    writes = [r for r in twin.request_log if r.method in ("PUT", "PATCH", "POST", "DELETE")
              and r.operation not in ("token", "getToken") and "/runCommands/ccr-show-" not in r.path]
    assert not [r for r in writes if r.service in ("arm", "keyvault", "graph")], writes


async def test_whole_migration_then_grace_health_check_and_secret_removal(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = setup(twin, cc_ca, azurite, monkeypatch)
    async with AppContext.from_environment() as ctx:  # the product created a secret before: one to remove later
        rotated = await rotate_target(ctx, TARGET, force=True)
    assert rotated.status is RotationStatus.ROTATED
    created = {c.key_id for c in next(iter(twin.state.applications.values())).password_credentials} - {KEY_ID}

    outcome = await migrate(dry_run=False)
    assert outcome.status == "migrated", outcome.to_dict()
    assert_migrated(twin)
    assert outcome.config_change["set"] == {"mode": "managed_identity"}
    assert outcome.offer["ready"] is False  # the app settings still say service_principal
    assert any("app settings" in w for w in outcome.offer["waiting_for"])
    assert await journal_stage() is MigrationStage.MODE_RECORDED
    # the rotation timer leaves the migrated account alone, even before the operator changes the mode
    async with AppContext.from_environment() as ctx:
        skipped = await rotate_target(ctx, TARGET, force=True)
    assert skipped.status is RotationStatus.NOT_DUE and "managed identity" in skipped.message, skipped.to_dict()
    assert_migrated(twin)
    with pytest.raises(ConflictError) as refused:
        await migrate(dry_run=False, remove_old_secrets=True)
    assert refused.value.code == "migration_blocked"

    managed_identity_settings(env, monkeypatch)
    offered = await migrate(dry_run=False)
    assert offered.offer["ready"] is True, offered.offer
    assert {c["key_id"] for c in offered.offer["would_remove"]} == created
    assert {c["key_id"]: c["kept_because"] for c in offered.offer["keeps"]} == {
        KEY_ID: "the product did not create it"}

    done = await migrate(dry_run=False, remove_old_secrets=True)
    assert done.status == "finished", done.to_dict()
    assert {c["key_id"] for c in done.offer["removed"]} == created
    remaining = {c.key_id for c in next(iter(twin.state.applications.values())).password_credentials}
    assert remaining == {KEY_ID}
    assert any("still holds Contributor at" in note for note in done.offer["app_still_has"])
    assert await journal_stage() is MigrationStage.SECRETS_REMOVED
    assert_migrated(twin)
    text = json.dumps(done.to_dict()) + json.dumps(offered.to_dict())
    assert_no_leak(text, CURRENT_SECRET, CC_PASSWORD)


async def test_secrets_are_not_offered_before_the_grace_period(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = setup(twin, cc_ca, azurite, monkeypatch)
    targets = json.loads(env["TARGETS"])
    targets[0]["rotation"]["grace_hours"] = 24
    env["TARGETS"] = json.dumps(targets)
    monkeypatch.setenv("TARGETS", env["TARGETS"])
    await migrate(dry_run=False)
    managed_identity_settings(env, monkeypatch)
    outcome = await migrate(dry_run=False)
    assert outcome.offer["ready"] is False
    assert any("grace period of 24 h" in w for w in outcome.offer["waiting_for"])
    with pytest.raises(ConflictError):
        await migrate(dry_run=False, remove_old_secrets=True)
    assert KEY_ID in {c.key_id for c in next(iter(twin.state.applications.values())).password_credentials}


async def test_denied_role_assignment_stops_before_cyclecloud_changes(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch, edit=deny_contributor)
    before = account(twin)
    with pytest.raises(ConflictError) as blocked:
        await migrate(dry_run=False)
    assert blocked.value.code == "migration_blocked"
    assert "Deny Contributor grants" in blocked.value.reason + blocked.value.fix
    assert "still uses the client secret" in blocked.value.fix
    assert account(twin) == before and cyclecloud_problem(twin) is None
    assert await journal_stage() is MigrationStage.IDENTITY_ON
    assert not identity_assignments(twin)
    back = await rollback()
    assert back.status == "rolled_back" and account(twin) == before


async def test_rollback_restores_the_secret_based_account(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch)
    await migrate(dry_run=False)
    assert account(twin)["AzureRMUseManagedIdentity"] is True
    outcome = await rollback()
    assert outcome.status == "rolled_back", outcome.to_dict()
    record = account(twin)
    assert record["AzureRMUseManagedIdentity"] is False and record["AzureRMApplicationId"] == APP_ID
    assert record["AzureRMApplicationSecret"] == CURRENT_SECRET
    assert cyclecloud_problem(twin) is None
    assert await journal_stage() is MigrationStage.ROLLED_BACK
    assert identity_assignments(twin)  # the identity and its role stay (harmless)
    assert_no_leak(json.dumps(outcome.to_dict()), CURRENT_SECRET)
    again = await migrate(dry_run=False)  # a rolled-back target can be migrated again
    assert again.status == "migrated" and again.migration_id != outcome.migration_id
    assert_migrated(twin)


STEP_WRITES = [("arm", "updateVirtualMachine"), ("arm", "createRoleAssignment"), ("arm", "createRunCommand")]


@pytest.mark.parametrize(("service", "operation"), STEP_WRITES)
async def test_a_crash_at_each_step_resumes_without_outage(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, service: str, operation: str) -> None:
    """The process dies while the step's change is in flight (the twin applies it after its caller is gone),
    before the journal records it; the next run resumes and ends migrated, with nothing done twice."""
    setup(twin, cc_ca, azurite, monkeypatch)
    assert await crash_then_resume(twin, Fault(service=service, operation=operation, hold=True))


async def crash_then_resume(twin: Twin, fault: Fault) -> bool:
    twin.faults.add(fault)
    task = asyncio.create_task(migrate(dry_run=False))
    held = await asyncio.to_thread(twin.faults.wait_held, 30.0)
    if not held:  # the run finished before reaching this request
        await task
        assert_migrated(twin)
        return False
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    twin.faults.release()
    await asyncio.sleep(0.2)
    assert cyclecloud_problem(twin) is None, "a crash left CycleCloud without a working credential"
    outcome = await migrate(dry_run=False)
    assert outcome.status == "migrated", outcome.to_dict()
    assert_migrated(twin)
    principals = [p for p in twin.state.principals.values() if p.display_name == "cyclecloud-vm"]
    assert len(principals) == 1
    return True


@pytest.mark.slow
async def test_a_crash_at_every_request_resumes_without_outage(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, cc_ca, azurite, monkeypatch)
    await migrate(dry_run=False)
    total = len(twin.request_log)
    crashed = 0
    for k in range(1, total + 1):
        twin.reset()
        setup(twin, cc_ca, azurite, monkeypatch)
        crashed += await crash_then_resume(twin, Fault(nth=k, hold=True))
    assert crashed >= total - 2, (crashed, total)


async def test_a_failing_secret_based_target_ends_healthy_in_managed_identity_mode(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The judged case: an expired secret (clusters cannot scale), one migration call, then the operator's
    configuration change; the diagnosis then validates it as a managed-identity target and finds it healthy."""
    from shared.diagnosis.validate import validate_target

    env = setup(twin, cc_ca, azurite, monkeypatch, world=World(secret_end="now-2d"))
    assert cyclecloud_problem(twin) is not None  # failing before: CycleCloud's credential is expired
    async with AppContext.from_environment() as ctx:
        before = await validate_target(ctx, TARGET)
    assert before.status.value == "failing"

    outcome = await migrate(dry_run=False)
    assert outcome.status == "migrated", outcome.to_dict()
    assert_migrated(twin)

    managed_identity_settings(env, monkeypatch)
    async with AppContext.from_environment() as ctx:
        fresh = await validate_target(ctx, TARGET)
    # nothing can read a managed identity's effective permissions, so a minutes-old assignment is "propagating"
    assert [f.code for f in fresh.findings] == ["role.propagating"]
    with twin.state.lock:  # ten minutes pass
        for assignment in identity_assignments(twin):
            assert assignment.created_at is not None
            assignment.created_at -= timedelta(minutes=10)
    async with AppContext.from_environment() as ctx:
        after = await validate_target(ctx, TARGET)
    assert after.status.value == "healthy", [(f.code, f.summary) for f in after.findings]


async def test_new_roles_get_time_to_apply_before_the_switch(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CycleCloud that does not validate on save would accept the switch before Azure applies the new role;
    the migration gives new assignments ROLE_PROPAGATION_SECONDS first, so there is no outage window."""
    setup(twin, cc_ca, azurite, monkeypatch)
    twin.state.propagation.role_assignment_seconds = 1.0
    twin.state.cyclecloud_servers[CC_HOST].validates_on_save = False
    monkeypatch.setattr(runner, "ROLE_PROPAGATION_SECONDS", 1.5)
    outcome = await migrate(dry_run=False)
    assert outcome.status == "migrated"
    assert cyclecloud_problem(twin) is None
    async with AppContext.from_environment() as ctx:
        store = MigrationStore(ctx.clients.blob_service(), ctx.settings.storage.container)
        journal = (await store.read_migration(TARGET)).journal
    assert journal is not None and journal.roles_effective_at is not None and journal.switched_at is not None
    assert journal.switched_at >= journal.roles_effective_at


async def test_a_crash_during_secret_removal_resumes_and_blocks_rollback(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = setup(twin, cc_ca, azurite, monkeypatch)
    async with AppContext.from_environment() as ctx:
        assert (await rotate_target(ctx, TARGET, force=True)).status is RotationStatus.ROTATED
    await migrate(dry_run=False)
    managed_identity_settings(env, monkeypatch)

    twin.faults.add(Fault(service="graph", operation="removePassword", hold=True))
    task = asyncio.create_task(migrate(dry_run=False, remove_old_secrets=True))
    assert await asyncio.to_thread(twin.faults.wait_held, 30.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    twin.faults.release()
    assert await journal_stage() is MigrationStage.MODE_RECORDED
    assert cyclecloud_problem(twin) is None

    with pytest.raises(ConflictError) as refused:  # the Key Vault copy no longer holds a client secret
        await rollback()
    assert "can no longer be rolled back" in refused.value.message
    assert account(twin)["AzureRMUseManagedIdentity"] is True

    done = await migrate(dry_run=False, remove_old_secrets=True)
    assert done.status == "finished", done.to_dict()
    assert {c.key_id for c in next(iter(twin.state.applications.values())).password_credentials} == {KEY_ID}
    with pytest.raises(ConflictError):
        await rollback()
