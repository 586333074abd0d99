"""The state container in the Functions storage account: the rotation and migration journals, the lock blobs and
the operation records are JSON blobs there, each written with an ETag condition so two writers can never
silently overwrite each other. The storage boundary: Azure Storage exceptions become domain errors here, and the
stores (rotation/store.py, migration/store.py, operations/store.py) keep only their own blob names and types."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from .errors import AccessDeniedError, ConflictError, RemediatorError, ServiceError

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient

    from .context import AppContext

STORAGE_ERRORS = (HttpResponseError, ServiceRequestError, ServiceResponseError)
T = TypeVar("T")


def storage_error(exc: Exception, what: str, *, then: str = "then try again") -> RemediatorError:
    """The domain error for a failed storage call; `what` completes "may not ..." / "failed to ...", `then`
    says what happens after the operator fixed the account."""
    if isinstance(exc, HttpResponseError) and exc.status_code == 403:
        return AccessDeniedError(
            f"The Function's identity may not {what} in the Functions storage account.",
            reason=str(getattr(exc, "error_code", "") or "AuthorizationPermissionMismatch"),
            fix="Assign 'Storage Blob Data Contributor' on the storage account (or its state container) to the "
                "Function's managed identity.",
        )
    code = getattr(exc, "error_code", None) or type(exc).__name__
    return ServiceError(f"The Functions storage account failed to {what}.", reason=str(code),
                        fix=f"Check AzureWebJobsStorage and the storage account's health; {then}.")


def state_container(ctx: AppContext) -> StateContainer:
    """The settings' state container (for the health records and the notification state, which keep their own
    blob logic)."""
    return StateContainer(ctx.clients.blob_service(), ctx.settings.storage.container)


@dataclass(frozen=True)
class JsonBlob:
    data: Any
    etag: str


class StateContainer:
    """One container's JSON blobs. Reading never creates anything (dry runs and status calls change nothing: a
    missing container is just a missing blob); a write that finds no container creates it and writes again (the
    first write ever, or the first after someone deleted the container by hand), so the usual write is one
    request instead of a create, answered 409, before each."""

    def __init__(self, service: BlobServiceClient, name: str, *, then: str = "then try again") -> None:
        self._service = service
        self.name = name
        self._then = then
        self._container: ContainerClient | None = None  # built once: each costs a pipeline wrapper

    def error(self, exc: Exception, what: str) -> RemediatorError:
        return storage_error(exc, what, then=self._then)

    def client(self) -> ContainerClient:
        if self._container is None:
            self._container = self._service.get_container_client(self.name)
        return self._container

    async def ensure(self) -> ContainerClient:
        """The container, created if missing."""
        container = self.client()
        try:
            await container.create_container()
        except ResourceExistsError:
            pass
        except STORAGE_ERRORS as exc:
            raise self.error(exc, "create the state container") from None
        return container

    def blob(self, blob_name: str) -> BlobClient:
        return self.client().get_blob_client(blob_name)

    async def creating(self, write: Callable[[], Awaitable[T]]) -> T:
        """`write` (a write to one of this container's blobs); when it finds no container, the container is
        created and `write` runs once more. Its other errors (and the second attempt's) reach the caller unchanged,
        to map as it needs."""
        try:
            return await write()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) != "ContainerNotFound":
                raise
        await self.ensure()
        return await write()

    async def read_json(self, blob_name: str, what: str) -> JsonBlob | None:
        """The blob's JSON and ETag; None when it (or the container) does not exist."""
        try:
            downloader = await self.blob(blob_name).download_blob()
            raw = await downloader.readall()
        except ResourceNotFoundError:
            return None
        except STORAGE_ERRORS as exc:
            raise self.error(exc, what) from None
        return JsonBlob(json.loads(raw), str(downloader.properties.etag))

    async def write_json(self, blob_name: str, data: Any, etag: str | None, what: str,
                         changed: Callable[[], ConflictError]) -> str:
        """Write the blob if nobody changed it since `etag` was read (or create it when `etag` is None and it does
        not exist); `changed()` is raised otherwise. Returns the new ETag."""
        body = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
        blob = self.blob(blob_name)

        async def upload() -> dict[str, Any]:
            if etag is None:
                return await blob.upload_blob(body, overwrite=True, match_condition=MatchConditions.IfMissing)
            return await blob.upload_blob(body, overwrite=True, etag=etag,
                                          match_condition=MatchConditions.IfNotModified)

        try:
            result = await self.creating(upload)
        except (ResourceModifiedError, ResourceExistsError):
            raise changed() from None
        except STORAGE_ERRORS as exc:
            if isinstance(exc, HttpResponseError) and exc.status_code == 412:
                raise changed() from None
            raise self.error(exc, what) from None
        return str(result.get("etag"))
