"""The migration journal: where a target's move from a client secret to the CycleCloud VM's managed identity
stands (docs/migration.md). One journal per target; every step is recorded once it is verified, so a run that
stops anywhere resumes from the last verified step."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from .. import clock


class MigrationStage(StrEnum):
    """Verified steps, in order. ROLLED_BACK ends a migration that was undone; SECRETS_REMOVED ends one that
    was finished (no rollback after it: the rollback copy of the secret is retired then)."""

    STARTED = "started"  # 1. preflight passed; the secret-based account is untouched
    IDENTITY_ON = "identity_on"  # 2. the VM's system-assigned identity is on
    ROLES_ASSIGNED = "roles_assigned"  # 3. the identity holds the target's roles on each subscription
    ACCOUNT_SWITCHED = "account_switched"  # 4. CycleCloud's account uses the managed identity (read back)
    MODE_RECORDED = "mode_recorded"  # 5. migrated; the operator changes the target's mode in the app settings
    SECRETS_REMOVED = "secrets_removed"  # 6. product-created secrets removed (final)
    ROLLED_BACK = "rolled_back"


ORDER = [MigrationStage.STARTED, MigrationStage.IDENTITY_ON, MigrationStage.ROLES_ASSIGNED,
         MigrationStage.ACCOUNT_SWITCHED, MigrationStage.MODE_RECORDED, MigrationStage.SECRETS_REMOVED]
FINISHED = (MigrationStage.SECRETS_REMOVED, MigrationStage.ROLLED_BACK)
ROLLBACK_ALLOWED = (MigrationStage.STARTED, MigrationStage.IDENTITY_ON, MigrationStage.ROLES_ASSIGNED,
                    MigrationStage.ACCOUNT_SWITCHED, MigrationStage.MODE_RECORDED)
HISTORY_LIMIT = 50


def reached(stage: MigrationStage, step: MigrationStage) -> bool:
    """Whether a migration at `stage` has verified `step` (never true for a rolled-back one)."""
    return stage in ORDER and ORDER.index(stage) >= ORDER.index(step)


@dataclass(frozen=True)
class MigrationJournal:
    """What the migration needs to resume or roll back, recorded before the step that needs it: the secret-based
    settings (app id, Key Vault secret) so the rollback and the clean-up still work once the operator has
    switched the target's app settings to managed_identity (which drops them)."""

    target: str
    id: str
    stage: MigrationStage
    app_id: str
    tenant_id: str
    secret_name: str
    vm_id: str
    account: str
    started_at: datetime
    updated_at: datetime
    principal_id: str | None = None
    role_assignments: tuple[str, ...] = ()  # assignment ids the identity holds for the target's roles
    roles_effective_at: datetime | None = None  # new assignments: when Azure is assumed to apply them
    switched_at: datetime | None = None
    finished_at: datetime | None = None
    removed_key_ids: tuple[str, ...] = ()
    events: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @classmethod
    def begin(cls, *, target: str, app_id: str, tenant_id: str, secret_name: str, vm_id: str,
              account: str) -> MigrationJournal:
        now = clock.now()
        return cls(target=target, id=f"mig-{uuid.uuid4().hex[:12]}", stage=MigrationStage.STARTED, app_id=app_id,
                   tenant_id=tenant_id, secret_name=secret_name, vm_id=vm_id, account=account, started_at=now,
                   updated_at=now, events=({"stage": MigrationStage.STARTED.value, "at": clock.iso(now)},))

    @property
    def finished(self) -> bool:
        return self.stage in FINISHED

    def advance(self, stage: MigrationStage, **changes: Any) -> MigrationJournal:
        now = clock.now()
        event = {"stage": stage.value, "at": clock.iso(now)}
        events = (*self.events, event)[-HISTORY_LIMIT:]
        finished_at = now if stage in FINISHED else self.finished_at
        return replace(self, stage=stage, updated_at=now, events=events, finished_at=finished_at, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "id": self.id, "stage": self.stage.value, "app_id": self.app_id,
            "tenant_id": self.tenant_id, "secret_name": self.secret_name, "vm_id": self.vm_id,
            "account": self.account, "started_at": clock.iso(self.started_at), "updated_at": clock.iso(self.updated_at),
            "principal_id": self.principal_id, "role_assignments": list(self.role_assignments),
            "roles_effective_at": clock.iso(self.roles_effective_at),
            "switched_at": clock.iso(self.switched_at), "finished_at": clock.iso(self.finished_at),
            "removed_key_ids": list(self.removed_key_ids), "events": list(self.events),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MigrationJournal:
        return cls(
            target=str(data["target"]), id=str(data["id"]), stage=MigrationStage(data["stage"]),
            app_id=str(data["app_id"]), tenant_id=str(data["tenant_id"]), secret_name=str(data["secret_name"]),
            vm_id=str(data["vm_id"]), account=str(data["account"]),
            started_at=clock.from_iso(data["started_at"]) or clock.now(),
            updated_at=clock.from_iso(data["updated_at"]) or clock.now(),
            principal_id=data.get("principal_id"), role_assignments=tuple(data.get("role_assignments", [])),
            roles_effective_at=clock.from_iso(data.get("roles_effective_at")),
            switched_at=clock.from_iso(data.get("switched_at")), finished_at=clock.from_iso(data.get("finished_at")),
            removed_key_ids=tuple(data.get("removed_key_ids", [])), events=tuple(data.get("events", [])),
        )
