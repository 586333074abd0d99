"""What a migration call reports: each step's state in words, the configuration change the operator makes, and
(after step 5) the clean-up offer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STEP_NAMES = ("preflight", "identity", "roles", "account", "mode", "secrets")


@dataclass
class StepReport:
    name: str  # one of STEP_NAMES
    status: str  # done | would | pending | failed | skipped
    detail: str = ""
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class MigrationOutcome:
    target: str
    action: str  # plan | migrate | rollback | remove_secrets
    dry_run: bool
    status: str  # planned | migrated | finished | rolled_back | waiting | blocked
    message: str
    migration_id: str | None = None
    stage: str | None = None
    steps: list[StepReport] = field(default_factory=list)
    config_change: dict[str, Any] | None = None
    offer: dict[str, Any] | None = None
    retry_after_seconds: float | None = None  # status `waiting`: when to call again

    @property
    def ok(self) -> bool:
        return self.status != "blocked"

    @property
    def http_status(self) -> int:
        return 202 if self.status == "waiting" else 200

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "action": self.action, "dry_run": self.dry_run, "status": self.status,
                "ok": self.ok, "message": self.message, "migration_id": self.migration_id, "stage": self.stage,
                "steps": [s.to_dict() for s in self.steps], "config_change": self.config_change,
                "offer": self.offer} | ({"retryAfterSeconds": self.retry_after_seconds}
                                        if self.retry_after_seconds is not None else {})
