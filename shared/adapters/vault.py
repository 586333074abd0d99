"""Azure Key Vault secrets: the CycleCloud secret's versions, values and tags.

Uses the ClientFactory's async SecretClient (challenge auth, azure-core bounded retry honouring Retry-After,
timeouts). Key Vault failures become domain errors here; every value read or written is registered for
redaction, and no value is ever put into a message or a log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from ..clients import ClientFactory
from ..errors import (
    AccessDeniedError,
    ConflictError,
    CredentialUnavailableError,
    NotFoundError,
    RemediatorError,
    RequestRejectedError,
    ServiceError,
)
from ..redaction import register_secret, scrub

if TYPE_CHECKING:
    from azure.keyvault.secrets.aio import SecretClient

logger = logging.getLogger(__name__)

SECRETS_ROLE = "Key Vault Secrets Officer"


@dataclass(frozen=True)
class SecretVersionInfo:
    """A secret version's properties: never its value."""

    name: str
    version: str
    tags: dict[str, str]
    enabled: bool
    expires_on: datetime | None
    created_on: datetime | None
    updated_on: datetime | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class StoredSecret:
    properties: SecretVersionInfo
    value: str = field(repr=False)


def _info(props: Any) -> SecretVersionInfo:
    return SecretVersionInfo(
        name=props.name or "",
        version=props.version or "",
        tags=dict(props.tags or {}),
        enabled=bool(props.enabled) if props.enabled is not None else True,
        expires_on=props.expires_on,
        created_on=props.created_on,
        updated_on=props.updated_on,
        content_type=props.content_type,
    )


class VaultAdapter:
    def __init__(self, clients: ClientFactory) -> None:
        self.clients = clients

    @property
    def _client(self) -> SecretClient:
        return self.clients.vault()

    @property
    def vault_name(self) -> str:
        host = urlsplit(self.clients.settings.key_vault_url).hostname or self.clients.settings.key_vault_url
        return host.split(".", 1)[0]

    # -- errors -------------------------------------------------------------------------------------------

    def _raise_mapped(self, exc: Exception, *, action: str, name: str) -> NoReturn:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceExistsError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        vault = self.vault_name
        if isinstance(exc, RemediatorError):
            raise exc
        error = getattr(exc, "error", None)
        code = getattr(error, "code", None) or ""
        inner = (getattr(error, "innererror", None) or {}).get("code", "") if error is not None else ""
        text = scrub(getattr(error, "message", None) or "")
        status = getattr(exc, "status_code", None)
        evidence = f"Key Vault answered {status} {code}" + (f" ({inner})" if inner else "") + (
            f": {text.splitlines()[0]}" if text else "")
        details: dict[str, Any] = {"vault": vault, "secret": name, "status": status, "vault_code": code,
                                   "inner_code": inner or None}
        if isinstance(exc, ResourceNotFoundError):
            raise NotFoundError(
                f"Secret {name} is not in Key Vault {vault}.", reason=evidence,
                fix=f"Check the target's secret_name and KEY_VAULT_URL; if the secret was deleted, recover it "
                    f"(az keyvault secret recover --vault-name {vault} --name {name}).",
                target=name, details=details, code="secret_not_found",
            ) from None
        if isinstance(exc, ResourceExistsError) and "currently being deleted" in text:
            # soft delete completes asynchronously: neither recover nor purge nor a new value works until it has
            raise ConflictError(
                f"Secret {name} in Key Vault {vault} is still being deleted.", reason=evidence,
                fix=f"Wait a minute until Key Vault finishes deleting it, then recover it (az keyvault secret "
                    f"recover --vault-name {vault} --name {name}) or run the operation again.",
                target=name, details=details, code="secret_being_deleted",
            ) from None
        if isinstance(exc, ResourceExistsError):
            raise ConflictError(
                f"Secret {name} in Key Vault {vault} is deleted but recoverable, so its name cannot be reused.",
                reason=evidence,
                fix=f"Recover it (az keyvault secret recover --vault-name {vault} --name {name}) to keep its history, "
                    f"or purge it (az keyvault secret purge --vault-name {vault} --name {name}) to start over.",
                target=name, details=details, code="secret_deleted_recoverable",
            ) from None
        if isinstance(exc, ClientAuthenticationError):
            raise CredentialUnavailableError(
                f"The product's identity could not authenticate to Key Vault {vault} to {action} secret {name}.",
                reason=scrub(str(exc)).splitlines()[0] if str(exc) else "",
                fix="Check the Function's managed identity (or `az login` for the CLI) and that the vault is in "
                    "the identity's tenant.",
                target=name, details=details,
            ) from None
        if isinstance(exc, HttpResponseError) and status == 403:
            if inner == "SecretDisabled":
                raise ConflictError(
                    f"The requested version of secret {name} in Key Vault {vault} is disabled.", reason=evidence,
                    fix="Enable the version (az keyvault secret set-attributes --enabled true) or use another one.",
                    target=name, details=details, code="secret_disabled",
                ) from None
            raise AccessDeniedError(
                f"The product's identity is not allowed to {action} secret {name} in Key Vault {vault}.",
                reason=evidence,
                fix=f"Assign the role '{SECRETS_ROLE}' on the vault {vault} to the Function's managed identity "
                    f"(az role assignment create --role \"{SECRETS_ROLE}\" --assignee <identity object id> "
                    f"--scope <vault resource id>).",
                target=name, details={**details, "role": SECRETS_ROLE}, code="access_denied",
            ) from None
        if isinstance(exc, HttpResponseError) and status is not None and status < 500 and status != 429:
            raise RequestRejectedError(
                f"Key Vault {vault} rejected the request to {action} secret {name}.", reason=evidence,
                fix="See the reason.", target=name, details=details, code="vault_request_rejected",
            ) from None
        if isinstance(exc, (HttpResponseError, ServiceRequestError, ServiceResponseError)):
            raise ServiceError(
                f"Key Vault {vault} failed to {action} secret {name}, also after retries.",
                reason=evidence if status else f"{type(exc).__name__}: {scrub(str(exc))}",
                fix="Check outbound HTTPS to the vault (firewall, private endpoint, DNS) and try again later.",
                target=name, details=details,
            ) from None
        raise exc

    # -- operations ---------------------------------------------------------------------------------------

    async def get_secret(self, name: str, version: str | None = None) -> StoredSecret:
        """NotFoundError (code `secret_not_found`) if absent; AccessDeniedError naming the Key Vault role."""
        try:
            secret = await self._client.get_secret(name, version)
        except Exception as exc:  # mapped to a domain error right here
            self._raise_mapped(exc, action="read", name=name)
        value = secret.value or ""
        register_secret(value)
        return StoredSecret(properties=_info(secret.properties), value=value)

    async def set_secret(self, name: str, value: str, *, tags: dict[str, str] | None = None,
                         expires_on: datetime | None = None, content_type: str | None = None) -> SecretVersionInfo:
        register_secret(value)
        try:
            secret = await self._client.set_secret(name, value, tags=tags, expires_on=expires_on,
                                                   content_type=content_type)
        except Exception as exc:
            self._raise_mapped(exc, action="write", name=name)
        info = _info(secret.properties)
        logger.info("stored secret %s version %s in vault %s", name, info.version, self.vault_name)
        return info

    async def list_versions(self, name: str) -> list[SecretVersionInfo]:
        """Every version's properties, oldest first (Key Vault lists them in no particular order)."""
        try:
            versions = [_info(p) async for p in self._client.list_properties_of_secret_versions(name)]
        except Exception as exc:
            self._raise_mapped(exc, action="list the versions of", name=name)
        return sorted(versions, key=lambda v: (v.created_on is None, v.created_on or datetime.min, v.version))

    async def update_properties(self, name: str, version: str, *, tags: dict[str, str] | None = None,
                                enabled: bool | None = None) -> SecretVersionInfo:
        try:
            props = await self._client.update_secret_properties(name, version, tags=tags, enabled=enabled)
        except Exception as exc:
            self._raise_mapped(exc, action="update", name=name)
        return _info(props)

    async def delete_secret(self, name: str) -> None:
        """Soft-delete every version (waits until Key Vault reports it deleted)."""
        try:
            await self._client.delete_secret(name, _polling_interval=0.5)
        except Exception as exc:
            self._raise_mapped(exc, action="delete", name=name)

    async def is_deleted(self, name: str) -> bool:
        """True when the secret is soft-deleted (recoverable), False when there is no deleted secret by that name."""
        try:
            await self._client.get_deleted_secret(name)
        except Exception as exc:
            from azure.core.exceptions import ResourceNotFoundError

            if isinstance(exc, ResourceNotFoundError):
                return False
            self._raise_mapped(exc, action="look for the deleted", name=name)
        return True

    async def recover_deleted_secret(self, name: str) -> SecretVersionInfo:
        try:
            props = await self._client.recover_deleted_secret(name, _polling_interval=0.5)
        except Exception as exc:
            self._raise_mapped(exc, action="recover", name=name)
        return _info(props)
