"""Migrate a target from a client secret to the CycleCloud VM's managed identity (docs/migration.md):
preflight -> identity on -> roles -> CycleCloud account switched -> recorded -> (after a grace period and a
health check, when asked) product-created secrets removed. Journaled per target; resumable; rollback until the
last step.

The runner (compute, roles, CycleCloud) is imported when first asked for: every rotation reads the migration
journal (model, store) and should not pay for the migration machinery."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import MigrationJournal, MigrationStage
from .outcome import MigrationOutcome, StepReport

if TYPE_CHECKING:
    from .runner import SWITCH_RETRY_DELAYS, migrate_target, rollback_target

_FROM_RUNNER = {"SWITCH_RETRY_DELAYS", "migrate_target", "rollback_target"}

__all__ = ["SWITCH_RETRY_DELAYS", "MigrationJournal", "MigrationOutcome", "MigrationStage", "StepReport",
           "migrate_target", "rollback_target"]


def __getattr__(name: str) -> Any:
    if name in _FROM_RUNNER:
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
