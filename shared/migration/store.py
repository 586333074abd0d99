"""The migration journal in the Functions storage account: `migration/<target>.json` in the state container,
next to the rotation's journal. It is the rotation's JournalStore with another blob name: the same conditional
(ETag) writes, the same storage error mapping, and the same lock blob, so a rotation and a migration of one
target never run at the same time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from ..rotation.model import Journal
from ..rotation.store import JournalStore, VersionedJournal
from .model import MigrationJournal


@dataclass
class VersionedMigration:
    journal: MigrationJournal | None  # None: this target was never migrated
    etag: str | None


class MigrationStore(JournalStore):
    @staticmethod
    def journal_blob(target: str) -> str:
        return f"migration/{target}.json"

    async def read_migration(self, target: str) -> VersionedMigration:
        """Reads only: a missing container or blob is 'never migrated' (dry runs create nothing)."""
        found = await self.state.read_json(self.journal_blob(target), "read the migration journal")
        if found is None:
            return VersionedMigration(None, None)
        return VersionedMigration(MigrationJournal.from_dict(found.data), found.etag)
    async def write_migration(self, current: VersionedMigration, journal: MigrationJournal) -> VersionedMigration:
        """Replace the journal if nobody changed it since `current` was read (ConflictError otherwise)."""
        # JournalStore.write only needs `.target` and `.to_dict()`, which the migration journal has too
        written = await self.write(VersionedJournal(cast(Journal, current.journal), current.etag),
                                   cast(Journal, journal))
        return VersionedMigration(journal, written.etag)
