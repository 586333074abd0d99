"""The migration journal in the Functions storage account: `migration/<target>.json` in the state container,
next to the rotation's journal. It is the rotation's JournalStore with another blob name: the same conditional
(ETag) writes, the same storage error mapping, and the same lock blob, so a rotation and a migration of one
target never run at the same time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError, ServiceResponseError

from ..rotation.model import Journal
from ..rotation.store import JournalStore, VersionedJournal
from ..rotation.store import _storage_error as storage_error
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
        blob = self._service.get_container_client(self._container_name).get_blob_client(self.journal_blob(target))
        try:
            downloader = await blob.download_blob()
            raw = await downloader.readall()
        except ResourceNotFoundError:
            return VersionedMigration(None, None)
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            raise storage_error(exc, "read the migration journal") from None
        data: dict[str, Any] = json.loads(raw)
        return VersionedMigration(MigrationJournal.from_dict(data), downloader.properties.etag)

    async def write_migration(self, current: VersionedMigration, journal: MigrationJournal) -> VersionedMigration:
        """Replace the journal if nobody changed it since `current` was read (ConflictError otherwise)."""
        # JournalStore.write only needs `.target` and `.to_dict()`, which the migration journal has too
        written = await self.write(VersionedJournal(cast(Journal, current.journal), current.etag),
                                   cast(Journal, journal))
        return VersionedMigration(journal, written.etag)
