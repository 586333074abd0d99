"""Azure Key Vault secrets.

INTERFACE (bodies to be implemented): domain types and method signatures other modules rely on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..clients import ClientFactory


@dataclass(frozen=True)
class SecretVersionInfo:
    """A secret version's properties: never its value."""

    name: str
    version: str
    tags: dict[str, str]
    enabled: bool
    expires_on: datetime | None
    created_on: datetime | None


@dataclass(frozen=True)
class StoredSecret:
    properties: SecretVersionInfo
    value: str = field(repr=False)


class VaultAdapter:
    def __init__(self, clients: ClientFactory) -> None:
        self.clients = clients

    async def get_secret(self, name: str, version: str | None = None) -> StoredSecret:
        """NotFoundError (code `secret_not_found`) if absent; AccessDeniedError naming the Key Vault role."""
        raise NotImplementedError

    async def set_secret(self, name: str, value: str, *, tags: dict[str, str] | None = None,
                         expires_on: datetime | None = None, content_type: str | None = None) -> SecretVersionInfo:
        raise NotImplementedError

    async def list_versions(self, name: str) -> list[SecretVersionInfo]:
        raise NotImplementedError

    async def update_properties(self, name: str, version: str, *, tags: dict[str, str] | None = None,
                                enabled: bool | None = None) -> SecretVersionInfo:
        raise NotImplementedError
