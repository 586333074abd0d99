"""Step 6: after the grace period and a successful managed-identity health check, offer to remove the app
registration's product-created secrets, and remove them when asked - each one only if the rotation's removal
rule allows it (shared/rotation/removal.py, with the evidence of shared/rotation/usage.py), never others.

Removing first supersedes the rollback copy: a new version of the target's Key Vault secret that holds no
credential (tagged state=migrated). Older versions stay in Key Vault's history; nothing is deleted. From then
on the migration cannot be rolled back, which is why this step runs only when asked."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from .. import clock
from ..adapters.graph import AppCredential, GraphAdapter
from ..adapters.rbac import RbacAdapter
from ..adapters.vault import VaultAdapter
from ..config import Mode, Target
from ..context import AppContext
from ..errors import RemediatorError
from ..rotation.layout import STATE_MIGRATED, TAG_OPERATION_ID, TAG_STATE
from ..rotation.removal import UsageEvidence, removal_verdict
from ..rotation.store import JournalStore
from ..rotation.usage import gather_usage
from .checks import managed_identity_health
from .model import MigrationJournal

logger = logging.getLogger(__name__)

def secret_view(target: Target, journal: MigrationJournal) -> Target:
    """The target as it was before the migration (the app settings may already say managed_identity, which
    drops the app id and secret name): what the removal rule's evidence is gathered for."""
    return replace(target, mode=Mode.SERVICE_PRINCIPAL, app_id=journal.app_id, tenant_id=journal.tenant_id,
                   secret_name=journal.secret_name)


def _credential(c: AppCredential, reason: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"key_id": c.key_id, "display_name": c.display_name, "hint": c.hint,
                           "end": clock.iso(c.end)}
    if reason is not None:
        out["kept_because"] = reason
    return out


@dataclass
class Offer:
    ready: bool
    available_from: datetime | None
    waiting_for: list[str] = field(default_factory=list)
    would_remove: list[dict[str, Any]] = field(default_factory=list)
    keeps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, target: str) -> dict[str, Any]:
        return {"ready": self.ready, "available_from": clock.iso(self.available_from), "waiting_for": self.waiting_for,
                "would_remove": self.would_remove, "keeps": self.keeps,
                "how": f"python -m shared migrate {target} --apply --remove-secrets" if self.ready else ""}


async def secrets_offer(ctx: AppContext, target: Target, journal: MigrationJournal,
                        rotation_store: JournalStore) -> Offer:
    """Whether removal may be offered now, and which credentials it concerns (the rule's first two conditions,
    read from the journals; the rest is checked again, with fresh evidence, when removal is asked for)."""
    switched = journal.switched_at or journal.updated_at
    due = switched + timedelta(hours=target.rotation.grace_hours)
    offer = Offer(ready=False, available_from=due)
    if clock.now() < due:
        offer.waiting_for.append(f"the grace period of {target.rotation.grace_hours:g} h after the switch "
                                 f"(until {clock.iso(due)})")
    if target.mode is not Mode.MANAGED_IDENTITY:
        offer.waiting_for.append(f"the app settings: target '{target.name}' is still configured as "
                                 "service_principal (make the configuration change shown)")
    offer.waiting_for.extend(f"health: {p}" for p in await managed_identity_health(ctx, target, journal.principal_id))
    try:
        own = (await rotation_store.read(target.name)).journal.own_operations
        app = await GraphAdapter(ctx.clients).get_application(journal.app_id)
    except RemediatorError as exc:  # the migration itself is done; only the offer cannot be made
        offer.waiting_for.append(f"the app registration or the rotation journal cannot be read: {exc.message} "
                                 f"{exc.fix}".strip())
        return offer
    for credential in app.credentials:
        # without evidence only the rule's "created by this target" conditions speak
        why = removal_verdict(credential, own, UsageEvidence())
        (offer.keeps if why else offer.would_remove).append(_credential(credential, why))
    offer.ready = not offer.waiting_for
    return offer


async def remove_secrets(ctx: AppContext, target: Target, journal: MigrationJournal,
                         rotation_store: JournalStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                list[str]]:
    """(removed, kept with the reason, what else the app registration still has). The caller checked the offer."""
    vault = VaultAdapter(ctx.clients)
    await _supersede_rollback_copy(vault, journal)
    view = secret_view(target, journal)
    evidence = await gather_usage(ctx, view, vault, rotation_store)
    own = (await rotation_store.read(target.name)).journal.own_operations
    graph = GraphAdapter(ctx.clients)
    app = await graph.get_application(journal.app_id)
    removed: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for credential in app.credentials:
        why = removal_verdict(credential, own, evidence)
        if why is not None:
            kept.append(_credential(credential, why))
            continue
        await graph.remove_password(app.object_id, credential.key_id)
        logger.info("migration %s removed credential %s of app %s", journal.id, credential.key_id, journal.app_id)
        removed.append(_credential(credential))
    return removed, kept, await _what_else(ctx, target, journal, kept)


def is_rollback_copy_superseded(tags: dict[str, str]) -> bool:
    return tags.get(TAG_STATE) == STATE_MIGRATED


async def _supersede_rollback_copy(vault: VaultAdapter, journal: MigrationJournal) -> None:
    versions = await vault.list_versions(journal.secret_name)
    newest = versions[-1] if versions else None
    if newest is not None and newest.tags.get(TAG_STATE) == STATE_MIGRATED \
            and newest.tags.get(TAG_OPERATION_ID) == journal.id:
        return  # a resumed run: already superseded
    # no credential value: consumers of this secret read a note, and the removal rule's evidence holds no
    # credential of this app from it
    await vault.set_secret(journal.secret_name, f"migrated-to-managed-identity {journal.id}",
                           tags={TAG_STATE: STATE_MIGRATED, TAG_OPERATION_ID: journal.id}, content_type="text/plain")
    logger.info("migration %s superseded the rollback copy in Key Vault secret %s", journal.id, journal.secret_name)


async def _what_else(ctx: AppContext, target: Target, journal: MigrationJournal,
                     kept: list[dict[str, Any]]) -> list[str]:
    notes = [f"credential {c['key_id']} ({c['display_name'] or 'no name'}) is kept: {c['kept_because']}"
             for c in kept]
    try:
        sp = await GraphAdapter(ctx.clients).get_service_principal(journal.app_id)
        rbac = RbacAdapter(ctx.clients)
        for sub in target.subscription_ids:
            for assignment in await rbac.list_assignments(f"/subscriptions/{sub}", sp.object_id):
                try:
                    role = (await rbac.resolve_role(sub, assignment.role_definition_id)).name
                except RemediatorError:
                    role = assignment.role_definition_id
                notes.append(f"its service principal {sp.object_id} still holds {role} at {assignment.scope} "
                             "(remove it when nothing else signs in as this app)")
    except RemediatorError as exc:
        notes.append(f"its service principal's role assignments could not be read ({exc.code})")
    notes.append(f"the app registration {journal.app_id} itself is kept; delete it in Entra ID when nothing else "
                 "uses it")
    return notes
