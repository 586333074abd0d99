"""The pieces the migration relies on, against the twin through the real SDKs: the VM identity PATCH keeps (or,
done carelessly, detaches) user-assigned identities as ARM does; CycleCloud refuses to switch to an identity that
cannot do its work yet, and the refusal changes nothing; no secret reaches the logs on the way back."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from shared.adapters.compute import ComputeAdapter, parse_vm_id
from shared.adapters.cyclecloud import CycleCloudUpdateRejectedError
from shared.context import AppContext
from shared.migration import runner
from shared.migration.account_mode import MANAGED_IDENTITY, switch_account
from tests.leaks import assert_no_leak
from tests.rotation_support import apply_env, rotation_env
from tests.test_migration import UAMI, account, cyclecloud_problem, identity_off, migrate, rollback, vm_state
from tests.twin import Twin
from tests.world import CURRENT_SECRET, TARGET, VM_ID, World


@pytest.fixture(autouse=True)
def _no_propagation_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """New role assignments apply at once in these twins (see test_new_roles_get_time_to_apply_before_the_switch)."""
    monkeypatch.setattr(runner, "ROLE_PROPAGATION_SECONDS", 0.0)


@pytest.fixture
def migrating(twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> Twin:
    apply_env(monkeypatch, rotation_env(twin, World(transport="runcommand"), cc_ca, azurite, edit=identity_off))
    return twin


async def test_turning_on_the_identity_keeps_user_assigned_ones(migrating: Twin) -> None:
    async with AppContext.from_environment() as ctx:
        vm = await ComputeAdapter(ctx.clients).enable_system_identity(VM_ID)
        again = await ComputeAdapter(ctx.clients).enable_system_identity(VM_ID)
    assert vm.identity_principal_id is not None and vm.user_assigned_identity_ids == (UAMI,)
    assert again.identity_principal_id == vm.identity_principal_id  # already on: used as it is
    assert vm_state(migrating) == (vm.identity_principal_id, [UAMI])
    patches = [r for r in migrating.request_log if r.operation == "updateVirtualMachine"]
    assert len(patches) == 1


async def test_a_careless_identity_patch_detaches_user_assigned_identities(migrating: Twin) -> None:
    """What enable_system_identity avoids: the twin models ARM's replace semantics, so the test above can fail."""
    sub, rg, name = parse_vm_id(VM_ID)
    careless: Any = {"identity": {"type": "SystemAssigned"}}
    async with AppContext.from_environment() as ctx:
        poller = await ctx.clients.compute(sub).virtual_machines.begin_update(rg, name, careless, polling_interval=0)
        await poller.result()
    principal, user_assigned = vm_state(migrating)
    assert principal is not None and user_assigned == []


async def test_cyclecloud_refuses_an_identity_without_its_role_and_changes_nothing(migrating: Twin) -> None:
    before = account(migrating)
    async with AppContext.from_environment() as ctx:
        compute = ComputeAdapter(ctx.clients)
        await compute.enable_system_identity(VM_ID)  # on, but no role yet
        with pytest.raises(CycleCloudUpdateRejectedError) as refused:
            await switch_account(compute, target=TARGET, vm_id=VM_ID, account="azure", mode=MANAGED_IDENTITY)
    assert "does not have authorization" in refused.value.reason
    assert account(migrating) == before and cyclecloud_problem(migrating) is None


async def test_rollback_keeps_the_secret_out_of_logs_and_arm(migrating: Twin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await migrate(dry_run=False)
    await rollback()
    assert account(migrating)["AzureRMApplicationSecret"] == CURRENT_SECRET
    assert_no_leak(caplog, CURRENT_SECRET)
    vm = migrating.state.vm(VM_ID)
    assert vm is not None
    for record in vm.run_commands.values():  # deleted afterwards; none may keep the secret anyway
        assert_no_leak(str(record), CURRENT_SECRET)

