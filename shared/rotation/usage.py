"""Evidence for the removal rule (removal.py), read just before anything is removed: which credentials the
newest main Key Vault version, CycleCloud (read now) and every other target on the same app registration (its
Key Vault secrets, journal and CycleCloud account) hold, and what could not be established. Reads only; each
failure to read becomes "cannot tell", never "unused"."""

from __future__ import annotations

import asyncio
import logging

from ..adapters.vault import SecretVersionInfo, VaultAdapter
from ..config import Target
from ..context import AppContext
from ..errors import NotFoundError, RemediatorError
from .layout import TAG_KEY_ID, pending_name
from .model import Journal
from .removal import UsageEvidence
from .store import JournalStore

logger = logging.getLogger(__name__)

UNTAGGED_READS_LIMIT = 5  # untagged versions of another target's secret whose value (hint) is read


def sharing_targets(ctx: AppContext, target: Target) -> list[Target]:
    """The other configured targets whose credential lives on the same app registration."""
    app_id, tenant = (target.app_id or "").lower(), target.tenant_id.lower()
    return [t for t in ctx.settings.targets
            if t.name != target.name and t.uses_secret and t.secret_name
            and (t.app_id or "").lower() == app_id and t.tenant_id.lower() == tenant]


async def secret_versions(vault: VaultAdapter, name: str) -> tuple[list[SecretVersionInfo], bool]:
    """(versions oldest first, soft-deleted?). A secret that never existed is ([], False). Key Vault lists no
    versions (or answers 404) for a soft-deleted secret, so only an empty answer costs the second look."""
    try:
        versions = await vault.list_versions(name)
    except NotFoundError:
        versions = []
    return versions, (not versions and await vault.is_deleted(name))


def stored_before(journal: Journal) -> bool:
    """Whether the journal shows the target's main secret held a value once (a commit, or an adoption): then a
    secret that lists no versions is not "never created" but being deleted or purged, which proves nothing."""
    return bool(journal.history or journal.adopted_key_id)


async def gather_usage(ctx: AppContext, target: Target, vault: VaultAdapter, store: JournalStore,
                       journal: Journal | None = None) -> UsageEvidence:
    """`journal`: this target's, when the caller has it (else it is read)."""
    evidence = UsageEvidence()
    if journal is None:
        try:
            journal = (await store.read(target.name)).journal
        except RemediatorError as exc:
            evidence.cannot_tell(f"the rotation journal of target '{target.name}' could not be read ({exc.code})")
            return evidence
    await asyncio.gather(
        _newest_main_version(vault, target.secret_name or "", evidence, expected=stored_before(journal)),
        _cyclecloud_now(ctx, target, evidence),
        *(_other_target(vault, store, other, evidence) for other in sharing_targets(ctx, target)),
        *(_cyclecloud_now(ctx, other, evidence) for other in sharing_targets(ctx, target)),
    )
    return evidence


async def _newest_main_version(vault: VaultAdapter, name: str, evidence: UsageEvidence, *, expected: bool) -> None:
    holder = f"the newest version of Key Vault secret '{name}'"
    try:
        versions, deleted = await secret_versions(vault, name)
        if deleted:
            evidence.cannot_tell(f"Key Vault secret '{name}' is soft-deleted, so what its consumers use cannot be "
                                 f"read (recover it: az keyvault secret recover --vault-name {vault.vault_name} "
                                 f"--name {name})")
            return
        if not versions:
            if expected:  # Key Vault answers "nothing" while a delete is still in progress, and after a purge
                evidence.cannot_tell(f"Key Vault secret '{name}' lists no versions although it held this target's "
                                     "secret (being deleted, or purged), so what its consumers use cannot be told")
            return
        newest = versions[-1]
        if not newest.enabled:
            evidence.cannot_tell(f"the newest version of Key Vault secret '{name}' is disabled, so what its "
                                 "consumers use cannot be told (re-enable it, or store the secret CycleCloud uses as "
                                 "a new version)")
            return
        key_id = newest.tags.get(TAG_KEY_ID)
        if key_id:
            evidence.hold_key(key_id, holder)
        else:  # written by someone else (a rollback, Terraform): only its value's hint says which credential
            evidence.hold_hint((await vault.get_secret(name, newest.version)).value[:3], holder + " (untagged)")
    except RemediatorError as exc:
        evidence.cannot_tell(f"Key Vault secret '{name}' could not be read ({exc.code})")


async def _cyclecloud_now(ctx: AppContext, target: Target, evidence: UsageEvidence) -> None:
    from ..adapters.cyclecloud import read_cyclecloud_account

    try:
        account = await read_cyclecloud_account(ctx, target)
    except RemediatorError as exc:
        evidence.cannot_tell(f"CycleCloud's account could not be read now ({exc.code})")
        return
    if account.use_managed_identity or account.app_id != (target.app_id or "").lower():
        return  # CycleCloud authenticates some other way: it holds no credential of this app
    if account.secret_hint is None:
        evidence.cannot_tell(f"CycleCloud account '{account.name}' shows no hint of its secret (a masked "
                             "read-back), so which credential it holds cannot be told")
        return
    evidence.hold_hint(account.secret_hint, f"CycleCloud account '{account.name}'")


async def _other_target(vault: VaultAdapter, store: JournalStore, other: Target, evidence: UsageEvidence) -> None:
    try:
        journal = (await store.read(other.name)).journal
    except RemediatorError as exc:
        evidence.cannot_tell(f"the rotation journal of target '{other.name}' could not be read ({exc.code})")
        return
    holder = f"target '{other.name}' (its rotation journal)"
    if journal.current is not None:
        evidence.hold_key(journal.current.new_key_id, holder)
        evidence.hold_key(journal.current.previous_key_id, holder)
    evidence.hold_key(journal.adopted_key_id, holder)
    for retirement in journal.retirements:
        evidence.hold_key(retirement.key_id, holder)
    main = other.secret_name or ""
    reads = 0
    for name in (main, pending_name(main)):
        holder = f"target '{other.name}' (Key Vault secret '{name}')"
        try:
            versions, deleted = await secret_versions(vault, name)
            if deleted or (name == main and not versions and stored_before(journal)):
                evidence.cannot_tell(f"Key Vault secret '{name}' of target '{other.name}', which shares this app "
                                     "registration, is deleted or being deleted and cannot be read")
            for version in versions:
                key_id = version.tags.get(TAG_KEY_ID)
                if key_id:
                    evidence.hold_key(key_id, holder)
                elif name == main and version.enabled and reads < UNTAGGED_READS_LIMIT:
                    reads += 1
                    evidence.hold_hint((await vault.get_secret(name, version.version)).value[:3], holder)
                elif name == main:
                    evidence.cannot_tell(f"an untagged version of Key Vault secret '{name}' of target "
                                         f"'{other.name}' cannot be read")
        except RemediatorError as exc:
            evidence.cannot_tell(f"Key Vault secret '{name}' of target '{other.name}' could not be read "
                                 f"({exc.code})")
