"""The staged rotation protocol: plan -> intent -> create -> test -> push -> commit -> retire.

Every step is safe to re-run and the journal (store.py) says which step runs next, so a run that dies at any
point is finished by the next one. Key Vault layout (docs/rotation.md has the full table):

- `<secret_name>`          the main secret. Its newest version is always the value CycleCloud holds; each
                           version is tagged keyId/appId/tenantId/operationId/rotatedAt and expires with its
                           credential. Older versions stay enabled until their credential is retired.
- `<secret_name>-pending`  a new value between create and commit (tagged keyId/operationId/state=pending);
                           the version is disabled once committed. Consumers never read it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from ..adapters.graph import AppRegistration, GraphAdapter, NewSecret
from ..adapters.vault import SecretVersionInfo, StoredSecret, VaultAdapter
from ..config import Target
from ..context import AppContext
from ..errors import (
    CycleCloudError,
    NotFoundError,
    PolicyDeniedError,
    RemediatorError,
    RotationError,
    ServiceError,
)
from ..redaction import register_secret
from .deadline import Deadline
from .model import (
    Journal,
    Operation,
    Retirement,
    RotationOutcome,
    RotationStage,
    RotationStatus,
    StepError,
    credential_display_name,
    from_iso,
    operation_of,
    to_iso,
    utcnow,
)
from .policy import StoredSecretFacts, clamp_lifetime, decide, find_orphans, new_credential_end
from .store import JournalStore, TargetLock, VersionedJournal

logger = logging.getLogger(__name__)

PENDING_SUFFIX = "-pending"
# ARM action whose grant the authorization probe reports on (the one CycleCloud's own error names)
PROBE_ACTION = "Microsoft.Storage/storageAccounts/read"
TEST_SPACING_SECONDS = 1.0  # between consecutive successful probes
TEST_BACKOFF_START, TEST_BACKOFF_MAX = 1.0, 15.0
RESERVE_AFTER_TEST_SECONDS = 25.0  # time kept for push + commit when the test step waits inside a deadline
TRANSIENT_ATTEMPTS = 3  # whole-run retries (from the journal) after a transient upstream failure

Progress = Callable[[str], None]


def pending_name(secret_name: str) -> str:
    return f"{secret_name}{PENDING_SUFFIX}"


class StepStopped(Exception):
    def __init__(self, outcome: RotationOutcome) -> None:
        super().__init__(outcome.status.value)
        self.outcome = outcome


class RotationRun:
    """One call's worth of work on one target, holding its lock."""

    def __init__(self, ctx: AppContext, target: Target, store: JournalStore, lock: TargetLock | None,
                 deadline: Deadline, progress: Progress | None = None) -> None:
        self.ctx = ctx
        self.target = target
        self.policy = target.rotation
        self.store = store
        self.lock = lock
        self.deadline = deadline
        self._progress = progress
        self.graph = GraphAdapter(ctx.clients)
        self.vault = VaultAdapter(ctx.clients)
        self.secret_name = target.secret_name or ""
        self.pending_name = pending_name(self.secret_name)
        self.vj: VersionedJournal | None = None
        self.op: Operation | None = None
        self.steps: list[str] = []
        self.warnings: list[str] = []
        self.maintenance: list[str] = []
        self._value: str | None = None  # the new secret, in memory only

    # -- small helpers ------------------------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.steps.append(text)
        logger.info("rotation %s: %s", self.target.name, text)
        if self._progress:
            self._progress(text)

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
            "expires_on": op.new_end if op else None,
        }
        fields.update(extra)
        return RotationOutcome(self.target.name, status, message, steps=self.steps, warnings=self.warnings,
                               maintenance=self.maintenance, **fields)

    async def fail_step(self, stage: RotationStage, exc: RemediatorError | str, message: str) -> StepStopped:
        """Record why `stage` stopped (the journal keeps the operation at that stage) and end the run."""
        code = exc.code if isinstance(exc, RemediatorError) else "rotation_step_failed"
        text = str(exc)
        error = StepError(stage.value, code, text, to_iso(utcnow()) or "")
        if self.op is not None and self.vj is not None:
            try:
                await self.save(self.journal.with_current(self.op.failed(error)))
            except RemediatorError:
                logger.warning("could not record the failure of %s in the journal", self.target.name)
        self.note(f"{stage.value} stopped: {code}")
        return StepStopped(self.outcome(RotationStatus.FAILED, message, error=error.to_dict()))

    # -- reading the world ----------------------------------------------------------------------------------

    async def read_versions(self, name: str) -> list[SecretVersionInfo]:
        try:
            versions = await self.vault.list_versions(name)
        except NotFoundError:
            return []
        return sorted(versions, key=lambda v: (v.created_on is not None, v.created_on or utcnow()))

    async def read_main(self, versions: list[SecretVersionInfo] | None = None) -> StoredSecret | None:
        """The main secret's newest ENABLED version (what consumers get and CycleCloud holds), or None."""
        if versions is None:
            versions = await self.read_versions(self.secret_name)
        newest = next((v for v in reversed(versions) if v.enabled), None)
        if newest is None:
            return None
        try:
            return await self.vault.get_secret(self.secret_name, newest.version)
        except NotFoundError:
            return None

    @staticmethod
    def facts(stored: StoredSecret | None) -> StoredSecretFacts | None:
        if stored is None or not stored.properties.enabled:
            return None
        value = stored.value
        register_secret(value)
        return StoredSecretFacts(
            key_id_tag=(stored.properties.tags or {}).get("keyId"),
            hint=value[:3], has_whitespace=value != value.strip(),
            operation_id_tag=(stored.properties.tags or {}).get("operationId"),
        )

    # -- the run ----------------------------------------------------------------------------------------------

    async def execute(self, *, force: bool) -> RotationOutcome:
        """Run from the journal; after a transient upstream failure re-run from the journal (bounded)."""
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                return await self._run(force=force)
            except StepStopped as stopped:
                return stopped.outcome
            except ServiceError as exc:
                if attempt == TRANSIENT_ATTEMPTS or self.deadline.remaining() < 10:
                    stage = self.op.stage if self.op else RotationStage.PLAN
                    gave_up = await self.fail_step(stage, exc, f"An upstream service kept failing at stage "
                                                               f"'{stage.value}'; the next run resumes there.")
                    return gave_up.outcome
                wait = min(2.0 * attempt, self.deadline.remaining() / 4)
                self.note(f"transient failure ({exc.code}); resuming from the journal in {wait:.0f} s")
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def _run(self, *, force: bool) -> RotationOutcome:
        self.vj = await self.store.read(self.target.name)
        self.op = self.journal.current
        app = await self.graph.get_application(self.target.app_id or "")
        main_versions = await self.read_versions(self.secret_name)
        main = await self.read_main(main_versions)
        pending_versions = await self.read_versions(self.pending_name)
        app = await self.maintain(app, main, main_versions, pending_versions)

        op = self.journal.current
        if op is None:
            decision = decide(utcnow(), self.policy, app.credentials, self.facts(main), force=force)
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
            now = to_iso(utcnow()) or ""
            op = Operation(id=str(uuid.uuid4()), stage=RotationStage.CREATE, started_at=now, updated_at=now,
                           reason=decision.reason,
                           previous_key_id=decision.current.credential.key_id if decision.current.credential else None)
            self.op = op
            await self.save(journal.with_current(op))  # INTENT: the operation id is durable before addPassword
            self.note(f"intent: operation {op.id} ({decision.reason})")
        else:
            self.note(f"resuming operation {op.id} at stage '{op.stage.value}'")
        return await self.advance(app, pending_versions)

    async def advance(self, app: AppRegistration, pending_versions: list[SecretVersionInfo]) -> RotationOutcome:
        assert self.op is not None
        while True:
            stage = self.op.stage
            if stage is RotationStage.CREATE:
                await self.create(app, pending_versions)
            elif stage is RotationStage.TEST:
                await self.test()
            elif stage is RotationStage.PUSH:
                await self.push()
            elif stage is RotationStage.COMMIT:
                committed = await self.commit()
                try:
                    await self.retire_due(app.object_id)
                except RemediatorError as exc:  # the rotation is done; the journal keeps the retirement for later
                    self.warnings.append(f"retiring the replaced credential failed ({exc.code}); the next run "
                                         "retries it")
                return committed
            else:  # an operation is never stored at another stage; treat it as finished
                await self.save(self.journal.finish(self.op, "abandoned"))
                return self.outcome(RotationStatus.FAILED, f"The journal held an operation at stage "
                                                           f"'{stage.value}'; it was closed.")

    # -- maintenance (every run, before any new work) ---------------------------------------------------------

    async def maintain(self, app: AppRegistration, main: StoredSecret | None, main_versions: list[SecretVersionInfo],
                       pending_versions: list[SecretVersionInfo]) -> AppRegistration:
        """Disable stale pending values, remove orphan credentials, retire replaced credentials that are due."""
        current_op = self.journal.current
        for version in pending_versions:
            tags = version.tags or {}
            if version.enabled and (current_op is None or tags.get("operationId") != current_op.id):
                self._check_lock()
                await self.vault.update_properties(self.pending_name, version.version, enabled=False,
                                                   tags={**tags, "state": "stale"})
                self.maintenance.append(f"disabled stale pending value of operation {tags.get('operationId')}")
        live_pending = {
            (v.tags or {}).get("keyId", "") for v in pending_versions
            if v.enabled and current_op is not None and (v.tags or {}).get("operationId") == current_op.id
        }
        in_vault = {(v.tags or {}).get("keyId", "") for v in main_versions if v.enabled} | live_pending
        main_key = (main.properties.tags or {}).get("keyId") if main else None
        protected = [main_key, *(r.key_id for r in self.journal.retirements)]
        orphans = find_orphans(app.credentials, {k for k in in_vault if k}, protected)
        journal = self.journal
        for orphan in orphans:
            self._check_lock()
            removed = await self.graph.remove_password(app.object_id, orphan.key_id)
            journal = journal.log_event("orphan_removed", key_id=orphan.key_id,
                                        operation_id=operation_of(orphan.display_name), removed=removed)
            self.maintenance.append(f"removed orphan credential {orphan.key_id} (its value never reached Key Vault)")
        if orphans:
            await self.save(journal)
            gone = {o.key_id for o in orphans}
            app = AppRegistration(app.object_id, app.app_id, app.display_name,
                                  tuple(c for c in app.credentials if c.key_id not in gone))
        await self.retire_due(app.object_id, main_versions)
        return app

    async def retire_due(self, app_object_id: str, main_versions: list[SecretVersionInfo] | None = None) -> None:
        now = utcnow()
        due = [r for r in self.journal.retirements if (from_iso(r.after) or now) <= now]
        if not due:
            return
        if main_versions is None:
            main_versions = await self.read_versions(self.secret_name)
        newest = next((v for v in reversed(main_versions) if v.enabled), None)
        in_use = (newest.tags or {}).get("keyId") if newest else None
        journal = self.journal
        for retirement in due:
            if retirement.key_id == in_use:  # never remove what CycleCloud holds, whatever the journal says
                self.warnings.append(f"did not retire {retirement.key_id}: it is the credential in use")
            else:
                self._check_lock()
                removed = await self.graph.remove_password(app_object_id, retirement.key_id)
                for version in main_versions:
                    if version.enabled and (version.tags or {}).get("keyId") == retirement.key_id:
                        await self.vault.update_properties(self.secret_name, version.version, enabled=False)
                journal = journal.log_event("retired", key_id=retirement.key_id,
                                            operation_id=retirement.operation_id, removed=removed)
                self.maintenance.append(f"retired replaced credential {retirement.key_id}")
            journal = replace(journal, retirements=tuple(
                r for r in journal.retirements if r.key_id != retirement.key_id))
        await self.save(journal)

    # -- create ---------------------------------------------------------------------------------------------

    async def create(self, app: AppRegistration, pending_versions: list[SecretVersionInfo]) -> None:
        op = self.op
        assert op is not None
        # resume: the value may have reached Key Vault before the journal recorded it
        for version in pending_versions:
            tags = version.tags or {}
            if version.enabled and tags.get("operationId") == op.id:
                cred = next((c for c in app.credentials if c.key_id == tags.get("keyId")), None)
                if cred is not None:
                    self.op = op.advance(RotationStage.TEST, new_key_id=cred.key_id, new_hint=cred.hint,
                                         new_end=to_iso(cred.end), pending_version=version.version)
                    await self.save(self.journal.with_current(self.op))
                    self.note(f"create: found the pending value of credential {cred.key_id} in Key Vault")
                    return
        lifetime = op.lifetime_days or self.policy.lifetime_days
        clamped = op.lifetime_clamped_by_policy
        self._check_lock()
        try:
            new = await self.graph.add_password(app.object_id, credential_display_name(op.id),
                                                new_credential_end(utcnow(), lifetime))
        except PolicyDeniedError as exc:
            max_days = exc.details.get("max_lifetime_days")
            blocked = exc.code == "password_addition_blocked"
            shorter = None if blocked else clamp_lifetime(
                lifetime, int(max_days) if isinstance(max_days, int | float) else None)
            if shorter is None:
                why = ("blocks new client secrets on this app" if blocked else
                       "limits their lifetime, and the limit could not be read")
                raise (await self.fail_step(RotationStage.CREATE, exc,
                                            f"Entra ID refused a new client secret: an app management policy {why}."
                                            )) from None
            self.warnings.append(f"an app management policy limits secret lifetime; using {shorter} days instead of "
                                 f"{lifetime}")
            lifetime, clamped = shorter, True
            try:
                new = await self.graph.add_password(app.object_id, credential_display_name(op.id),
                                                    new_credential_end(utcnow(), lifetime))
            except PolicyDeniedError as again:
                raise (await self.fail_step(RotationStage.CREATE, again,
                                            "Entra ID refused a new client secret because of an app management "
                                            "policy.")) from None
        register_secret(new.value)
        await self._store_pending(app, new, lifetime, clamped)

    async def _store_pending(self, app: AppRegistration, new: NewSecret, lifetime: int, clamped: bool) -> None:
        op = self.op
        assert op is not None
        key_id = new.credential.key_id
        tags = {"keyId": key_id, "operationId": op.id, "appId": self.target.app_id or "",
                "tenantId": self.target.tenant_id, "state": "pending"}
        try:
            info = await self.vault.set_secret(self.pending_name, new.value, tags=tags, expires_on=new.credential.end,
                                               content_type="client-secret; pending rotation")
        except RemediatorError as exc:
            # the value exists only in memory: take the credential back so no unusable secret stays live
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
                             new_end=to_iso(new.credential.end), pending_version=info.version,
                             lifetime_days=lifetime, lifetime_clamped_by_policy=clamped)
        await self.save(self.journal.with_current(self.op))
        self.note(f"create: credential {key_id} added (ends {to_iso(new.credential.end)}); value stored as pending")

    async def pending_value(self) -> str:
        """The new value: from memory, else from the pending Key Vault secret (resume)."""
        if self._value is not None:
            return self._value
        op = self.op
        assert op is not None
        stored: StoredSecret | None = None
        if op.pending_version:
            try:
                stored = await self.vault.get_secret(self.pending_name, op.pending_version)
            except NotFoundError:
                stored = None
        if stored is None or (stored.properties.tags or {}).get("keyId") != op.new_key_id:
            raise (await self.fail_step(op.stage, RotationError(
                "The pending value of this rotation is no longer in Key Vault.",
                reason=f"Secret '{self.pending_name}' version {op.pending_version} is missing or changed.",
                fix="Run the rotation again: the operation is closed and its credential removed as an orphan.",
            ), "The new value was lost from Key Vault; the operation was abandoned.")) from None
        register_secret(stored.value)
        self._value = stored.value
        return stored.value

    # -- test -----------------------------------------------------------------------------------------------

    async def probe(self, value: str) -> tuple[bool, str]:
        from ..adapters.entra import probe_secret
        from ..adapters.rbac import RbacAdapter

        tenant, app_id = self.target.tenant_id, self.target.app_id or ""
        token = await probe_secret(self.ctx.clients, tenant, app_id, value)
        if not token.ok:
            code = token.evidence.code if token.evidence else "?"
            return False, f"token refused (AADSTS{code})"
        rbac = RbacAdapter(self.ctx.clients)
        for sub in self.target.subscription_ids:
            credential = self.ctx.clients.secret_credential(tenant, app_id, value)
            try:
                permissions = await rbac.permissions(sub, credential=credential)
            except RemediatorError as exc:
                return False, f"ARM refused the new secret on subscription {sub} ({exc.code})"
            finally:
                await credential.close()
            if not permissions.allows(PROBE_ACTION):
                warning = (f"on subscription {sub} the service principal may not {PROBE_ACTION} (a role problem "
                           f"the old secret has too; see `roles`)")
                if warning not in self.warnings:
                    self.warnings.append(warning)
        return True, "ok"

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
                                              f"{why}", to_iso(utcnow()) or ""))
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
        try:
            client = await open_cyclecloud(self.ctx, self.target)
            try:
                await client.update_secret(value)
                await client.verify(app_id=self.target.app_id or "", tenant_id=self.target.tenant_id,
                                    secret_hint=value[:3])
            finally:
                await client.close()
        except CycleCloudError as exc:
            raise (await self.fail_step(RotationStage.PUSH, exc,
                                        "CycleCloud did not accept the new secret. It keeps its old secret, which "
                                        "still works; Key Vault's main secret is unchanged. The next run retries "
                                        "the push.")) from None
        self.op = op.advance(RotationStage.COMMIT)
        await self.save(self.journal.with_current(self.op))
        self.note("push: CycleCloud holds the new secret and verified it")

    # -- commit ---------------------------------------------------------------------------------------------

    async def commit(self) -> RotationOutcome:
        op = self.op
        assert op is not None
        versions = await self.read_versions(self.secret_name)
        newest = next((v for v in reversed(versions) if v.enabled), None)
        if newest is None or (newest.tags or {}).get("operationId") != op.id:
            value = await self.pending_value()
            tags = {"keyId": op.new_key_id or "", "appId": self.target.app_id or "", "tenantId": self.target.tenant_id,
                    "operationId": op.id, "rotatedAt": to_iso(utcnow()) or ""}
            self._check_lock()
            await self.vault.set_secret(self.secret_name, value, tags=tags, expires_on=from_iso(op.new_end),
                                        content_type="client-secret")
        if op.pending_version:
            try:
                await self.vault.update_properties(self.pending_name, op.pending_version, enabled=False, tags={
                    "keyId": op.new_key_id or "", "operationId": op.id, "state": "committed"})
            except NotFoundError:
                pass
        retire_after = utcnow() + timedelta(hours=self.policy.grace_hours)
        journal = self.journal
        if op.previous_key_id and op.previous_key_id != op.new_key_id:
            journal = replace(journal, retirements=(
                *journal.retirements, Retirement(op.previous_key_id, to_iso(retire_after) or "", op.id)))
        done = op.advance(RotationStage.RETIRE)
        self.op = done
        await self.save(journal.finish(done, "committed"))
        self.note(f"commit: Key Vault secret '{self.secret_name}' now holds credential {op.new_key_id}")
        if op.previous_key_id:
            message = (f"Rotated: CycleCloud and Key Vault hold credential {op.new_key_id}; the replaced credential "
                       f"{op.previous_key_id} is removed after {to_iso(retire_after)}.")
        else:
            message = f"Rotated: CycleCloud and Key Vault hold credential {op.new_key_id}."
        return self.outcome(RotationStatus.ROTATED, message, due=True, reason=op.reason,
                            retire_after=to_iso(retire_after) if op.previous_key_id else None)
