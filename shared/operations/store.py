"""Operation records in the state container (the rotation journals' container, our own blob names):
`operations/<id>.json`, written with ETag conditions, and `operations/poisoned/<id>.json`, one small marker per
poisoned continuation so the health route can list them without reading every record. Blobs are read and
written through shared/state_container.py (ETag conditions, storage errors as domain errors)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from ..errors import ConflictError, RemediatorError
from ..state_container import STORAGE_ERRORS, StateContainer
from .model import OperationRecord

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobServiceClient

logger = logging.getLogger(__name__)

POISON_LIST_LIMIT = 20


class OperationNotFoundError(RemediatorError):
    code = "operation_not_found"
    status = 404


@dataclass
class VersionedRecord:
    record: OperationRecord
    etag: str


class OperationStore:
    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self.state = StateContainer(service, container)

    @staticmethod
    def record_blob(operation_id: str) -> str:
        return f"operations/{operation_id}.json"

    @staticmethod
    def poison_blob(operation_id: str) -> str:
        return f"operations/poisoned/{operation_id}.json"

    @staticmethod
    def active_blob(record: OperationRecord) -> str:
        return f"operations/active/{record.kind.value}-{record.target}.json"

    async def claim_active(self, record: OperationRecord) -> str | None:
        """Make `record` the running operation of its kind and target, unless one is already running: then return
        that one's id (repeated calls then share one operation and one continuation chain, instead of each
        queueing its own). A pointer to a finished or missing operation is taken over (ETag-conditioned)."""
        blob = self.state.blob(self.active_blob(record))
        pointer = json.dumps({"id": record.id}).encode("utf-8")
        try:
            await self.state.creating(lambda: blob.upload_blob(pointer, overwrite=True,
                                                               match_condition=MatchConditions.IfMissing))
            return None
        except ResourceExistsError:
            pass
        except STORAGE_ERRORS as exc:
            if not (isinstance(exc, HttpResponseError) and exc.status_code == 409):
                raise self.state.error(exc, "record the running operation") from None
        try:
            downloader = await blob.download_blob()
            holder = str(json.loads(await downloader.readall()).get("id", ""))
            etag = downloader.properties.etag
        except (ResourceNotFoundError, ValueError, AttributeError):
            holder, etag = "", None
        except STORAGE_ERRORS as exc:
            raise self.state.error(exc, "read the running operation") from None
        if holder:
            try:
                if not (await self.read(holder)).record.finished:
                    return holder
            except OperationNotFoundError:
                pass
        try:
            if etag is None:
                await blob.upload_blob(pointer, overwrite=True)
            else:
                await blob.upload_blob(pointer, overwrite=True, etag=etag,
                                       match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceExistsError):
            logger.info("another call took over the running %s operation of %s", record.kind.value, record.target)
        except STORAGE_ERRORS as exc:
            raise self.state.error(exc, "record the running operation") from None
        return None

    @staticmethod
    def _changed(record: OperationRecord) -> ConflictError:
        return ConflictError(f"The record of operation '{record.id}' was changed by someone else.",
                             fix="The newer writer's state stands; this attempt stops.")

    async def create(self, record: OperationRecord) -> VersionedRecord:
        etag = await self.state.write_json(self.record_blob(record.id), record.to_dict(), None,
                                           "record the operation", lambda: self._changed(record))
        return VersionedRecord(record, etag)

    async def read(self, operation_id: str) -> VersionedRecord:
        found = await self.state.read_json(self.record_blob(operation_id), "read the operation record")
        if found is None:
            raise OperationNotFoundError(f"No operation with id '{operation_id}'.",
                                         reason="Operation records are kept in the state container; this id was "
                                                "never issued there.",
                                         fix="Use the Location header of the 202 answer that started it.")
        return VersionedRecord(OperationRecord.from_dict(found.data), found.etag)

    async def write(self, current: VersionedRecord, record: OperationRecord) -> VersionedRecord:
        etag = await self.state.write_json(self.record_blob(record.id), record.to_dict(), current.etag,
                                           "update the operation record", lambda: self._changed(record))
        return VersionedRecord(record, etag)

    async def mark_poisoned(self, record: OperationRecord) -> None:
        await self.write_poison_marker({"id": record.id, "kind": record.kind.value, "target": record.target,
                                        "at": record.updated_at, "error": record.error})

    async def write_poison_marker(self, marker: dict[str, Any]) -> None:
        """One marker (id, kind, target, at, error) listed by poisoned(): an operation's, or a fan-out message's."""
        blob = self.state.blob(self.poison_blob(str(marker["id"])))
        try:
            await self.state.creating(lambda: blob.upload_blob(json.dumps(marker).encode("utf-8"), overwrite=True))
        except STORAGE_ERRORS as exc:
            raise self.state.error(exc, "record the poisoned operation") from None

    async def poisoned(self, limit: int = POISON_LIST_LIMIT) -> list[dict[str, Any]]:
        """The newest poisoned operations (reads only; no container yet means none)."""
        found: list[dict[str, Any]] = []
        try:
            async for item in self.state.client().list_blobs(name_starts_with="operations/poisoned/"):
                blob = self.state.client().get_blob_client(item.name)
                found.append(json.loads(await (await blob.download_blob()).readall()))
                if len(found) >= limit:
                    break
        except ResourceNotFoundError:
            return []
        except STORAGE_ERRORS as exc:
            raise self.state.error(exc, "list poisoned operations") from None
        return sorted(found, key=lambda m: str(m.get("at")), reverse=True)
