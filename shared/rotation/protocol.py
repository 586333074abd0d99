"""The staged rotation protocol: plan -> intent -> create -> test -> push -> commit -> retire.

Every step is safe to re-run and the journal (store.py) says which step runs next, so a run that dies at any
point is finished by the next one. Key Vault layout (layout.py; docs/rotation.md has the full table):

- `<secret_name>`          the main secret. Its newest version is always the value CycleCloud holds; each
                           version is tagged keyId/appId/tenantId/operationId/rotatedAt and expires with its
                           credential. Older versions stay enabled until their credential is retired.
- `<secret_name>-pending`  a new value between create and commit (tagged keyId/operationId/state=pending);
                           the version is disabled once committed. Consumers never read it.

Nothing is removed here except through `remove_unused`, which applies removal.py's rule to evidence read just
before (usage.py): a credential goes only when this target created it and nothing can be shown to use it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from .. import clock, telemetry
from ..adapters.graph import AppCredential, AppRegistration, GraphAdapter, NewSecret
from ..adapters.vault import SecretVersionInfo, StoredSecret, VaultAdapter
from ..clock import Deadline
from ..config import Target
from ..context import AppContext
from ..errors import (
    ConflictError,
    CycleCloudError,
    LockedError,
    NotFoundError,
    PolicyDeniedError,
    RemediatorError,
    RequestRejectedError,
    ServiceError,
)
from ..redaction import register_secret
from .layout import (
    PENDING_SUFFIX,
    STATE_COMMITTED,
    STATE_PENDING,
    STATE_STALE,
    TAG_APP_ID,
    TAG_KEY_ID,
    TAG_OPERATION_ID,
    TAG_ROTATED_AT,
    TAG_STATE,
    TAG_TENANT_ID,
    pending_name,
)
from .model import (
    Journal,
    Operation,
    Retirement,
    RotationOutcome,
    RotationStage,
    RotationStatus,
    StepError,
    credential_display_name,
    operation_of,
)
from .plan import Removal, RotationPlan
from .policy import (
    Decision,
    StoredSecretFacts,
    clamp_lifetime,
    decide,
    effective_lifetime_days,
    find_orphans,
    lead_days_for,
    new_credential_end,
)
from .removal import removal_verdict
from .store import JournalStore, TargetLock, VersionedJournal
from .usage import gather_usage, secret_versions

logger = logging.getLogger(__name__)

__all__ = ["PENDING_SUFFIX", "RotationRun", "pending_name"]

# ARM action whose grant the authorization probe reports on (the one CycleCloud's own error names)
PROBE_ACTION = "Microsoft.Storage/storageAccounts/read"
TEST_SPACING_SECONDS = 1.0  # between consecutive successful probes
TEST_BACKOFF_START, TEST_BACKOFF_MAX = 1.0, 15.0
RESERVE_AFTER_TEST_SECONDS = 25.0  # time kept for push + commit when the test step waits inside a deadline
TRANSIENT_ATTEMPTS = 3  # whole-run retries (from the journal) after a transient upstream failure
RESTARTS = 2  # fresh starts after an operation in flight was found dead (its value or credential gone)
# Graph may answer from a replica that has not seen a write of the last seconds: a read that contradicts what
# this target's own journal or Key Vault tags say is read again after these waits before anything is decided
STALE_READ_WAITS = (2.0, 4.0)
KEY_ID_GONE = "keyId tag names a credential the app no longer has"
# a forced rotation does not start while this target already has this many credentials on the app (the new one
# would make more than three): earlier ones are kept for a reason a person must see first
FORCED_ROTATION_CREDENTIAL_LIMIT = 2

Progress = Callable[[str], None]


@dataclass(frozen=True)
class MainSecret:
    """The main secret as read at the start of a run: every version (oldest first) and whether it is
    soft-deleted."""

    versions: list[SecretVersionInfo]
    deleted: bool

    @property
    def newest(self) -> SecretVersionInfo | None:
        return self.versions[-1] if self.versions else None

    @property
    def newest_enabled(self) -> SecretVersionInfo | None:
        return next((v for v in reversed(self.versions) if v.enabled), None)

    def key_ids(self) -> set[str]:
        return {v.tags[TAG_KEY_ID] for v in self.versions if v.tags.get(TAG_KEY_ID)}


class OperationClosed(Exception):
    """The operation in flight was closed because its value or credential is gone; the run starts over
    (`force` when CycleCloud already held the lost value, so Key Vault and CycleCloud are brought together)."""

    def __init__(self, *, force: bool) -> None:
        super().__init__("operation closed")
        self.force = force


class StepStopped(Exception):
    def __init__(self, outcome: RotationOutcome) -> None:
        super().__init__(outcome.status.value)
        self.outcome = outcome


class RotationRun:
    """One call's worth of work on one target, holding its lock."""

    def __init__(self, ctx: AppContext, target: Target, store: JournalStore, lock: TargetLock | None,
                 deadline: Deadline, progress: Progress | None = None, requested_by: str | None = None) -> None:
        self.ctx = ctx
        self.target = target
        self.policy = target.rotation
        self.store = store
        self.lock = lock
        self.deadline = deadline
        self._progress = progress
        self.requested_by = requested_by
        self.graph = GraphAdapter(ctx.clients)
        self.vault = VaultAdapter(ctx.clients)
        self.secret_name = target.secret_name or ""
        self.pending_name = pending_name(self.secret_name)
        self.vj: VersionedJournal | None = None
        self.op: Operation | None = None
        self.steps: list[str] = []
        self.warnings: list[str] = []
        self.maintenance: list[str] = []
        self.kept: list[dict[str, str]] = []
        self.findings: list[dict[str, str]] = []
        self._value: str | None = None  # the new secret, in memory only
        self._pushed_in_this_run = False
        self._started_here: set[str] = set()  # operations whose intent this run saved
        self._adds: dict[str, int] = {}  # addPassword calls per operation in this run

    # -- small helpers ------------------------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.steps.append(text)
        logger.info("rotation %s: %s", self.target.name, text)
        if self._progress:
            self._progress(text)

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)
            logger.warning("rotation %s: %s", self.target.name, text)

    def finding(self, code: str, message: str, fix: str) -> None:
        if all(f["code"] != code for f in self.findings):
            self.findings.append({"code": code, "message": message, "fix": fix})

    def _check_lock(self) -> None:
        if self.lock is not None:
            self.lock.check()

    @property
    def journal(self) -> Journal:
        assert self.vj is not None
        return self.vj.journal

    async def save(self, journal: Journal) -> None:
        assert self.vj is not None
        self._check_lock()
        self.vj = await self.store.write(self.vj, journal)
        self.op = journal.current if journal.current else self.op

    def outcome(self, status: RotationStatus, message: str, **extra: Any) -> RotationOutcome:
        op = self.op
        fields: dict[str, Any] = {
            "stage": op.stage if op else None, "operation_id": op.id if op else None,
            "new_key_id": op.new_key_id if op else None, "previous_key_id": op.previous_key_id if op else None,
            "expires_on": op.new_end if op else None, "push_confirmed": op.push_confirmed if op else None,
        }
        fields.update(extra)
        return RotationOutcome(self.target.name, status, message, steps=self.steps, warnings=self.warnings,
                               maintenance=self.maintenance, kept=self.kept, findings=self.findings, **fields)

    async def fail_step(self, stage: RotationStage, exc: RemediatorError | str, message: str) -> StepStopped:
        """Record why `stage` stopped (the journal keeps the operation at that stage) and end the run."""
        code = exc.code if isinstance(exc, RemediatorError) else "rotation_step_failed"
        text = str(exc)
        error = StepError(stage.value, code, text, clock.iso(clock.now()))
        if self.op is not None and self.vj is not None and self.journal.current is not None:
            try:
                await self.save(self.journal.with_current(self.op.failed(error)))
            except RemediatorError:
                logger.warning("could not record the failure of %s in the journal", self.target.name)
        self.note(f"{stage.value} stopped: {code}")
        return StepStopped(self.outcome(RotationStatus.FAILED, message, error=error.to_dict()))

    async def close_operation(self, reason: str, *, force_restart: bool = False) -> OperationClosed:
        """Close the operation in flight for good (history: abandoned) so the next pass starts a fresh one; its
        credential, if any, becomes an orphan of this target that the removal rule decides about."""
        op = self.op
        assert op is not None
        error = StepError(op.stage.value, "operation_closed", reason, clock.iso(clock.now()))
        journal = self.journal.finish(op.failed(error), "abandoned").log_event(
            "operation_closed", operation_id=op.id, key_id=op.new_key_id, reason=reason)
        await self.save(journal)
        self.op, self._value = None, None
        self.warn(f"operation {op.id} was closed: {reason}; a fresh operation starts")
        return OperationClosed(force=force_restart)

    # -- reading the world ----------------------------------------------------------------------------------

    async def read_versions(self, name: str) -> list[SecretVersionInfo]:
        try:
            return await self.vault.list_versions(name)
        except NotFoundError:
            return []

    async def read_main_secret(self) -> MainSecret:
        versions, deleted = await secret_versions(self.vault, self.secret_name)
        return MainSecret(versions, deleted)

    async def read_stored(self, main: MainSecret) -> StoredSecret | None:
        """The main secret's newest ENABLED version (what consumers get and CycleCloud should hold), or None."""
        newest = main.newest_enabled
        if newest is None:
            return None
        try:
            return await self.vault.get_secret(self.secret_name, newest.version)
        except (NotFoundError, ConflictError):  # deleted or disabled since the list: nothing usable
            return None

    @staticmethod
    def facts(stored: StoredSecret | None) -> StoredSecretFacts | None:
        if stored is None or not stored.properties.enabled:
            return None
        value = stored.value
        register_secret(value)
        return StoredSecretFacts(
            key_id_tag=stored.properties.tags.get(TAG_KEY_ID), hint=value[:3],
            has_whitespace=value != value.strip(), operation_id_tag=stored.properties.tags.get(TAG_OPERATION_ID),
        )

    async def reread_app(self, app: AppRegistration, why: str, still_wrong: Callable[[AppRegistration], bool]
                         ) -> AppRegistration:
        """Read the app again (after a pause) while `still_wrong`: Graph may answer from a stale replica."""
        for wait in STALE_READ_WAITS:
            if not still_wrong(app):
                break
            self.note(f"Graph's answer looks stale ({why}); reading again in {wait:.0f} s")
            await asyncio.sleep(min(wait, max(0.0, self.deadline.remaining() / 4)))
            app = await self.graph.get_application_by_object_id(app.object_id)
        return app

    # -- the run ----------------------------------------------------------------------------------------------

    async def execute(self, *, force: bool) -> RotationOutcome:
        """Run from the journal. A transient upstream failure re-runs from the journal (bounded); a dead operation
        starts over (bounded); any other domain error is recorded in the journal with its stage and ends the run."""
        attempts = restarts = 0
        while True:
            attempts += 1
            try:
                return await self._run(force=force)
            except StepStopped as stopped:
                return stopped.outcome
            except OperationClosed as closed:
                restarts += 1
                force = force or closed.force
                if restarts > RESTARTS:
                    return self.outcome(RotationStatus.FAILED, "Operations kept dying before they finished; see "
                                                               "the warnings and the journal's history.")
            except LockedError:
                raise
            except ConflictError as exc:
                if exc.code == "journal_conflict":
                    raise
                return await self._stopped(exc)
            except RequestRejectedError as exc:  # a permanent refusal: retrying cannot help
                return await self._stopped(exc)
            except ServiceError as exc:
                if attempts >= TRANSIENT_ATTEMPTS or self.deadline.remaining() < 10:
                    return await self._stopped(exc, "An upstream service kept failing at stage '{stage}'; the next "
                                                    "run resumes there.")
                wait = min(2.0 * attempts, self.deadline.remaining() / 4)
                self.note(f"transient failure ({exc.code}); resuming from the journal in {wait:.0f} s")
                await asyncio.sleep(wait)
            except RemediatorError as exc:
                return await self._stopped(exc)

    async def _stopped(self, exc: RemediatorError, message: str = "Stage '{stage}' stopped: {reason}") -> \
            RotationOutcome:
        """Record an operation's failure with its stage; before any operation exists, the error is the answer."""
        if self.op is None and not isinstance(exc, ServiceError):
            raise exc
        stage = self.op.stage if self.op else RotationStage.PLAN
        text = message.format(stage=stage.value, reason=exc.message)
        return (await self.fail_step(stage, exc, text)).outcome

    async def _run(self, *, force: bool) -> RotationOutcome:
        self.vj = await self.store.read(self.target.name)
        self.op = self.journal.current
        app = await self.graph.get_application(self.target.app_id or "")
        main = await self.read_main_secret()
        pending_versions = await self.read_versions(self.pending_name)
        app = await self.maintain(app, main, pending_versions)

        op = self.journal.current
        if op is not None:
            self.note(f"resuming operation {op.id} at stage '{op.stage.value}'")
            app = await self.check_alive(op, app)
            return await self.advance(app, pending_versions)

        migrated = await self.migrated_to_managed_identity()
        if migrated is not None:
            return migrated
        stopped = self.secret_needs_a_person(main, force=force)
        if stopped is not None:
            return stopped
        learned = self.journal.policy_max_lifetime_days
        lifetime = effective_lifetime_days(self.policy, learned)
        decision, app = await self.decide_now(app, main, force=force)
        lead = lead_days_for(self.policy, decision.current.credential, learned)
        if lead != self.policy.rotate_before_days:
            self.warn(f"rotation is due {lead} days before expiry, not rotate_before_days="
                      f"{self.policy.rotate_before_days}: secrets live only {lifetime} days or less "
                      "(rotation.lifetime_days" + (f", an app management policy's maximum of {learned} days"
                                                   if learned else "") + ", or the credential's own lifetime)")
        journal = self.journal
        if journal.adopted_key_id is None and decision.current.credential is not None:
            journal = journal.log_event("adopted", key_id=decision.current.credential.key_id,
                                        how=decision.current.how)
            journal = replace(journal, adopted_key_id=decision.current.credential.key_id)
            self.maintenance.append(f"adopted credential {decision.current.credential.key_id} "
                                    f"(matched by {decision.current.how})")
        if not decision.due:
            if journal != self.journal:
                await self.save(journal)
            return self.outcome(RotationStatus.NOT_DUE, f"Not due: {decision.reason}.", due=False,
                                reason=decision.reason,
                                previous_key_id=decision.current.credential.key_id
                                if decision.current.credential else None)
        crowded = self.too_many_credentials(app, decision.reason)
        if crowded is not None:
            return crowded
        now = clock.iso(clock.now())
        op = Operation(id=str(uuid.uuid4()), stage=RotationStage.CREATE, started_at=now, updated_at=now,
                       reason=decision.reason, lifetime_days=lifetime,
                       lifetime_clamped_by_policy=lifetime != self.policy.lifetime_days,
                       previous_key_id=decision.current.credential.key_id if decision.current.credential else None,
                       requested_by=self.requested_by)
        self.op = op
        await self.save(journal.start(op))  # INTENT: the operation id is durable before addPassword
        self._started_here.add(op.id)
        self.note(f"intent: operation {op.id} ({decision.reason})")
        return await self.advance(app, pending_versions)

    async def decide_now(self, app: AppRegistration, main: MainSecret, *, force: bool
                         ) -> tuple[Decision, AppRegistration]:
        """Whether a rotation is due now (policy.py's rule on the stored secret and the app's credentials), and the
        app as last read: the real run and the dry run decide here."""
        stored = self.facts(await self.read_stored(main))
        learned = self.journal.policy_max_lifetime_days
        decision = decide(clock.now(), self.policy, app.credentials, stored, force=force, policy_max_days=learned)
        if decision.current.how == KEY_ID_GONE and stored is not None:
            # our own tag names a credential Graph does not list: right after a rotation that is a stale replica
            app = await self.reread_app(app, f"credential {stored.key_id_tag} is missing",
                                        lambda a: a.credential(stored.key_id_tag or "") is None)
            decision = decide(clock.now(), self.policy, app.credentials, stored, force=force, policy_max_days=learned)
        return decision, app

    async def plan(self, *, force: bool) -> RotationPlan:
        """What a run would do now, decided by the same steps, without doing it (the dry run): reads only, takes
        no lock, writes nothing (reading the journal never creates the state container)."""
        self.vj = await self.store.read(self.target.name)
        app = await self.graph.get_application(self.target.app_id or "")
        main = await self.read_main_secret()
        pending_versions = await self.read_versions(self.pending_name)
        removals = await self.removal_plan(app, self.orphans(app, main, pending_versions), self.due_retirements())
        learned = self.journal.policy_max_lifetime_days
        decision, _ = await self.decide_now(app, main, force=force)
        return RotationPlan(
            self.target, self.journal.current, removals, decision,
            lead_days_for(self.policy, decision.current.credential, learned),
            effective_lifetime_days(self.policy, learned), self.secret_needs_a_person(main, force=force),
            self.pending_name, self.secret_name)

    async def migrated_to_managed_identity(self) -> RotationOutcome | None:
        """A target whose CycleCloud account was switched to the VM's managed identity (docs/migration.md) has no
        secret to rotate, even before the operator changes its mode in the app settings: a push would only be
        refused by the read-back and leave a credential nobody needs."""
        from ..migration.model import MigrationStage, reached
        from ..migration.store import MigrationStore

        store = MigrationStore(self.ctx.clients.blob_service(), self.ctx.settings.storage.container)
        migration = (await store.read_migration(self.target.name)).journal
        if migration is None or not reached(migration.stage, MigrationStage.ACCOUNT_SWITCHED):
            return None
        reason = (f"CycleCloud account '{migration.account}' uses the VM's managed identity since migration "
                  f"{migration.id} (stage '{migration.stage.value}'): there is no secret to rotate")
        return self.outcome(RotationStatus.NOT_DUE, f"Not due: {reason}. Set the target's mode to managed_identity "
                                                    "in the app settings (docs/migration.md).", due=False,
                            reason=reason)

    def secret_needs_a_person(self, main: MainSecret, *, force: bool) -> RotationOutcome | None:
        """A main secret a person soft-deleted or whose newest version a person disabled: what consumers use
        cannot be told, so no new rotation starts (unless forced) and nothing is removed."""
        vault = self.vault.vault_name
        if main.deleted:
            self.finding("secret.deleted", f"Key Vault secret '{self.secret_name}' is soft-deleted: consumers cannot "
                         "read the secret CycleCloud uses, and the product removes no credential meanwhile.",
                         f"Recover it: az keyvault secret recover --vault-name {vault} --name {self.secret_name} "
                         "(or rotate with force, which recovers it when the product may).")
        elif main.newest is not None and not main.newest.enabled:
            self.finding("secret.disabled", f"The newest version of Key Vault secret '{self.secret_name}' is "
                         "disabled: consumers get an older value, and the product removes no credential meanwhile.",
                         f"Re-enable it: az keyvault secret set-attributes --vault-name {vault} --name "
                         f"{self.secret_name} --version {main.newest.version} --enabled true (or rotate with force "
                         "to write a fresh secret).")
        else:
            return None
        if force:
            return None
        finding = self.findings[-1]
        return self.outcome(RotationStatus.FAILED, f"{finding['message']} {finding['fix']}",
                            error={"stage": RotationStage.PLAN.value, "code": finding["code"],
                                   "message": finding["message"], "at": clock.iso(clock.now())})

    def too_many_credentials(self, app: AppRegistration, reason: str) -> RotationOutcome | None:
        """A forced rotation while earlier credentials of this target are still kept would pile them up; a due
        one (expiry, a broken stored secret) goes ahead all the same: an outage is worse than a fourth
        credential."""
        if reason != "forced":
            return None
        own = [c.key_id for c in app.credentials if operation_of(c.display_name) in self.journal.own_operations]
        if len(own) < FORCED_ROTATION_CREDENTIAL_LIMIT:
            return None
        kept = {r.key_id: r.kept_because or "its grace period is not over" for r in self.journal.retirements}
        why = "; ".join(f"{k}: {kept.get(k, 'in use')}" for k in own)
        self.finding("rotation.credentials_kept", f"This target already has {len(own)} credentials on the app "
                     f"registration ({why}); a forced rotation now would leave more than three.",
                     "Wait for the grace period, or fix what keeps the earlier credentials (see the reasons), then "
                     "rotate again. A rotation that is due (expiry) is never held back by this.")
        return self.outcome(RotationStatus.FAILED, self.findings[-1]["message"] + " " + self.findings[-1]["fix"],
                            error={"stage": RotationStage.PLAN.value, "code": "rotation.credentials_kept",
                                   "message": self.findings[-1]["message"], "at": clock.iso(clock.now())})

    async def check_alive(self, op: Operation, app: AppRegistration) -> AppRegistration:
        """The operation in flight is dead when a person removed its new credential: close it and start over."""
        if not op.new_key_id or op.stage not in (RotationStage.TEST, RotationStage.PUSH, RotationStage.COMMIT):
            return app
        key_id = op.new_key_id
        app = await self.reread_app(app, f"credential {key_id} of the operation in progress is missing",
                                    lambda a: a.credential(key_id) is None)
        if app.credential(key_id) is None:
            raise await self.close_operation(f"its new credential {key_id} was removed from the app registration",
                                             force_restart=op.stage is RotationStage.COMMIT)
        return app

    async def advance(self, app: AppRegistration, pending_versions: list[SecretVersionInfo]) -> RotationOutcome:
        assert self.op is not None
        while True:
            stage = self.op.stage
            with telemetry.span(f"rotation.{stage.value}", target=self.target.name, operationId=self.op.id,
                                stage=stage.value):
                if stage is RotationStage.CREATE:
                    await self.create(app, pending_versions)
                elif stage is RotationStage.TEST:
                    await self.test()
                elif stage is RotationStage.PUSH:
                    await self.push()
                elif stage is RotationStage.COMMIT:
                    committed = await self.commit(app)
                    try:
                        await self.remove_unused(app, [], self.due_retirements())
                    except RemediatorError as exc:  # the rotation is done; the journal keeps the retirement
                        self.warn(f"retiring the replaced credential failed ({exc.code}); the next run retries it")
                    return committed
                else:  # an operation is never stored at another stage; treat it as finished
                    await self.save(self.journal.finish(self.op, "abandoned"))
                    return self.outcome(RotationStatus.FAILED, f"The journal held an operation at stage "
                                                               f"'{stage.value}'; it was closed.")

    # -- maintenance and removal (every run, before any new work) ----------------------------------------------

    def due_retirements(self) -> list[Retirement]:
        now = clock.now()
        return [r for r in self.journal.retirements if (clock.from_iso(r.after) or now) <= now]

    def orphans(self, app: AppRegistration, main: MainSecret, pending_versions: list[SecretVersionInfo]
                ) -> list[AppCredential]:
        current = self.journal.current
        live_pending = {v.tags.get(TAG_KEY_ID, "") for v in pending_versions
                        if v.enabled and current is not None and v.tags.get(TAG_OPERATION_ID) == current.id}
        return find_orphans(app.credentials, self.journal.own_operations, main.key_ids() | live_pending,
                            current.new_key_id if current else None)

    async def maintain(self, app: AppRegistration, main: MainSecret,
                       pending_versions: list[SecretVersionInfo]) -> AppRegistration:
        """Disable stale pending values, then remove orphan credentials and retire replaced ones, each only as
        the removal rule allows (`removal_plan`, which the dry run shows)."""
        current_op = self.journal.current
        for version in pending_versions:
            if version.enabled and (current_op is None or version.tags.get(TAG_OPERATION_ID) != current_op.id):
                self._check_lock()
                await self.vault.update_properties(self.pending_name, version.version, enabled=False,
                                                   tags={**version.tags, TAG_STATE: STATE_STALE})
                self.maintenance.append(f"disabled stale pending value of operation "
                                        f"{version.tags.get(TAG_OPERATION_ID)}")
        return await self.remove_unused(app, self.orphans(app, main, pending_versions), self.due_retirements())

    async def removal_plan(self, app: AppRegistration, orphans: list[AppCredential],
                           retirements: list[Retirement]) -> list[Removal]:
        """The removal rule's verdict on each orphan and due retirement, on usage evidence read now (once): what
        `remove_unused` acts on and what the dry run shows."""
        if not orphans and not retirements:
            return []
        evidence = await gather_usage(self.ctx, self.target, self.vault, self.store, self.journal)
        own = self.journal.own_operations
        in_flight = self.journal.current.new_key_id if self.journal.current else None
        now = clock.now()
        plan = [Removal(o.key_id, o, None, removal_verdict(o, own, evidence, in_flight, now)) for o in orphans]
        for retirement in retirements:
            credential = app.credential(retirement.key_id)
            plan.append(Removal(retirement.key_id, credential, retirement,
                                removal_verdict(credential, own, evidence, in_flight, now) if credential else None))
        return plan

    async def remove_unused(self, app: AppRegistration, orphans: list[AppCredential],
                            retirements: list[Retirement]) -> AppRegistration:
        """Remove the orphans and the due retirements that the removal rule allows, on evidence read now; keep
        and report the others. Returns the app as Graph lists it afterwards (re-read after any removal, so
        nothing later in the run decides on a list that no longer holds)."""
        plan = await self.removal_plan(app, orphans, retirements)
        if not plan:
            return app
        journal, removed = self.journal, 0
        for item in plan:
            journal, gone = await (self._remove_orphan(app, item, journal) if item.is_orphan
                                   else self._retire(app, item, journal))
            removed += gone
        if journal != self.journal:
            await self.save(journal)
        if removed:
            app = await self.graph.get_application_by_object_id(app.object_id)
        return app

    async def _remove_orphan(self, app: AppRegistration, item: Removal, journal: Journal) -> tuple[Journal, int]:
        operation = operation_of(item.credential.display_name) if item.credential else None
        if item.kept_because is not None:
            self.keep(item.key_id, f"orphan of operation {operation} kept: {item.kept_because}")
            return journal, 0
        self._check_lock()
        gone = await self.graph.remove_password(app.object_id, item.key_id)
        journal = journal.log_event("orphan_removed", key_id=item.key_id, operation_id=operation, removed=gone)
        self.maintenance.append(f"removed orphan credential {item.key_id} (its value never reached Key Vault)")
        return journal, 1

    async def _retire(self, app: AppRegistration, item: Removal, journal: Journal) -> tuple[Journal, int]:
        retirement = item.retirement
        assert retirement is not None
        if item.kept_because is not None:
            self.keep(item.key_id, f"replaced credential kept: {item.kept_because}")
            return replace(journal, retirements=tuple(
                replace(r, kept_because=item.kept_because) if r.key_id == item.key_id else r
                for r in journal.retirements)), 0
        removed = 0
        if item.credential is not None:
            self._check_lock()
            gone = await self.graph.remove_password(app.object_id, item.key_id)
            removed = 1
            await self.disable_main_versions_of(item.key_id)
            journal = journal.log_event("retired", key_id=item.key_id, operation_id=retirement.operation_id,
                                        removed=gone)
            self.maintenance.append(f"retired replaced credential {item.key_id}")
        else:
            journal = journal.log_event("retirement_dropped", key_id=item.key_id,
                                        operation_id=retirement.operation_id, why="already gone from the app")
        return replace(journal, retirements=tuple(r for r in journal.retirements if r.key_id != item.key_id)), removed

    def keep(self, key_id: str, why: str) -> None:
        self.kept[:] = [k for k in self.kept if k["keyId"] != key_id]
        self.kept.append({"keyId": key_id, "reason": why})
        self.warn(f"kept credential {key_id}: {why}")

    async def disable_main_versions_of(self, key_id: str) -> None:
        for version in await self.read_versions(self.secret_name):
            if version.enabled and version.tags.get(TAG_KEY_ID) == key_id:
                await self.vault.update_properties(self.secret_name, version.version, enabled=False)

    # -- create ---------------------------------------------------------------------------------------------

    async def create(self, app: AppRegistration, pending_versions: list[SecretVersionInfo]) -> None:
        op = self.op
        assert op is not None
        # resume: the value may have reached Key Vault before the journal recorded it (the tag is ours: trust it
        # over a Graph list that may be stale)
        for version in pending_versions:
            if version.enabled and version.tags.get(TAG_OPERATION_ID) == op.id and version.tags.get(TAG_KEY_ID):
                key_id = version.tags[TAG_KEY_ID]
                app = await self.reread_app(app, f"new credential {key_id} is missing",
                                            lambda a, k=key_id: a.credential(k) is None)  # type: ignore[misc]
                cred = app.credential(key_id)
                if cred is None:
                    raise await self.close_operation(f"its new credential {key_id} was removed before the test")
                self.op = op.advance(RotationStage.TEST, new_key_id=cred.key_id, new_hint=cred.hint,
                                     new_end=clock.iso(cred.end), pending_version=version.version)
                await self.save(self.journal.with_current(self.op))
                self.note(f"create: found the pending value of credential {cred.key_id} in Key Vault")
                return
        lifetime = op.lifetime_days or effective_lifetime_days(self.policy, self.journal.policy_max_lifetime_days)
        clamped = op.lifetime_clamped_by_policy
        self._check_lock()
        self._adds[op.id] = self._adds.get(op.id, 0) + 1
        try:
            new = await self.graph.add_password(app.object_id, credential_display_name(op.id),
                                                new_credential_end(clock.now(), lifetime))
        except PolicyDeniedError as exc:
            self._adds[op.id] += 1
            new, lifetime = await self._create_within_policy(app, exc, lifetime)
            clamped = True
        register_secret(new.value)
        await self._store_pending(app, new, lifetime, clamped)
        if not self._only_credential_of(op.id, new):
            await self._remove_duplicates(app, new)

    def _only_credential_of(self, operation_id: str, new: NewSecret) -> bool:
        """Whether `new` is certainly the only credential this operation created: its intent was saved by this
        run (no earlier run of it can have added one), this is its first addPassword here, and the POST went out
        once. Otherwise Graph is listed for duplicates."""
        return (operation_id in self._started_here and self._adds.get(operation_id) == 1 and new.sent == 1)

    async def _create_within_policy(self, app: AppRegistration, exc: PolicyDeniedError, lifetime: int
                                    ) -> tuple[NewSecret, int]:
        """An app management policy refused the lifetime: learn its maximum (kept in the journal, so later runs
        start below it) and try once more with a day in hand for the clock skew between us and Entra."""
        op = self.op
        assert op is not None
        max_days = exc.details.get("max_lifetime_days")
        blocked = exc.code == "password_addition_blocked"
        known = int(max_days) if isinstance(max_days, int | float) and not blocked else None
        shorter = clamp_lifetime(lifetime, known)
        if shorter is None or shorter >= lifetime:
            why = ("blocks new client secrets on this app" if blocked else
                   f"limits their lifetime to {known} days" if known else
                   "limits their lifetime, and the limit could not be read")
            raise (await self.fail_step(RotationStage.CREATE, exc,
                                        f"Entra ID refused a new client secret: an app management policy {why}."
                                        )) from None
        self.warn(f"an app management policy limits secret lifetime to {known} days; using {shorter} days "
                  f"instead of {lifetime} (set rotation.lifetime_days to {shorter} to make this the plan)")
        self.op = replace(op, lifetime_days=shorter, lifetime_clamped_by_policy=True)
        await self.save(replace(self.journal, policy_max_lifetime_days=known).with_current(self.op))
        self._check_lock()
        try:
            return await self.graph.add_password(app.object_id, credential_display_name(op.id),
                                                 new_credential_end(clock.now(), shorter)), shorter
        except PolicyDeniedError as again:
            raise (await self.fail_step(RotationStage.CREATE, again,
                                        "Entra ID refused a new client secret because of an app management "
                                        "policy.")) from None

    async def _remove_duplicates(self, app: AppRegistration, new: NewSecret) -> None:
        """addPassword has no idempotency key: a POST that succeeded but was answered 5xx and retried (by the SDK
        or by us) leaves extra credentials with this operation's displayName, whose values nobody received.
        Keep the one whose value is in Key Vault; the others go through the removal rule like any orphan."""
        name = credential_display_name(self.op.id if self.op else "")
        listed = await self.graph.get_application_by_object_id(app.object_id)
        duplicates = [c for c in listed.credentials if c.display_name == name and c.key_id != new.credential.key_id]
        if duplicates:
            self.note(f"create: addPassword created {len(duplicates) + 1} credentials; keeping "
                      f"{new.credential.key_id} (its value is in Key Vault)")
            await self.remove_unused(listed, duplicates, [])

    async def _store_pending(self, app: AppRegistration, new: NewSecret, lifetime: int, clamped: bool) -> None:
        op = self.op
        assert op is not None
        key_id = new.credential.key_id
        tags = {TAG_KEY_ID: key_id, TAG_OPERATION_ID: op.id, TAG_APP_ID: self.target.app_id or "",
                TAG_TENANT_ID: self.target.tenant_id, TAG_STATE: STATE_PENDING}
        try:
            info = await self.set_secret_recovering(self.pending_name, new.value, tags=tags,
                                                    expires_on=new.credential.end,
                                                    content_type="client-secret; pending rotation")
        except RemediatorError as exc:
            # the value exists only in memory: take the credential back so no unusable secret stays live (nobody
            # else can hold a value that was never stored, and the credential is this operation's own)
            try:
                await self.graph.remove_password(app.object_id, key_id)
                self.note(f"create: Key Vault refused the new value; removed credential {key_id}")
            except RemediatorError:
                self.note(f"create: could not remove credential {key_id}; the next run removes it as an orphan")
            raise (await self.fail_step(RotationStage.CREATE, exc,
                                        "The new secret could not be stored in Key Vault, so it was withdrawn."
                                        )) from None
        self._value = new.value
        self.op = op.advance(RotationStage.TEST, new_key_id=key_id, new_hint=new.credential.hint,
                             new_end=clock.iso(new.credential.end), pending_version=info.version,
                             lifetime_days=lifetime, lifetime_clamped_by_policy=clamped)
        await self.save(self.journal.with_current(self.op))
        self.note(f"create: credential {key_id} added (ends {clock.iso(new.credential.end)}); value stored as pending")

    async def pending_value(self) -> str:
        """The new value: from memory, else from the pending Key Vault secret (resume). A value that is gone
        (purged, deleted or disabled by a person) closes the operation: nothing can finish it."""
        if self._value is not None:
            return self._value
        op = self.op
        assert op is not None
        stored: StoredSecret | None = None
        what = "missing"
        if op.pending_version:
            try:
                stored = await self.vault.get_secret(self.pending_name, op.pending_version)
            except NotFoundError:
                what = "deleted or purged"
            except ConflictError as exc:
                if exc.code != "secret_disabled":
                    raise
                what = "disabled"
        if stored is None or stored.properties.tags.get(TAG_KEY_ID) != op.new_key_id:
            raise await self.close_operation(
                f"its pending value (Key Vault secret '{self.pending_name}' version {op.pending_version}) is {what}",
                force_restart=op.stage is RotationStage.COMMIT)
        register_secret(stored.value)
        self._value = stored.value
        return stored.value

    # -- test -----------------------------------------------------------------------------------------------

    async def probe(self, value: str) -> tuple[bool, str]:
        """One token for the new secret, then ARM's authorization answer on each subscription with that same
        token (one credential per probe: its token cache saves a second token request)."""
        from ..adapters.entra import probe_secret
        from ..adapters.rbac import RbacAdapter

        tenant, app_id = self.target.tenant_id, self.target.app_id or ""
        credential = self.ctx.clients.secret_credential(tenant, app_id, value)
        try:
            token = await probe_secret(self.ctx.clients, tenant, app_id, value, credential=credential)
            if not token.ok:
                code = token.evidence.code if token.evidence else "?"
                return False, f"token refused (AADSTS{code})"
            rbac = RbacAdapter(self.ctx.clients)
            for sub in self.target.subscription_ids:
                try:
                    permissions = await rbac.permissions(sub, credential=credential)
                except RemediatorError as exc:
                    return False, f"ARM refused the new secret on subscription {sub} ({exc.code})"
                if not permissions.allows(PROBE_ACTION):
                    self.warn(f"on subscription {sub} the service principal may not {PROBE_ACTION} (a role problem "
                              "the old secret has too; see `roles`)")
            return True, "ok"
        finally:
            await credential.close()

    async def test(self) -> None:
        op = self.op
        assert op is not None
        value = await self.pending_value()
        need = self.policy.test_successes
        limit = min(self.policy.test_timeout_seconds, max(0.0, self.deadline.remaining() - RESERVE_AFTER_TEST_SECONDS))
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        successes, backoff, attempts, why = 0, TEST_BACKOFF_START, 0, "not tried"
        while True:
            self._check_lock()
            attempts += 1
            ok, why = await self.probe(value)
            if ok:
                successes += 1
                if successes >= need:
                    break
                await asyncio.sleep(TEST_SPACING_SECONDS)
                continue
            successes = 0
            left = end - loop.time()
            if left <= 0:
                self.op = op.failed(StepError(RotationStage.TEST.value, "not_ready", f"after {attempts} attempts: "
                                              f"{why}", clock.iso(clock.now())))
                self.op = replace(self.op, attempts=op.attempts + attempts)
                await self.save(self.journal.with_current(self.op))
                raise StepStopped(self.outcome(
                    RotationStatus.IN_PROGRESS,
                    f"The new secret is not accepted everywhere yet ({why}); Entra ID can take minutes to "
                    "propagate a new secret. CycleCloud keeps the old secret. Call again to resume the test."))
            wait = min(backoff, left)
            if self._progress:
                self._progress(f"test: new secret not ready ({why}); retrying in {wait:.0f} s")
            await asyncio.sleep(wait)
            backoff = min(backoff * 2, TEST_BACKOFF_MAX)
        self.op = op.advance(RotationStage.PUSH, test_successes=successes, attempts=op.attempts + attempts)
        await self.save(self.journal.with_current(self.op))
        self.note(f"test: token and ARM authorization ok {successes} times in a row "
                  f"({len(self.target.subscription_ids)} subscription(s))")

    # -- push -----------------------------------------------------------------------------------------------

    async def push(self) -> None:
        from ..adapters.cyclecloud import open_cyclecloud

        op = self.op
        assert op is not None
        value = await self.pending_value()
        self._check_lock()
        applied = False
        try:
            client = await open_cyclecloud(self.ctx, self.target)
            try:
                await client.update_secret(value)
                applied = True
                account = await client.verify(app_id=self.target.app_id or "", tenant_id=self.target.tenant_id,
                                              secret_hint=value[:3])
            finally:
                await client.close()
        except CycleCloudError as exc:
            if applied:
                message = ("CycleCloud accepted the new secret, but reading the account back failed or showed "
                           "something else, so it may or may not hold the new secret. Both the old and the new "
                           "secret work and nothing is retired; the next run pushes and checks again.")
            else:
                message = ("CycleCloud did not accept the new secret. It keeps its old secret, which still works; "
                           "Key Vault's main secret is unchanged. The next run retries the push.")
            raise (await self.fail_step(RotationStage.PUSH, exc, message)) from None
        except (ServiceError, LockedError):
            raise
        except RemediatorError as exc:  # e.g. the CycleCloud password secret is missing from Key Vault
            raise (await self.fail_step(RotationStage.PUSH, exc,
                                        f"The push to CycleCloud could not be made: {exc.message} CycleCloud keeps "
                                        "its old secret; the next run retries the push.")) from None
        confirmed = account.secret_hint is not None
        self._pushed_in_this_run = True
        self.op = op.advance(RotationStage.COMMIT, push_confirmed=confirmed)
        await self.save(self.journal.with_current(self.op))
        if confirmed:
            self.note("push: CycleCloud holds the new secret and verified it")
        else:
            self.note("push: CycleCloud accepted the new secret; its read-back shows no hint, so it is unconfirmed")
            self.finding("push.unconfirmed", "CycleCloud's account read-back shows no hint of its secret, so the push "
                         "of the new secret is unconfirmed. The replaced credential is kept until CycleCloud shows "
                         "the new secret's hint.",
                         "Check Settings > Cloud Provider Accounts in CycleCloud (or `python -m shared cyclecloud "
                         f"probe {self.target.name}`); a server that masks the whole secret never confirms a push.")

    # -- commit ---------------------------------------------------------------------------------------------

    async def commit(self, app: AppRegistration) -> RotationOutcome:
        op = self.op
        assert op is not None
        # resumed at commit, a run that died after writing the main secret must not write it twice; pushed in
        # this very run, nothing can have written it yet
        newest = None
        if not self._pushed_in_this_run:
            versions = await self.read_versions(self.secret_name)
            newest = next((v for v in reversed(versions) if v.enabled), None)
        if newest is None or newest.tags.get(TAG_OPERATION_ID) != op.id:
            await self._write_main(await self.pending_value())
        if op.pending_version:
            try:
                await self.vault.update_properties(self.pending_name, op.pending_version, enabled=False, tags={
                    TAG_KEY_ID: op.new_key_id or "", TAG_OPERATION_ID: op.id, TAG_STATE: STATE_COMMITTED})
            except NotFoundError:
                pass
        retire_after = clock.now() + timedelta(hours=self.policy.grace_hours)
        journal = self.journal
        replaced = app.credential(op.previous_key_id) if op.previous_key_id else None
        scheduled = False
        if replaced is not None and op.previous_key_id != op.new_key_id \
                and operation_of(replaced.display_name) not in journal.own_operations:
            end = clock.iso(replaced.end) or "its end date"
            self.keep(replaced.key_id, f"the product did not create it, so it is not removed; it stays valid until "
                                       f"{end}. Remove it by hand once nothing else uses it: az ad app credential "
                                       f"delete --id {self.target.app_id} --key-id {replaced.key_id}")
            journal = journal.log_event("kept_not_created", key_id=replaced.key_id, operation_id=op.id)
        # every earlier credential of this target is superseded now, also one the run could not tie to the
        # stored secret (a soft-deleted or rolled-back secret): each waits out the grace period, then goes
        # through the removal rule
        superseded = {c.key_id for c in app.credentials if operation_of(c.display_name) in journal.own_operations}
        if op.previous_key_id and (replaced is None or op.previous_key_id in superseded):
            superseded.add(op.previous_key_id)
        superseded -= {op.new_key_id or "", *(r.key_id for r in journal.retirements)}
        if superseded:
            scheduled = op.previous_key_id in superseded
            journal = replace(journal, retirements=(
                *journal.retirements, *(Retirement(k, clock.iso(retire_after), op.id) for k in sorted(superseded))))
        done = op.advance(RotationStage.RETIRE)
        self.op = done
        await self.save(journal.finish(done, "committed"))
        self.note(f"commit: Key Vault secret '{self.secret_name}' now holds credential {op.new_key_id}")
        message = f"Rotated: CycleCloud and Key Vault hold credential {op.new_key_id}."
        if scheduled:
            message = (f"Rotated: CycleCloud and Key Vault hold credential {op.new_key_id}; the replaced credential "
                       f"{op.previous_key_id} is removed after {clock.iso(retire_after)} once nothing uses it.")
        if op.push_confirmed is False:
            message = (f"Rotated, unconfirmed: Key Vault holds credential {op.new_key_id} and CycleCloud accepted it, "
                       "but its read-back shows no hint, so the replaced credential is kept until CycleCloud shows the "
                       "new one.")
        return self.outcome(RotationStatus.ROTATED, message, due=True, reason=op.reason,
                            retire_after=clock.iso(retire_after) if scheduled else None)

    async def set_secret_recovering(self, name: str, value: str, **properties: Any) -> SecretVersionInfo:
        """set_secret; a secret a person soft-deleted is recovered first (its name cannot be reused otherwise)."""
        self._check_lock()
        try:
            return await self.vault.set_secret(name, value, **properties)
        except ConflictError as exc:
            if exc.code != "secret_deleted_recoverable":
                raise
        await self.vault.recover_deleted_secret(name)
        self.warn(f"Key Vault secret '{name}' was soft-deleted; the product recovered it to write the new value")
        self._check_lock()
        return await self.vault.set_secret(name, value, **properties)

    async def _write_main(self, value: str) -> None:
        """The new value as the main secret's newest version. A main secret a person soft-deleted is recovered
        first (CycleCloud already holds the new value, so consumers must find it again), or the step stops with
        the reason recorded."""
        op = self.op
        assert op is not None
        tags = {TAG_KEY_ID: op.new_key_id or "", TAG_APP_ID: self.target.app_id or "",
                TAG_TENANT_ID: self.target.tenant_id, TAG_OPERATION_ID: op.id, TAG_ROTATED_AT: clock.iso(clock.now())}
        try:
            await self.set_secret_recovering(self.secret_name, value, tags=tags, expires_on=clock.from_iso(op.new_end),
                                             content_type="client-secret")
        except (ServiceError, LockedError):
            raise
        except RemediatorError as exc:
            raise (await self.fail_step(RotationStage.COMMIT, exc,
                                        f"The new value could not be written to Key Vault secret '{self.secret_name}' "
                                        f"({exc.message}) CycleCloud holds the new secret, which works. If the secret "
                                        "is soft-deleted, recover it (az keyvault secret recover --vault-name "
                                        f"{self.vault.vault_name} --name {self.secret_name}); then run the rotation "
                                        "again: it finishes the commit.")) from None
