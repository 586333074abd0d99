"""The migration of a target from a client secret to the CycleCloud VM's managed identity (docs/migration.md):
plan (dry run), apply (resumable: each step verified, then journaled), roll back (until step 6), remove the
app's product-created secrets (step 6, only when asked)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from .. import clock
from ..adapters.compute import ComputeAdapter
from ..adapters.cyclecloud import CycleCloudUpdateRejectedError, open_cyclecloud
from ..adapters.vault import VaultAdapter
from ..clock import Deadline
from ..config import Target
from ..context import AppContext
from ..errors import ConflictError, RemediatorError, ServiceError
from ..roles import AssignmentState
from ..rotation.store import JournalStore, TargetLock
from .account_mode import MANAGED_IDENTITY, SERVICE_PRINCIPAL, switch_account
from .checks import identity_roles, preflight
from .cleanup import is_rollback_copy_superseded, remove_secrets, secrets_offer
from .model import ROLLBACK_ALLOWED, MigrationJournal, MigrationStage, reached
from .outcome import MigrationOutcome, StepReport
from .store import MigrationStore, VersionedMigration

logger = logging.getLogger(__name__)

DEADLINE_MARGIN_SECONDS = 5.0  # answer this long before the caller's deadline

# CycleCloud validates the switched account before saving it; a role assignment that is still propagating makes
# it refuse (nothing changes then). Wait this long between attempts (about 4 minutes in all).
SWITCH_RETRY_DELAYS: tuple[float, ...] = (15.0, 30.0, 60.0, 120.0)
# A role assignment usually applies within two minutes (as the diagnosis assumes for managed identities, whose
# effective permissions nothing can read from here). A CycleCloud that does not validate on save would accept the
# switch at once, so new assignments are given this long before the account is switched.
ROLE_PROPAGATION_SECONDS = 120.0


def _stores(ctx: AppContext) -> tuple[MigrationStore, JournalStore]:
    service, container = ctx.clients.blob_service(), ctx.settings.storage.container
    return MigrationStore(service, container), JournalStore(service, container)


def config_change(target: Target) -> dict[str, object]:
    """What the operator changes in the TARGETS app setting once the account uses the managed identity."""
    return {"setting": "TARGETS", "target": target.name, "set": {"mode": "managed_identity"},
            "remove": ["secret_name"], "keep": ["vm_resource_id", "tenant_id", "subscription_ids", "roles",
                                                 "cyclecloud"],
            "why": "the target is then validated as a managed-identity target and no longer rotated"}


def _blocked(message: str, reason: str, fix: str, target: str, **details: object) -> ConflictError:
    return ConflictError(message, reason=reason, fix=fix, target=target, code="migration_blocked",
                         details=dict(details))


class _NotYet(Exception):
    """A wait (role propagation, a refused switch's back-off) would outlast the caller's deadline: the journal
    keeps the stage, and the next call (or the queue continuation) resumes after `seconds`."""

    def __init__(self, seconds: float, why: str) -> None:
        super().__init__(why)
        self.seconds, self.why = seconds, why


class _Run:
    """One apply, under the target's lock; every step re-checks the lease before it changes anything."""

    def __init__(self, ctx: AppContext, target: Target, store: MigrationStore, rotation_store: JournalStore,
                 current: VersionedMigration, lock: TargetLock, deadline: Deadline | None = None) -> None:
        self.ctx, self.target, self.store, self.rotation_store = ctx, target, store, rotation_store
        self.current, self.lock, self.deadline = current, lock, deadline
        self.steps: list[StepReport] = []

    async def sleep(self, seconds: float, why: str) -> None:
        """Wait, unless the wait would outlast the deadline: then stop here (the journal has the stage)."""
        if self.deadline is not None and seconds > self.deadline.remaining() - DEADLINE_MARGIN_SECONDS:
            raise _NotYet(seconds, why)
        await asyncio.sleep(seconds)

    @property
    def journal(self) -> MigrationJournal:
        assert self.current.journal is not None
        return self.current.journal

    async def record(self, journal: MigrationJournal) -> None:
        self.current = await self.store.write_migration(self.current, journal)

    async def start(self) -> None:
        checked = await preflight(self.ctx, self.target, self.rotation_store, holding_lock=True)
        if not checked.ok:
            raise _blocked(f"The migration of '{self.target.name}' cannot start.", "; ".join(checked.problems),
                           "Fix what the preflight names, then call again (nothing was changed).", self.target.name,
                           problems=checked.problems)
        cc = self.target.cyclecloud
        assert cc is not None and self.target.app_id and self.target.secret_name and self.target.vm_resource_id
        self.lock.check()
        await self.record(MigrationJournal.begin(
            target=self.target.name, app_id=self.target.app_id, tenant_id=self.target.tenant_id,
            secret_name=self.target.secret_name, vm_id=self.target.vm_resource_id, account=cc.account))
        self.steps.append(StepReport("preflight", "done", "VM, CycleCloud account, roles and rotation state checked"))

    async def identity(self) -> None:
        self.lock.check()
        vm = await ComputeAdapter(self.ctx.clients).enable_system_identity(self.journal.vm_id)
        if vm.identity_principal_id is None:
            raise ServiceError(f"The system-assigned identity of VM {vm.name} did not turn on.",
                               reason="ARM accepted the change but the VM reads back without it.",
                               fix="Check the VM's Identity blade, then call again.", target=self.target.name)
        kept = f"; user-assigned identities kept: {', '.join(vm.user_assigned_identity_ids)}" \
            if vm.user_assigned_identity_ids else ""
        await self.record(self.journal.advance(MigrationStage.IDENTITY_ON, principal_id=vm.identity_principal_id))
        self.steps.append(StepReport("identity", "done", f"system-assigned identity {vm.identity_principal_id}{kept}"))

    async def roles(self) -> None:
        self.lock.check()
        result = await identity_roles(self.ctx, self.target, dry_run=False)
        if result.principal.object_id != self.journal.principal_id:
            raise _blocked("The VM's identity changed during the migration.",
                           f"expected {self.journal.principal_id}, found {result.principal.object_id}",
                           "Roll back (`migrate --rollback`) and start again.", self.target.name)
        if not result.ok:
            raise _blocked(f"The VM's identity could not be given the roles of '{self.target.name}'.", result.reason,
                           result.fix + " CycleCloud still uses the client secret; nothing else was changed.",
                           self.target.name, assignments=[a.to_dict() for a in result.assignments])
        ids = tuple(a.assignment_id or a.assignment_name or "" for a in result.assignments
                    if a.state in (AssignmentState.PRESENT, AssignmentState.CREATED))
        created = any(a.state is AssignmentState.CREATED for a in result.assignments)
        effective_at = clock.now() + timedelta(seconds=ROLE_PROPAGATION_SECONDS) if created else None
        await self.record(self.journal.advance(MigrationStage.ROLES_ASSIGNED, role_assignments=ids,
                                               roles_effective_at=effective_at))
        self.steps.append(StepReport("roles", "done", result.message))

    async def account(self) -> None:
        await self._wait_for_propagation()
        client = await open_cyclecloud(self.ctx, self.target)
        try:
            account = await client.read_account()
            if not account.use_managed_identity:
                await self._switch()
                account = await client.read_account()  # verified independently of the script's own read-back
        finally:
            await client.close()
        if not account.use_managed_identity or account.app_id:
            raise ServiceError(f"CycleCloud account '{self.journal.account}' does not read back as using the "
                               "managed identity.", reason=f"read back: {account.to_dict()}",
                               fix="Check Settings > Cloud Provider Accounts in CycleCloud, then call again.",
                               target=self.target.name)
        await self.record(self.journal.advance(MigrationStage.ACCOUNT_SWITCHED, switched_at=clock.now()))
        self.steps.append(StepReport("account", "done", f"CycleCloud account '{account.name}' uses the VM's "
                                                        "managed identity (read back)"))

    async def _wait_for_propagation(self) -> None:
        effective_at = self.journal.roles_effective_at
        if effective_at is None:
            return
        wait = (effective_at - clock.now()).total_seconds()
        if wait > 0:
            logger.info("waiting %.0fs for the new role assignments of %s to apply", wait, self.target.name)
            await self.sleep(min(wait, ROLE_PROPAGATION_SECONDS), "the identity's new role assignments are still "
                                                                   "being applied by Azure")

    async def _switch(self) -> None:
        delays = list(SWITCH_RETRY_DELAYS)
        while True:
            self.lock.check()
            try:
                await switch_account(ComputeAdapter(self.ctx.clients), target=self.target.name,
                                     vm_id=self.journal.vm_id, account=self.journal.account, mode=MANAGED_IDENTITY)
                return
            except CycleCloudUpdateRejectedError as exc:
                if not delays:
                    raise
                delay = delays.pop(0)
                logger.info("CycleCloud refused the switch (%s); role propagation? retrying in %gs", exc.reason,
                            delay)
                await self.sleep(delay, "CycleCloud refused the switch (the identity's role may still be "
                                        "propagating)")

    async def mode(self) -> None:
        self.lock.check()
        await self.record(self.journal.advance(MigrationStage.MODE_RECORDED))
        self.steps.append(StepReport("mode", "done", "migration recorded; change the target's app settings as shown"))


async def migrate_target(ctx: AppContext, target_name: str, *, dry_run: bool = True,
                         remove_old_secrets: bool = False, deadline_seconds: float | None = None) -> MigrationOutcome:
    """Plan (dry_run) or run the migration, resuming from the journal; with `remove_old_secrets`, step 6.
    With `deadline_seconds` (HTTP, queue continuations) a wait that would outlast it ends the call with status
    `waiting` (HTTP 202, `retryAfterSeconds`); the next call resumes at the recorded stage."""
    target = ctx.settings.target(target_name)
    store, rotation_store = _stores(ctx)
    current = await store.read_migration(target.name)
    if current.journal is not None and current.journal.stage is MigrationStage.ROLLED_BACK:
        current = VersionedMigration(None, current.etag)  # a new migration may start; the etag guards the write
    if dry_run:
        return await _plan(ctx, target, current, rotation_store)
    lock = TargetLock(store, target.name)
    await lock.acquire()
    try:
        run = _Run(ctx, target, store, rotation_store, current, lock,
                   Deadline(deadline_seconds) if deadline_seconds is not None else None)
        if current.journal is None:
            await run.start()
        steps = ((MigrationStage.IDENTITY_ON, run.identity), (MigrationStage.ROLES_ASSIGNED, run.roles),
                 (MigrationStage.ACCOUNT_SWITCHED, run.account), (MigrationStage.MODE_RECORDED, run.mode))
        try:
            for stage, step in steps:
                if not reached(run.journal.stage, stage):
                    await step()
        except _NotYet as later:
            run.steps.append(StepReport("account", "pending", f"{later.why}; resumes in {later.seconds:.0f} s"))
            return MigrationOutcome(target.name, "migrate", False, "waiting",
                                    f"The migration of '{target.name}' waits: {later.why}. CycleCloud still uses "
                                    "the client secret; call again (or follow the operation) and it resumes.",
                                    run.journal.id, run.journal.stage.value, run.steps,
                                    retry_after_seconds=max(1.0, later.seconds))
        journal = run.journal
        if remove_old_secrets and journal.stage is MigrationStage.MODE_RECORDED:
            return await _remove(ctx, target, run, rotation_store)
        return await _migrated(ctx, target, journal, rotation_store, run.steps)
    finally:
        await lock.release()


async def _migrated(ctx: AppContext, target: Target, journal: MigrationJournal, rotation_store: JournalStore,
                    steps: list[StepReport]) -> MigrationOutcome:
    if journal.stage is MigrationStage.SECRETS_REMOVED:
        return MigrationOutcome(target.name, "migrate", False, "finished",
                                f"'{target.name}' was migrated to the VM's managed identity and its product-created "
                                "secrets were removed.", journal.id, journal.stage.value, steps)
    offer = await secrets_offer(ctx, target, journal, rotation_store)
    steps.append(StepReport("secrets", "would" if offer.ready else "pending",
                            "removal of the product-created secrets is offered" if offer.ready else
                            "offered once: " + "; ".join(offer.waiting_for)))
    return MigrationOutcome(target.name, "migrate", False, "migrated",
                            f"CycleCloud account of '{target.name}' uses the VM's managed identity.",
                            journal.id, journal.stage.value, steps, config_change(target),
                            offer.to_dict(target.name))


async def _remove(ctx: AppContext, target: Target, run: _Run, rotation_store: JournalStore) -> MigrationOutcome:
    offer = await secrets_offer(ctx, target, run.journal, rotation_store)
    if not offer.ready:
        raise _blocked(f"The secrets of '{target.name}' may not be removed yet.", "; ".join(offer.waiting_for),
                       "Wait for what is named, then call again; nothing was removed.", target.name,
                       offer=offer.to_dict(target.name))
    run.lock.check()
    removed, kept, notes = await remove_secrets(ctx, target, run.journal, rotation_store)
    await run.record(run.journal.advance(MigrationStage.SECRETS_REMOVED,
                                         removed_key_ids=tuple(c["key_id"] for c in removed)))
    run.steps.append(StepReport("secrets", "done", f"{len(removed)} removed, {len(kept)} kept"))
    return MigrationOutcome(target.name, "remove_secrets", False, "finished",
                            f"Removed {len(removed)} product-created secret(s) of app {run.journal.app_id}; kept "
                            f"{len(kept)}.", run.journal.id, run.journal.stage.value, run.steps,
                            offer={"removed": removed, "kept": kept, "app_still_has": notes})


async def _plan(ctx: AppContext, target: Target, current: VersionedMigration,
                rotation_store: JournalStore) -> MigrationOutcome:
    """Reads only: what each step would do (or that it is done, when a migration is recorded)."""
    journal = current.journal
    if journal is not None:
        steps = [StepReport(name, "done" if reached(journal.stage, stage) else "pending")
                 for name, stage in (("preflight", MigrationStage.STARTED), ("identity", MigrationStage.IDENTITY_ON),
                                     ("roles", MigrationStage.ROLES_ASSIGNED),
                                     ("account", MigrationStage.ACCOUNT_SWITCHED),
                                     ("mode", MigrationStage.MODE_RECORDED),
                                     ("secrets", MigrationStage.SECRETS_REMOVED))]
        offer = None
        if journal.stage is MigrationStage.MODE_RECORDED:
            offer = (await secrets_offer(ctx, target, journal, rotation_store)).to_dict(target.name)
        return MigrationOutcome(target.name, "plan", True, "planned",
                                f"Migration {journal.id} of '{target.name}' is at '{journal.stage.value}'; "
                                f"`migrate {target.name} --apply` continues it.", journal.id, journal.stage.value,
                                steps, config_change(target), offer)
    checked = await preflight(ctx, target, rotation_store)
    steps = [StepReport("preflight", "done" if checked.ok else "failed",
                        "ready to migrate" if checked.ok else "; ".join(checked.problems))]
    vm = checked.vm
    if vm is not None and vm.identity_principal_id:
        steps.append(StepReport("identity", "done", f"system-assigned identity {vm.identity_principal_id} is on"))
        try:
            plan = await identity_roles(ctx, target, dry_run=True)
            steps.append(StepReport("roles", "would" if plan.changes_needed else "done", plan.message))
        except RemediatorError as exc:
            steps.append(StepReport("roles", "failed", exc.message, exc.fix))
    else:
        kept = f" (keeping user-assigned {', '.join(vm.user_assigned_identity_ids)})" \
            if vm and vm.user_assigned_identity_ids else ""
        steps.append(StepReport("identity", "would", f"turn on the VM's system-assigned identity{kept}"))
        steps.append(StepReport("roles", "would", f"assign {', '.join(target.roles)} on "
                                                  f"{', '.join(target.subscription_ids)} to the new identity"))
    account = checked.account
    if account is not None and account.use_managed_identity:
        steps.append(StepReport("account", "done", f"account '{account.name}' already uses the managed identity"))
    else:
        steps.append(StepReport("account", "would", "switch the CycleCloud account to the managed identity "
                                                     "(Run Command `cyclecloud account edit`), then read it back"))
    steps.append(StepReport("mode", "would", "record the migration; you change the target's app settings"))
    steps.append(StepReport("secrets", "pending", f"offered {target.rotation.grace_hours:g} h after the switch, "
                                                  "once a managed-identity health check passes"))
    return MigrationOutcome(target.name, "plan", True, "planned" if checked.ok else "blocked",
                            f"Dry run: nothing was changed. Apply it: python -m shared migrate {target.name} --apply"
                            if checked.ok else "The preflight failed; nothing was changed.",
                            steps=steps, config_change=config_change(target))


async def rollback_target(ctx: AppContext, target_name: str) -> MigrationOutcome:
    """Until step 6: put the secret-based account back (the secret from Key Vault), verified by reading it back.
    The identity and its role assignments stay (harmless; a later migration reuses them)."""
    target = ctx.settings.target(target_name)
    store, _ = _stores(ctx)
    current = await store.read_migration(target.name)
    journal = current.journal
    if journal is None or journal.stage not in ROLLBACK_ALLOWED:
        stage = journal.stage.value if journal else "none"
        raise _blocked(f"There is no migration of '{target.name}' to roll back.", f"migration stage: {stage}",
                       "A migration can be rolled back until its secrets are removed (step 6).", target.name)
    lock = TargetLock(store, target.name)
    await lock.acquire()
    try:
        client = await open_cyclecloud(ctx, target)
        try:
            account = await client.read_account()
            stored = await VaultAdapter(ctx.clients).get_secret(journal.secret_name)
            if is_rollback_copy_superseded(stored.properties.tags):
                raise _blocked(f"The migration of '{target.name}' can no longer be rolled back.",
                               f"Key Vault secret '{journal.secret_name}' no longer holds the client secret: the "
                               "secret removal (step 6) had started.",
                               "Finish it with `migrate --apply --remove-secrets`; to go back to a client secret, "
                               "create a new one and store it in the Key Vault secret first.", target.name)
            secret = stored.value
            if account.use_managed_identity or account.app_id != journal.app_id.lower():
                lock.check()
                await switch_account(ComputeAdapter(ctx.clients), target=target.name, vm_id=journal.vm_id,
                                     account=journal.account, mode=SERVICE_PRINCIPAL, app_id=journal.app_id,
                                     secret=secret)
            await client.verify(app_id=journal.app_id, tenant_id=journal.tenant_id, secret_hint=secret[:3])
        finally:
            await client.close()
        lock.check()
        current = await store.write_migration(current, journal.advance(MigrationStage.ROLLED_BACK))
    finally:
        await lock.release()
    return MigrationOutcome(target.name, "rollback", False, "rolled_back",
                            f"CycleCloud account of '{target.name}' uses app {journal.app_id} and its secret from Key "
                            f"Vault again (read back). The VM identity and its roles were left in place.",
                            journal.id, MigrationStage.ROLLED_BACK.value,
                            [StepReport("account", "done", "secret-based account restored and verified")],
                            {"setting": "TARGETS", "target": target.name, "set": {"mode": "service_principal",
                                                                                 "app_id": journal.app_id,
                                                                                 "secret_name": journal.secret_name},
                             "why": "only if you had already switched the app settings to managed_identity"})
