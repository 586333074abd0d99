"""Operation records in the state container (the rotation journals' container, our own blob names):
`operations/<id>.json`, written with ETag conditions, and `operations/poisoned/<id>.json`, one small marker per
poisoned continuation so the health route can list them without reading every record. The storage boundary:
Azure Storage exceptions become domain errors here."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from ..errors import AccessDeniedError, ConflictError, RemediatorError, ServiceError
from .model import OperationRecord

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobServiceClient, ContainerClient

logger = logging.getLogger(__name__)

_STORAGE_ERRORS = (HttpResponseError, ServiceRequestError, ServiceResponseError)
POISON_LIST_LIMIT = 20


class OperationNotFoundError(RemediatorError):
    code = "operation_not_found"
    status = 404


def _storage_error(exc: Exception, what: str) -> RemediatorError:
    if isinstance(exc, HttpResponseError) and exc.status_code == 403:
        return AccessDeniedError(f"The Function's identity may not {what} in the Functions storage account.",
                                 reason=str(getattr(exc, "error_code", "") or "AuthorizationPermissionMismatch"),
                                 fix="Assign 'Storage Blob Data Contributor' on the storage account to the "
                                     "Function's managed identity.")
    return ServiceError(f"The Functions storage account failed to {what}.",
                        reason=str(getattr(exc, "error_code", None) or type(exc).__name__),
                        fix="Check AzureWebJobsStorage and the storage account's health, then try again.")


@dataclass
class VersionedRecord:
    record: OperationRecord
    etag: str


class OperationStore:
    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._service = service
        self._container_name = container

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
        await self._ensure_container()
        blob = self._container().get_blob_client(self.active_blob(record))
        pointer = json.dumps({"id": record.id}).encode("utf-8")
        try:
            await blob.upload_blob(pointer, overwrite=True, match_condition=MatchConditions.IfMissing)
            return None
        except ResourceExistsError:
            pass
        except _STORAGE_ERRORS as exc:
            if not (isinstance(exc, HttpResponseError) and exc.status_code == 409):
                raise _storage_error(exc, "record the running operation") from None
        try:
            downloader = await blob.download_blob()
            holder = str(json.loads(await downloader.readall()).get("id", ""))
            etag = downloader.properties.etag
        except (ResourceNotFoundError, ValueError, AttributeError):
            holder, etag = "", None
        except _STORAGE_ERRORS as exc:
            raise _storage_error(exc, "read the running operation") from None
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
        except _STORAGE_ERRORS as exc:
            raise _storage_error(exc, "record the running operation") from None
        return None

    def _container(self) -> ContainerClient:
        return self._service.get_container_client(self._container_name)

    async def _ensure_container(self) -> None:
        try:
            await self._container().create_container()
        except ResourceExistsError:
            pass
        except _STORAGE_ERRORS as exc:
            raise _storage_error(exc, "create the state container") from None

    @staticmethod
    def _encode(record: OperationRecord) -> bytes:
        return json.dumps(record.to_dict(), indent=1, sort_keys=True).encode("utf-8")

    async def create(self, record: OperationRecord) -> VersionedRecord:
        await self._ensure_container()
        blob = self._container().get_blob_client(self.record_blob(record.id))
        try:
            result = await blob.upload_blob(self._encode(record), overwrite=True,
                                            match_condition=MatchConditions.IfMissing)
        except _STORAGE_ERRORS as exc:
            raise _storage_error(exc, "record the operation") from None
        return VersionedRecord(record, str(result.get("etag")))

    async def read(self, operation_id: str) -> VersionedRecord:
        blob = self._container().get_blob_client(self.record_blob(operation_id))
        try:
            downloader = await blob.download_blob()
            raw = await downloader.readall()
        except ResourceNotFoundError:
            raise OperationNotFoundError(f"No operation with id '{operation_id}'.",
                                         reason="Operation records are kept in the state container; this id was "
                                                "never issued there.",
                                         fix="Use the Location header of the 202 answer that started it.") from None
        except _STORAGE_ERRORS as exc:
            raise _storage_error(exc, "read the operation record") from None
        return VersionedRecord(OperationRecord.from_dict(json.loads(raw)), str(downloader.properties.etag))

    async def write(self, current: VersionedRecord, record: OperationRecord) -> VersionedRecord:
        blob = self._container().get_blob_client(self.record_blob(record.id))
        try:
            result = await blob.upload_blob(self._encode(record), overwrite=True, etag=current.etag,
                                            match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            raise ConflictError(f"The record of operation '{record.id}' was changed by someone else.",
                                fix="The newer writer's state stands; this attempt stops.") from None
        except _STORAGE_ERRORS as exc:
            if isinstance(exc, HttpResponseError) and exc.status_code == 412:
                raise ConflictError(f"The record of operation '{record.id}' was changed by someone else.",
                                    fix="The newer writer's state stands; this attempt stops.") from None
            raise _storage_error(exc, "update the operation record") from None
        return VersionedRecord(record, str(result.get("etag")))

    async def mark_poisoned(self, record: OperationRecord) -> None:
        await self.write_poison_marker({"id": record.id, "kind": record.kind.value, "target": record.target,
                                        "at": record.updated_at, "error": record.error})

    async def write_poison_marker(self, marker: dict[str, Any]) -> None:
        """One marker (id, kind, target, at, error) listed by poisoned(): an operation's, or a fan-out message's."""
        await self._ensure_container()
        blob = self._container().get_blob_client(self.poison_blob(str(marker["id"])))
        try:
            await blob.upload_blob(json.dumps(marker).encode("utf-8"), overwrite=True)
        except _STORAGE_ERRORS as exc:
            raise _storage_error(exc, "record the poisoned operation") from None

    async def poisoned(self, limit: int = POISON_LIST_LIMIT) -> list[dict[str, Any]]:
        """The newest poisoned operations (reads only; no container yet means none)."""
        found: list[dict[str, Any]] = []
        try:
            async for item in self._container().list_blobs(name_starts_with="operations/poisoned/"):
                blob = self._container().get_blob_client(item.name)
                found.append(json.loads(await (await blob.download_blob()).readall()))
                if len(found) >= limit:
                    break
        except ResourceNotFoundError:
            return []
        except _STORAGE_ERRORS as exc:
            raise _storage_error(exc, "list poisoned operations") from None
        return sorted(found, key=lambda m: str(m.get("at")), reverse=True)
