"""The rotation's durable state in the Functions storage account: one journal blob per target (written with
ETag conditions, so two writers can never silently overwrite each other) and one lock blob per target whose
blob lease makes a rotation exclusive. The blobs are read and written through shared/state_container.py, where
Azure Storage exceptions become domain errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from ..errors import ConflictError, LockedError
from ..state_container import STORAGE_ERRORS, StateContainer
from .model import Journal

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobLeaseClient, BlobServiceClient

logger = logging.getLogger(__name__)

LEASE_SECONDS = 30  # a killed process blocks its target for at most this long
RENEW_EVERY_SECONDS = 10


@dataclass
class VersionedJournal:
    journal: Journal
    etag: str | None  # None: no blob yet


class JournalStore:
    """Reads and writes `rotation/<target>.json`. Every write is conditional on the ETag last read."""

    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self.state = StateContainer(service, container, then="the next run resumes")

    @staticmethod
    def journal_blob(target: str) -> str:
        return f"rotation/{target}.json"

    @staticmethod
    def lock_blob(target: str) -> str:
        return f"rotation/{target}.lock"

    async def read(self, target: str) -> VersionedJournal:
        # reading never creates anything (dry runs and status calls change nothing)
        found = await self.state.read_json(self.journal_blob(target), "read the rotation journal")
        if found is None:
            return VersionedJournal(Journal(target=target), None)
        return VersionedJournal(Journal.from_dict(found.data), found.etag)

    async def is_locked(self, target: str) -> bool:
        """Whether a run holds the target's lease. Reads only (a missing container or blob: not locked)."""
        blob = self.state.client().get_blob_client(self.lock_blob(target))
        try:
            props = await blob.get_blob_properties()
        except ResourceNotFoundError:
            return False
        except STORAGE_ERRORS as exc:
            raise self.state.error(exc, "read the rotation lock") from None
        return bool(props.lease.state == "leased")

    async def write(self, current: VersionedJournal, journal: Journal) -> VersionedJournal:
        """Replace the journal if nobody changed it since `current` was read (or create it if absent)."""
        def changed() -> ConflictError:
            return ConflictError(
                f"The rotation journal of '{journal.target}' was changed by someone else.",
                reason="Its ETag no longer matches the version this run read.",
                fix="Run the rotation again; it re-reads the journal and resumes.", target=journal.target,
                code="journal_conflict",
            )

        etag = await self.state.write_json(self.journal_blob(journal.target), journal.to_dict(), current.etag,
                                           "write the rotation journal", changed)
        return VersionedJournal(journal, etag)


class TargetLock:
    """An exclusive blob lease on the target's lock blob, renewed in the background while held.

    `lost` is set when a renewal fails; the rotation checks it before every change so a run that lost its
    lease stops instead of racing the run that took over."""

    def __init__(self, store: JournalStore, target: str) -> None:
        self._store = store
        self._target = target
        self._lease: BlobLeaseClient | None = None
        self._renewer: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()

    async def acquire(self) -> None:
        blob = self._store.state.blob(self._store.lock_blob(self._target))
        try:
            await self._store.state.creating(lambda: blob.upload_blob(b"", overwrite=False))
        except ResourceExistsError:
            pass  # the usual case; when leased, the upload is refused the same way
        except STORAGE_ERRORS as exc:
            if not (isinstance(exc, HttpResponseError) and exc.status_code in (409, 412)):
                raise self._store.state.error(exc, "create the lock blob") from None
        try:
            self._lease = await blob.acquire_lease(lease_duration=LEASE_SECONDS)
        except STORAGE_ERRORS as exc:
            if isinstance(exc, HttpResponseError) and exc.status_code == 409:
                await self._raise_locked()
            raise self._store.state.error(exc, "lease the lock blob") from None
        self._renewer = asyncio.create_task(self._renew_forever())

    async def _raise_locked(self) -> None:
        op_id, stage = None, None
        with contextlib.suppress(Exception):  # the journal only enriches the message
            journal = (await self._store.read(self._target)).journal
            if journal.current:
                op_id, stage = journal.current.id, journal.current.stage.value
        where = f"operation {op_id} at stage '{stage}'" if op_id else "a rotation or maintenance run"
        raise LockedError(
            f"A rotation of '{self._target}' is already in progress ({where}).",
            reason=f"Another caller holds the target's lease (it expires {LEASE_SECONDS} s after its holder stops).",
            fix=f"Wait for it to finish and check GET /api/targets/{self._target}/rotation; call again later.",
            target=self._target,
            details={"operationId": op_id, "stage": stage, "statusUrl": f"/api/targets/{self._target}/rotation"},
        )

    async def _renew_forever(self) -> None:
        assert self._lease is not None
        while True:
            await asyncio.sleep(RENEW_EVERY_SECONDS)
            try:
                await self._lease.renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("lost the rotation lease of %s: %s", self._target, type(exc).__name__)
                self.lost.set()
                return

    def check(self) -> None:
        if self.lost.is_set():
            raise LockedError(f"The rotation of '{self._target}' lost its lease and stopped.",
                              reason="The lease could not be renewed; another run may have taken over.",
                              fix="Call again; the journal lets the next run resume.", target=self._target)

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewer
            self._renewer = None
        if self._lease is not None:
            with contextlib.suppress(Exception):  # an unreleased lease expires by itself
                await self._lease.release()
            self._lease = None
