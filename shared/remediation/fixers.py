"""The fixes remediate applies, bound to the product's modules: roles (shared.roles), rotation (shared.rotation),
Key Vault (adapters.vault) and CycleCloud (adapters.cyclecloud).

Safety rules of the two secret fixes that are not a rotation (re-push, trim):
- a value goes to CycleCloud only after Entra ID accepted it (CycleCloud must never get a dead secret);
- they hold the target's rotation lease and refuse to run while a rotation is in flight (a rotation owns
  CycleCloud's secret between its push and its commit; pushing Key Vault's older value then would undo it);
  an in-flight rotation is resumed instead;
- a dry run reads and describes, and writes nothing (no Key Vault, CycleCloud, journal or lease write).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..adapters.cyclecloud.models import HINT_LENGTH
from ..config import Target
from ..context import AppContext
from ..diagnosis.report import Report
from ..errors import BadRequestError, RemediatorError
from ..findings import FixAction
from ..redaction import register_secret
from .model import FixResult, Outcome

if TYPE_CHECKING:
    from ..adapters.vault import VaultAdapter
    from ..roles import RoleReconciliation

logger = logging.getLogger(__name__)


def _hint(value: str) -> str:
    return value[:HINT_LENGTH]


# AADSTS codes that say the target's tenant or app id is wrong: no new secret and no push can help with those
_IDENTITY_CODES = {"AADSTS90002", "AADSTS700016", "AADSTS900023", "AADSTS7000112"}


def _refusal_fix(target: str, refused: dict[str, Any]) -> str:
    code = str(refused.get("aadsts") or "")
    if code in _IDENTITY_CODES:
        return (f"Entra ID refuses the target's identity itself ({code}): check the target's tenant_id and app_id "
                f"against the app registration's Overview page, correct the configuration, then run `python -m "
                f"shared validate {target}`. A new secret cannot help.")
    return f"Rotate the secret: `python -m shared rotate {target} --force` (or remediate again once validate " \
           "reports the secret itself)."


def _rotation_fix(target: str) -> str:
    return (f"See GET /api/targets/{target}/rotation for where it stopped and why; fix that, then remediate again "
            f"(or run `python -m shared rotate {target} --force`).")


class ProductFixers:
    """`Fixers` over the real modules (see engine.Fixers)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def validate(self, target: str) -> Report:
        from ..diagnosis import validate_target

        return await validate_target(self.ctx, target)

    async def apply(self, action: FixAction, target: str, *, dry_run: bool, deadline_seconds: float) -> FixResult:
        match action:
            case FixAction.RECONCILE_ROLES:
                return await self.reconcile_roles(target, dry_run=dry_run)
            case FixAction.ROTATE:
                return await self.rotate(target, dry_run=dry_run, deadline_seconds=deadline_seconds)
            case FixAction.PUSH_TO_CYCLECLOUD:
                return await self.push_to_cyclecloud(target, dry_run=dry_run, deadline_seconds=deadline_seconds)
            case FixAction.STORE_TRIMMED_SECRET:
                return await self.store_trimmed_secret(target, dry_run=dry_run, deadline_seconds=deadline_seconds)

    # -- roles ------------------------------------------------------------------------------------------------

    async def reconcile_roles(self, target: str, *, dry_run: bool) -> FixResult:
        from ..roles import reconcile_target_roles

        result = await reconcile_target_roles(self.ctx, target, dry_run=dry_run)
        return roles_fix_result(result, dry_run=dry_run)

    # -- rotation ---------------------------------------------------------------------------------------------

    async def rotate(self, target: str, *, dry_run: bool, deadline_seconds: float) -> FixResult:
        from ..rotation import rotate_target

        # force: the findings that plan a rotation (expired, invalid, missing, expiring, ...) are reasons enough,
        # even where the rotation's own schedule would not call it due yet
        outcome = await rotate_target(self.ctx, target, force=True, dry_run=dry_run,
                                      deadline_seconds=deadline_seconds)
        return rotation_fix_result(target, outcome.status.value, outcome.message, outcome.to_dict())

    # -- Key Vault -> CycleCloud ------------------------------------------------------------------------------

    def _secret_target(self, name: str) -> Target:
        target = self.ctx.settings.target(name)
        missing = [what for what, ok in (("app_id", target.app_id), ("secret_name", target.secret_name),
                                         ("cyclecloud", target.cyclecloud)) if not ok]
        if not target.uses_secret or missing:
            raise BadRequestError(
                f"Target '{name}' has no client secret to give CycleCloud"
                + (f" ({', '.join(missing)} not configured)." if missing else " (it uses a managed identity)."),
                fix="Configure app_id, secret_name and cyclecloud for service_principal targets.", target=name)
        return target

    @asynccontextmanager
    async def _exclusive(self, target: Target) -> AsyncIterator[str | None]:
        """Hold the target's rotation lease; yield the id of a rotation in flight (None when there is none)."""
        from ..rotation.store import JournalStore, TargetLock

        store = JournalStore(self.ctx.clients.blob_service(), self.ctx.settings.storage.container)
        lock = TargetLock(store, target.name)
        await lock.acquire()
        try:
            current = (await store.read(target.name)).journal.current
            yield current.id if current else None
        finally:
            await lock.release()

    async def _rotation_in_flight(self, target: Target) -> str | None:
        from ..rotation.store import JournalStore

        store = JournalStore(self.ctx.clients.blob_service(), self.ctx.settings.storage.container)
        current = (await store.read(target.name)).journal.current
        return f"{current.id} at stage '{current.stage.value}'" if current else None

    async def _resume_rotation(self, target: Target, operation: str, deadline_seconds: float) -> FixResult:
        result = await self.rotate(target.name, dry_run=False, deadline_seconds=deadline_seconds)
        return FixResult(result.outcome, f"A rotation was in flight (operation {operation}); it owns CycleCloud's "
                                         f"secret, so it was resumed instead. {result.message}",
                         result.reason, result.fix, result.details)

    async def _accepted_by_entra(self, target: Target, value: str) -> dict[str, Any] | None:
        """None when Entra ID issues a token for `value`; else the (secret-free) evidence of the refusal."""
        from ..adapters.entra import probe_secret

        probe = await probe_secret(self.ctx.clients, target.tenant_id, target.app_id or "", value)
        if probe.ok:
            return None
        evidence: dict[str, Any] = probe.evidence.to_dict() if probe.evidence else {}
        if probe.explanation is not None:
            evidence["meaning"] = probe.explanation.summary
        return evidence

    async def _push(self, target: Target, value: str) -> dict[str, Any]:
        """Give CycleCloud `value`, read it back and verify; the account as read back (secret-free)."""
        from ..adapters.cyclecloud import open_cyclecloud

        client = await open_cyclecloud(self.ctx, target)
        try:
            await client.update_secret(value)
            account = await client.verify(app_id=target.app_id or "", tenant_id=target.tenant_id,
                                          secret_hint=_hint(value))
        finally:
            await client.close()
        return account.to_dict()

    async def push_to_cyclecloud(self, name: str, *, dry_run: bool, deadline_seconds: float) -> FixResult:
        from ..adapters.vault import VaultAdapter

        target = self._secret_target(name)
        assert target.secret_name is not None and target.cyclecloud is not None
        where = f"CycleCloud account '{target.cyclecloud.account}' at {target.cyclecloud.url}"
        if dry_run:
            in_flight = await self._rotation_in_flight(target)
            if in_flight:
                return FixResult(Outcome.PLANNED, f"Would resume the rotation in flight (operation {in_flight}) "
                                                  "instead of pushing: it owns CycleCloud's secret.")
            stored = await VaultAdapter(self.ctx.clients).get_secret(target.secret_name)
            register_secret(stored.value)
            return FixResult(Outcome.PLANNED,
                             f"Would check that Entra ID accepts Key Vault secret '{target.secret_name}' (version "
                             f"{stored.properties.version}), then give it to {where} and read it back.",
                             details={"vault_version": stored.properties.version, "hint": _hint(stored.value)})

        async with self._exclusive(target) as in_flight:
            if in_flight is None:
                stored = await VaultAdapter(self.ctx.clients).get_secret(target.secret_name)
                value = stored.value
                register_secret(value)
                details: dict[str, Any] = {"vault_version": stored.properties.version, "hint": _hint(value)}
                refused = await self._accepted_by_entra(target, value)
                if refused is not None:
                    return FixResult(
                        Outcome.FAILED, f"Not pushed: Entra ID refuses the secret Key Vault holds, so giving it to "
                                        f"{where} would break CycleCloud; CycleCloud was left as it was.",
                        reason=f"{refused.get('aadsts') or 'refused'}: {refused.get('description', '')}".strip(),
                        fix=_refusal_fix(name, refused), details={**details, "evidence": refused})
                details["cyclecloud_account"] = await self._push(target, value)
                return FixResult(Outcome.APPLIED, f"{where} now holds Key Vault's secret (version "
                                                  f"{stored.properties.version}); read back and verified.",
                                 details=details)
        return await self._resume_rotation(target, in_flight, deadline_seconds)

    async def store_trimmed_secret(self, name: str, *, dry_run: bool, deadline_seconds: float) -> FixResult:
        from ..adapters.vault import VaultAdapter

        target = self._secret_target(name)
        assert target.secret_name is not None and target.cyclecloud is not None
        vault = VaultAdapter(self.ctx.clients)
        where = f"CycleCloud account '{target.cyclecloud.account}'"
        if dry_run:
            stored = await vault.get_secret(target.secret_name)
            register_secret(stored.value)
            extra = len(stored.value) - len(stored.value.strip())
            return FixResult(Outcome.PLANNED,
                             f"Would check that Entra ID accepts the value without its {extra} whitespace "
                             f"character(s), store it as a new version of Key Vault secret '{target.secret_name}' "
                             f"(tags and expiry kept), then give it to {where} and read it back.",
                             details={"vault_version": stored.properties.version, "whitespace_characters": extra})

        async with self._exclusive(target) as in_flight:
            if in_flight is None:
                return await self._trim_and_push(target, vault, where)
        return await self._resume_rotation(target, in_flight, deadline_seconds)

    async def _trim_and_push(self, target: Target, vault: VaultAdapter, where: str) -> FixResult:
        assert target.secret_name is not None
        stored = await vault.get_secret(target.secret_name)
        register_secret(stored.value)
        trimmed = stored.value.strip()
        details: dict[str, Any] = {"previous_version": stored.properties.version,
                                   "whitespace_characters": len(stored.value) - len(trimmed)}
        if not trimmed:
            return FixResult(Outcome.FAILED, f"Key Vault secret '{target.secret_name}' holds only whitespace.",
                             reason="There is no value to trim.",
                             fix=f"Rotate: `python -m shared rotate {target.name} --force`.", details=details)
        refused = await self._accepted_by_entra(target, trimmed)
        if refused is not None:
            return FixResult(
                Outcome.FAILED, "Not stored: Entra ID refuses the trimmed value as well, so the secret is wrong "
                                "beyond its whitespace; nothing was changed.",
                reason=f"{refused.get('aadsts') or 'refused'}: {refused.get('description', '')}".strip(),
                fix=_refusal_fix(target.name, refused), details={**details, "evidence": refused})
        if trimmed != stored.value:
            info = await vault.set_secret(target.secret_name, trimmed, tags=dict(stored.properties.tags or {}),
                                          expires_on=stored.properties.expires_on,
                                          content_type=stored.properties.content_type)
            details["vault_version"] = info.version
            stored_msg = f"Stored the trimmed value as version {info.version} of '{target.secret_name}'"
        else:
            details["vault_version"] = stored.properties.version
            stored_msg = f"Key Vault secret '{target.secret_name}' already has no whitespace"
        try:
            details["cyclecloud_account"] = await self._push(target, trimmed)
        except RemediatorError as exc:
            return FixResult(Outcome.FAILED, f"{stored_msg}, but giving it to {where} failed: {exc.message}",
                             reason=exc.reason, fix=exc.fix, details={**details, "code": exc.code})
        return FixResult(Outcome.APPLIED, f"{stored_msg}; {where} now holds it (read back and verified).",
                         details=details)


# -- results of the other modules, as fix results ---------------------------------------------------------------

_ROTATION_OUTCOMES = {
    "rotated": Outcome.APPLIED,
    "in_progress": Outcome.IN_PROGRESS,
    "failed": Outcome.FAILED,
    "planned": Outcome.PLANNED,
    "not_due": Outcome.NOTHING_TO_DO,
}


def rotation_fix_result(target: str, status: str, message: str, body: dict[str, Any]) -> FixResult:
    outcome = _ROTATION_OUTCOMES.get(status, Outcome.FAILED)
    reason, fix = "", ""
    if outcome is Outcome.FAILED:
        error = body.get("error") or {}
        reason = str(error.get("message") or error.get("code") or "")
        fix = _rotation_fix(target)
    elif outcome is Outcome.IN_PROGRESS:
        reason = f"Stopped at stage '{body.get('stage')}' (usually: waiting for the new secret to propagate)."
        fix = f"Check GET /api/targets/{target}/rotation; POST /api/targets/{target}/remediate again to resume."
    return FixResult(outcome, message, reason, fix, body)


def roles_fix_result(result: RoleReconciliation, *, dry_run: bool) -> FixResult:
    """The role reconciliation's result as a fix result (see shared.roles)."""
    body = result.to_dict()
    changes = {"created": body["summary"].get("created", 0), "removed": body["summary"].get("removed", 0)}
    if dry_run:
        if result.ok and not result.changes_needed:
            return FixResult(Outcome.NOTHING_TO_DO, f"{result.message} Nothing to create.", details=body)
        outcome = Outcome.PLANNED if result.ok else Outcome.FAILED
        return FixResult(outcome, result.message, result.reason, result.fix, body)
    if not result.ok:
        return FixResult(Outcome.FAILED, result.message, reason=result.reason, fix=result.fix, details=body)
    if not any(changes.values()):
        # every configured assignment was already there: a no-op is never reported as a fix
        return FixResult(Outcome.NOTHING_TO_DO, f"{result.message} Nothing was changed.", details=body)
    return FixResult(Outcome.APPLIED, result.message, details=body)
