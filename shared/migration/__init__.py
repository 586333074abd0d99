"""Migrate a target from a client secret to the CycleCloud VM's managed identity (docs/migration.md):
preflight -> identity on -> roles -> CycleCloud account switched -> recorded -> (after a grace period and a
health check, when asked) product-created secrets removed. Journaled per target; resumable; rollback until the
last step."""

from .model import MigrationJournal, MigrationStage
from .outcome import MigrationOutcome, StepReport
from .runner import SWITCH_RETRY_DELAYS, migrate_target, rollback_target

__all__ = ["SWITCH_RETRY_DELAYS", "MigrationJournal", "MigrationOutcome", "MigrationStage", "StepReport",
           "migrate_target", "rollback_target"]
