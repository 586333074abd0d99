"""The product's Key Vault adapter against asynchronous soft delete (the twin's `propagation.secret_delete_seconds`):
Key Vault answers the DELETE at once and lists the secret as deleted only when the deletion completes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from shared.adapters.vault import VaultAdapter
from shared.clients import ClientFactory
from shared.config import Settings
from shared.errors import ConflictError, NotFoundError
from shared.rotation.usage import secret_versions
from tests.twin import Twin
from tests.world import SECRET_NAME

DELAY = 1.5


@pytest.fixture
async def vault(settings: Settings) -> AsyncIterator[VaultAdapter]:
    async with ClientFactory(settings) as factory:
        yield VaultAdapter(factory)


async def test_delete_waits_until_key_vault_reports_the_secret_deleted(twin: Twin, vault: VaultAdapter) -> None:
    twin.state.switches.secret_delete_seconds = DELAY
    started = time.monotonic()
    await vault.delete_secret(SECRET_NAME)
    assert time.monotonic() - started >= DELAY * 0.9  # the SDK poller waited out the 404s
    assert await vault.is_deleted(SECRET_NAME)
    with pytest.raises(NotFoundError):
        await vault.get_secret(SECRET_NAME)
    with pytest.raises(ConflictError) as raised:
        await vault.set_secret(SECRET_NAME, "Qq11Q~another-value-123456")
    assert raised.value.code == "secret_deleted_recoverable"


async def test_a_secret_being_deleted_by_someone_else_looks_absent_not_deleted(twin: Twin,
                                                                              vault: VaultAdapter) -> None:
    """While another client's delete is still completing, Key Vault shows the name neither live nor deleted:
    the product's usage evidence reads it as 'no such secret' (documented for the rotation safety rules)."""
    with twin.state.lock:
        twin.state.switches.secret_delete_seconds = 30
        secret = twin.state.vaults["kv-remediator.vault.azure.net"].secrets[SECRET_NAME]
        secret.deleted_at = twin.state.now()
        from datetime import timedelta

        secret.deleting_until = secret.deleted_at + timedelta(seconds=30)
    versions, deleted = await secret_versions(vault, SECRET_NAME)
    assert (versions, deleted) == ([], False)
    with pytest.raises(ConflictError) as raised:  # but its name cannot be reused yet
        await vault.set_secret(SECRET_NAME, "Qq11Q~another-value-123456")
    assert raised.value.code == "secret_being_deleted" and "Wait a minute" in raised.value.fix
    with pytest.raises(ConflictError) as recovering:
        await vault.recover_deleted_secret(SECRET_NAME)
    assert recovering.value.code == "secret_being_deleted"
