"""Reads the migration relies on: the preflight (step 1) and the managed-identity health check that gates the
clean-up (step 6). Both read only and report problems as sentences rather than stopping at the first."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from ..adapters.compute import ComputeAdapter, VmInfo
from ..adapters.cyclecloud import CycleCloudAccount, open_cyclecloud, read_cyclecloud_account
from ..adapters.rbac import RbacAdapter
from ..config import Mode, Target
from ..context import AppContext
from ..errors import RemediatorError
from ..roles import AssignmentState, RoleReconciliation, reconcile_target_roles
from ..rotation.store import JournalStore

logger = logging.getLogger(__name__)

MI_FIELD = "AzureRMUseManagedIdentity"


def identity_view(ctx: AppContext, target: Target) -> AppContext:
    """The settings as if the target were already in managed_identity mode, so the roles code reconciles the VM
    identity's assignments (the same deterministic names and label as `roles`). Never prunes: the identity may
    hold roles for other purposes."""
    view = replace(target, mode=Mode.MANAGED_IDENTITY, prune_unmanaged_roles=False)
    targets = tuple(view if t.name == target.name else t for t in ctx.settings.targets)
    return AppContext(replace(ctx.settings, targets=targets), ctx.clients)


async def identity_roles(ctx: AppContext, target: Target, *, dry_run: bool) -> RoleReconciliation:
    return await reconcile_target_roles(identity_view(ctx, target), target.name, dry_run=dry_run)


@dataclass
class Preflight:
    problems: list[str]
    vm: VmInfo | None = None
    account: CycleCloudAccount | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


async def preflight(ctx: AppContext, target: Target, rotation_store: JournalStore, *,
                    holding_lock: bool = False) -> Preflight:
    """Step 1: the VM is reachable through ARM, CycleCloud's account knows managed identity, the target's
    subscriptions and roles resolve, and no rotation is in flight (`holding_lock`: this run holds the target's
    lock, so only the rotation journal can say one is in flight)."""
    result = Preflight([])
    missing = [name for name, value in (("vm_resource_id", target.vm_resource_id), ("cyclecloud", target.cyclecloud),
                                        ("app_id", target.app_id), ("secret_name", target.secret_name)) if not value]
    if not target.uses_secret:
        result.problems.append(f"target '{target.name}' is already configured in managed_identity mode and no "
                               "migration of it is recorded")
    if missing:
        result.problems.append(f"target '{target.name}' has no {', '.join(missing)} (a migration starts from a "
                               "secret-based target whose CycleCloud VM is known)")
        return result
    assert target.vm_resource_id is not None
    try:
        result.vm = await ComputeAdapter(ctx.clients).get_vm(target.vm_resource_id)
    except RemediatorError as exc:
        result.problems.append(f"the CycleCloud VM cannot be read through ARM: {exc.message} {exc.fix}".strip())
    try:
        client = await open_cyclecloud(ctx, target)
        try:
            record = await client.transport.read_record()
        finally:
            await client.close()
        from ..adapters.cyclecloud.models import account_from_record

        result.account = account_from_record(record, target.cyclecloud.account if target.cyclecloud else "")
        if MI_FIELD not in record:
            result.problems.append(
                f"CycleCloud's account shows no {MI_FIELD} setting, so this CycleCloud version cannot use the VM's "
                "managed identity for the account (upgrade CycleCloud to 8.x first)")
    except RemediatorError as exc:
        result.problems.append(f"CycleCloud's account cannot be read: {exc.message} {exc.fix}".strip())
    rbac = RbacAdapter(ctx.clients)
    for sub in target.subscription_ids:
        for role in target.roles:
            try:
                await rbac.resolve_role(sub, role)
            except RemediatorError as exc:
                result.problems.append(f"role '{role}' cannot be resolved at subscription {sub}: {exc.message}")
    try:
        rotation = (await rotation_store.read(target.name)).journal
        if rotation.current is not None:
            result.problems.append(f"rotation {rotation.current.id} of '{target.name}' is in flight (stage "
                                   f"{rotation.current.stage.value}); let it finish first")
        elif not holding_lock and await rotation_store.is_locked(target.name):
            result.problems.append(f"a rotation or maintenance run holds '{target.name}' now; call again later")
    except RemediatorError as exc:
        result.problems.append(f"the rotation journal cannot be read: {exc.message}")
    return result


async def managed_identity_health(ctx: AppContext, target: Target, principal_id: str | None) -> list[str]:
    """What stops the target from being healthy on the VM's managed identity (empty: healthy): the identity is
    the migrated one, it holds every configured role, and CycleCloud's account uses it."""
    problems: list[str] = []
    try:
        vm = await ComputeAdapter(ctx.clients).get_vm(target.vm_resource_id or "")
        if vm.identity_principal_id is None:
            problems.append(f"the system-assigned identity of VM {vm.name} is off")
        elif principal_id and vm.identity_principal_id != principal_id.lower():
            problems.append(f"the system-assigned identity of VM {vm.name} is {vm.identity_principal_id}, not the "
                            f"migrated {principal_id} (it was turned off and on again)")
    except RemediatorError as exc:
        problems.append(f"the VM cannot be read: {exc.message}")
        return problems
    if problems:
        return problems
    try:
        plan = await identity_roles(ctx, target, dry_run=True)
        for outcome in plan.assignments:
            if outcome.state in (AssignmentState.MISSING, AssignmentState.FAILED):
                problems.append(f"{outcome.role_name} at {outcome.scope}: {outcome.reason}")
    except RemediatorError as exc:
        problems.append(f"the identity's role assignments cannot be checked: {exc.message}")
    try:
        account = await read_cyclecloud_account(ctx, target)
        if not account.use_managed_identity:
            problems.append(f"CycleCloud account '{account.name}' does not use the managed identity")
    except RemediatorError as exc:
        problems.append(f"CycleCloud's account cannot be read: {exc.message}")
    return problems
