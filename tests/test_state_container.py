"""The state container against real Azurite: a write costs one request when the container exists; a write that
finds no container (the first ever, or the first after someone deleted it by hand) creates it and writes again;
reading never creates anything."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from azure.storage.blob import BlobServiceClient as SyncBlobService
from azure.storage.blob.aio import BlobServiceClient

from shared.errors import ConflictError
from shared.rotation.store import JournalStore, TargetLock
from shared.state_container import StateContainer

CONTAINER = "state-container-test"


def _run(azurite: str, body: Callable[[BlobServiceClient, list[tuple[str, str, int]]], Awaitable[Any]]) -> Any:
    """`body` with an async client whose every answered request is recorded as (method, path, status)."""
    seen: list[tuple[str, str, int]] = []

    def record(response: Any) -> None:
        request = response.http_request
        path = request.url.split("/devstoreaccount1/", 1)[1].split("?", 1)
        query = path[1] if len(path) > 1 else ""
        kind = "container" if "restype=container" in query else ("lease" if "comp=lease" in query else "blob")
        seen.append((request.method, kind, response.http_response.status_code))

    async def main() -> Any:
        async with BlobServiceClient.from_connection_string(azurite, raw_response_hook=record) as service:
            return await body(service, seen)

    return asyncio.run(main())


def _conflict() -> ConflictError:
    return ConflictError("changed")


def _fresh(azurite: str) -> SyncBlobService:
    service = SyncBlobService.from_connection_string(azurite)
    if service.get_container_client(CONTAINER).exists():
        service.delete_container(CONTAINER)
    return service


def test_the_first_write_creates_the_container_and_later_writes_cost_one_request(azurite: str) -> None:
    sync = _fresh(azurite)

    async def body(service: BlobServiceClient, seen: list[tuple[str, str, int]]) -> list[list[tuple[str, str, int]]]:
        first = StateContainer(service, CONTAINER)
        await first.write_json("a.json", {"n": 1}, None, "write a", _conflict)
        steps = [list(seen)]
        seen.clear()
        second = StateContainer(service, CONTAINER)  # a later run: a new store, the container already there
        await second.write_json("b.json", {"n": 2}, None, "write b", _conflict)
        steps.append(list(seen))
        return steps

    first, second = _run(azurite, body)
    assert first == [("PUT", "blob", 404), ("PUT", "container", 201), ("PUT", "blob", 201)]
    assert second == [("PUT", "blob", 201)], "a write into an existing container is one request"
    assert sync.get_container_client(CONTAINER).get_blob_client("b.json").exists()


def test_a_container_deleted_by_hand_between_two_runs_is_created_again(azurite: str) -> None:
    sync = _fresh(azurite)

    async def first_run(service: BlobServiceClient, seen: list[tuple[str, str, int]]) -> str:
        return await StateContainer(service, CONTAINER).write_json("a.json", {"n": 1}, None, "write", _conflict)

    etag = _run(azurite, first_run)
    sync.delete_container(CONTAINER)  # someone cleans up the storage account in the portal

    async def second_run(service: BlobServiceClient, seen: list[tuple[str, str, int]]) -> tuple[bool, Any]:
        state = StateContainer(service, CONTAINER)
        await state.write_json("b.json", {"n": 2}, None, "write", _conflict)
        try:  # the blob the first run read is gone with its container: a conditional update must not pass
            await state.write_json("a.json", {"n": 3}, etag, "write", _conflict)
            return False, None
        except ConflictError:
            return True, await state.read_json("b.json", "read")

    refused, written = _run(azurite, second_run)
    assert refused, "an update conditioned on an ETag of a deleted blob was accepted"
    assert written is not None and written.data == {"n": 2}


def test_reading_and_checking_the_lock_never_create_the_container(azurite: str) -> None:
    sync = _fresh(azurite)

    async def body(service: BlobServiceClient, seen: list[tuple[str, str, int]]) -> tuple[Any, bool]:
        store = JournalStore(service, CONTAINER)
        return (await store.read("t1")).etag, await store.is_locked("t1")

    assert _run(azurite, body) == (None, False)
    assert not sync.get_container_client(CONTAINER).exists()


def test_the_first_lock_of_a_target_creates_the_container_and_the_lock_blob(azurite: str) -> None:
    sync = _fresh(azurite)

    async def body(service: BlobServiceClient, seen: list[tuple[str, str, int]]) -> bool:
        store = JournalStore(service, CONTAINER)
        lock = TargetLock(store, "t1")
        await lock.acquire()
        try:
            return await store.is_locked("t1")
        finally:
            await lock.release()

    assert _run(azurite, body)
    assert sync.get_container_client(CONTAINER).get_blob_client("rotation/t1.lock").exists()
