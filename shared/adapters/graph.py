"""Microsoft Graph: the CycleCloud app registration and its password credentials.

INTERFACE (bodies to be implemented): domain types and method signatures other modules rely on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..clients import ClientFactory


@dataclass(frozen=True)
class AppCredential:
    """A password credential as Graph lists it: never with a value."""

    key_id: str
    display_name: str | None
    hint: str | None  # first 3 characters of the secret
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class AppRegistration:
    object_id: str
    app_id: str
    display_name: str
    credentials: tuple[AppCredential, ...]


@dataclass(frozen=True)
class NewSecret:
    """What addPassword returns once. `value` is excluded from repr so it cannot leak through logging."""

    credential: AppCredential
    value: str = field(repr=False)


@dataclass(frozen=True)
class ServicePrincipalInfo:
    object_id: str
    app_id: str
    display_name: str


class GraphAdapter:
    def __init__(self, clients: ClientFactory) -> None:
        self.clients = clients

    async def get_application(self, app_id: str) -> AppRegistration:
        """By client id. NotFoundError if absent; AccessDeniedError naming the Graph permission if denied."""
        raise NotImplementedError

    async def add_password(self, app_object_id: str, display_name: str, end: datetime) -> NewSecret:
        """addPassword. PolicyDeniedError when an app management policy refuses the lifetime (details carry
        `max_lifetime_days` when known)."""
        raise NotImplementedError

    async def remove_password(self, app_object_id: str, key_id: str) -> bool:
        """removePassword by keyId. False when the credential was already gone."""
        raise NotImplementedError

    async def get_service_principal(self, app_id: str) -> ServicePrincipalInfo:
        raise NotImplementedError
