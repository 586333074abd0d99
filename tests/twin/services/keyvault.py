"""Azure Key Vault secrets (data plane): challenge-based authentication, versions, tags, soft delete, RBAC.

Follows what azure-keyvault-secrets sends and expects: the first request to a vault carries no token and
gets a 401 with `WWW-Authenticate: Bearer authorization="<login>/<vault tenant>", resource="<vault audience>"`
before the body is looked at; SecretBundle ids are absolute URLs on the vault origin; attributes are Unix
seconds; errors are `{"error": {"code", "message", "innererror": {"code"}}}` with Key Vault's own codes
(SecretNotFound, ForbiddenByRbac, SecretDisabled, ObjectIsDeletedButRecoverable, BadParameter).
Authorization is Azure RBAC (data actions) evaluated by the twin's state at
`<vault resource id>/secrets/<name>`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from ..http import HttpError, Request, Response, Router, empty, json_response
from ..server import VAULT_SUFFIXES, Service
from ..state import SecretVersion, Vault, VaultSecret, new_guid
from ..tokens import TokenInfo

ACTION = "Microsoft.KeyVault/vaults/secrets/{}"
RECOVERABLE_DAYS = 90
RECOVERY_LEVEL = "Recoverable+Purgeable"
PAGE_SIZE = 25
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_CLOUD_BY_SUFFIX = {
    ".vault.azure.net": ("https://login.microsoftonline.com", "https://vault.azure.net"),
    ".vault.usgovcloudapi.net": ("https://login.microsoftonline.us", "https://vault.usgovcloudapi.net"),
    ".vault.azure.cn": ("https://login.chinacloudapi.cn", "https://vault.azure.cn"),
}
NOT_FOUND_HELP = ("If you recently deleted this secret you may be able to recover it using the correct recovery "
                  "command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182")


def _unix(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def _from_unix(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(int(value), UTC)


class KeyVaultService(Service):
    name = "keyvault"

    def serves(self, host: str) -> bool:
        return host.endswith(VAULT_SUFFIXES)

    def register(self, router: Router) -> None:
        router.add("GET", "/secrets", "listSecrets", self.list_secrets)
        router.add("POST", "/secrets/restore", "restoreSecret", self.unsupported)
        router.add("GET", "/secrets/{name}/versions", "listSecretVersions", self.list_versions)
        router.add("POST", "/secrets/{name}/backup", "backupSecret", self.unsupported)
        router.add("PUT", "/secrets/{name}", "setSecret", self.set_secret)
        router.add("GET", "/secrets/{name}", "getSecret", self.get_secret)
        router.add("GET", "/secrets/{name}/{version}", "getSecret", self.get_secret)
        router.add("PATCH", "/secrets/{name}", "updateSecret", self.update_secret)
        router.add("PATCH", "/secrets/{name}/{version}", "updateSecret", self.update_secret)
        router.add("DELETE", "/secrets/{name}", "deleteSecret", self.delete_secret)
        router.add("GET", "/deletedsecrets", "listDeletedSecrets", self.list_deleted)
        router.add("GET", "/deletedsecrets/{name}", "getDeletedSecret", self.get_deleted)
        router.add("DELETE", "/deletedsecrets/{name}", "purgeDeletedSecret", self.purge_deleted)
        router.add("POST", "/deletedsecrets/{name}/recover", "recoverDeletedSecret", self.recover_deleted)

    # -- errors -------------------------------------------------------------------------------------------

    @staticmethod
    def _fail(status: int, code: str, message: str, inner: str | None = None,
              headers: dict[str, str] | None = None) -> HttpError:
        error: dict[str, Any] = {"code": code, "message": message}
        if inner:
            error["innererror"] = {"code": inner}
        return HttpError(json_response(status, {"error": error}, headers))

    def not_found(self, request: Request) -> Response:
        return json_response(400, {"error": {"code": "BadParameter",
                                             "message": f"The request URI is not valid: {request.path}"}})

    def unsupported(self, request: Request) -> Response:
        raise self._fail(501, "NotImplemented", f"The twin does not model {request.operation}.")

    def _secret_not_found(self, name: str, version: str | None = None) -> HttpError:
        ident = f"{name}/{version}" if version else name
        return self._fail(404, "SecretNotFound",
                          f"A secret with (name/id) {ident} was not found in this key vault. {NOT_FOUND_HELP}")

    # -- vault, authentication, authorization -------------------------------------------------------------

    def _vault(self, request: Request) -> Vault:
        vault = self.state.vaults.get(request.host)
        if vault is None:
            raise self._fail(404, "VaultNotFound", f"The vault {request.host} does not exist.")
        return vault

    def _origin(self, request: Request) -> str:
        return f"https://{request.host}" + ("" if request.port in (0, 443) else f":{request.port}")

    def _authenticate(self, request: Request, vault: Vault) -> TokenInfo:
        login, audience = next((v for k, v in _CLOUD_BY_SUFFIX.items() if request.host.endswith(k)),
                               _CLOUD_BY_SUFFIX[".vault.azure.net"])
        challenge = {"WWW-Authenticate": f'Bearer authorization="{login}/{vault.tenant_id}", '
                                         f'resource="{audience}"'}
        if request.bearer is None:
            raise self._fail(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.",
                             headers=challenge)
        info = self.twin.tokens.lookup(request.bearer)
        if info is None or info.expires <= self.state.now():
            raise self._fail(401, "Unauthorized", "AKV10013: Invalid token, the token has expired or is not "
                                                  "recognized.", headers=challenge)
        if info.audience.rstrip("/") != audience:
            raise self._fail(401, "Unauthorized", f"AKV10022: Invalid audience. Expected {audience}, found: "
                                                  f"{info.audience}.", headers=challenge)
        if info.tenant_id != vault.tenant_id:
            raise self._fail(401, "Unauthorized", "AKV10032: Invalid issuer. Expected one of "
                                                  f"https://sts.windows.net/{vault.tenant_id}/, found "
                                                  f"https://sts.windows.net/{info.tenant_id}/.", headers=challenge)
        return info

    def _authorize(self, info: TokenInfo, vault: Vault, operation: str, secret: str | None) -> None:
        action = ACTION.format(operation)
        scope = vault.resource_id + (f"/secrets/{secret}" if secret else "")
        if self.state.is_allowed(info.object_id, action, scope, data=True):
            return
        denied_by = self.state._denied(info.object_id, action, scope)
        reason = "DeniedWithDenyAssignment" if denied_by else "DeniedWithNoValidRBAC"
        deny_id = f"'{denied_by.name}'" if denied_by else "null"
        location = "eastus"
        message = (
            "Caller is not authorized to perform action on resource.\r\n"
            "If role assignments, deny assignments or role definitions were changed recently, please observe "
            "propagation time.\r\n"
            f"Caller: appid={info.app_id};oid={info.object_id};iss=https://sts.windows.net/{info.tenant_id}/\r\n"
            f"Action: '{action}'\r\n"
            f"Resource: '{scope.lower()}'\r\n"
            "Assignment: (not found)\r\n"
            f"DenyAssignmentId: {deny_id}\r\n"
            f"DecisionReason: '{reason}' \r\n"
            f"Vault: {vault.name};location={location}\r\n"
        )
        raise self._fail(403, "Forbidden", message, "ForbiddenByRbac")

    def _begin(self, request: Request, operation: str, secret: str | None) -> tuple[Vault, TokenInfo]:
        """Every route: vault by host, challenge/authenticate (before the body is read), then RBAC."""
        vault = self._vault(request)
        info = self._authenticate(request, vault)
        if secret is not None and not _NAME.match(secret):
            raise self._fail(400, "BadParameter", f"The request URI contains an invalid name: {secret}")
        self._authorize(info, vault, operation, secret)
        return vault, info

    # -- representations ----------------------------------------------------------------------------------

    def _attributes(self, v: SecretVersion) -> dict[str, Any]:
        attrs: dict[str, Any] = {"enabled": v.enabled}
        if v.not_before is not None:
            attrs["nbf"] = _unix(v.not_before)
        if v.expires is not None:
            attrs["exp"] = _unix(v.expires)
        attrs.update({"created": _unix(v.created), "updated": _unix(v.updated), "recoveryLevel": RECOVERY_LEVEL,
                      "recoverableDays": RECOVERABLE_DAYS})
        return attrs

    def _item(self, request: Request, name: str, v: SecretVersion, *, versioned: bool) -> dict[str, Any]:
        base = f"{self._origin(request)}/secrets/{name}"
        item: dict[str, Any] = {"id": f"{base}/{v.version}" if versioned else base,
                                "attributes": self._attributes(v)}
        if v.content_type is not None:
            item["contentType"] = v.content_type
        if v.tags:
            item["tags"] = dict(v.tags)
        return item

    def _bundle(self, request: Request, name: str, v: SecretVersion, *, with_value: bool = True) -> dict[str, Any]:
        bundle = self._item(request, name, v, versioned=True)
        if with_value:
            bundle = {"value": v.value, **bundle}
        return bundle

    def _deleted_bundle(self, request: Request, secret: VaultSecret, *, item: bool = False) -> dict[str, Any]:
        latest = secret.latest()
        assert latest is not None and secret.deleted_at is not None
        body = self._item(request, secret.name, latest, versioned=not item)
        body.update({
            "recoveryId": f"{self._origin(request)}/deletedsecrets/{secret.name}",
            "deletedDate": _unix(secret.deleted_at),
            "scheduledPurgeDate": _unix(secret.deleted_at + timedelta(days=RECOVERABLE_DAYS)),
        })
        return body

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        raw_size = request.query.get("maxresults")
        try:
            size = int(raw_size) if raw_size is not None else PAGE_SIZE
            offset = int(request.query.get("$skiptoken") or 0)
        except ValueError:
            raise self._fail(400, "BadParameter", "Invalid paging parameters.") from None
        if not 1 <= size <= PAGE_SIZE:
            # the Key Vault swagger bounds maxresults to 1..25 (the service refuses, not clamps); the message text
            # is the twin's assumption
            raise self._fail(400, "BadParameter", f"The value of parameter 'maxresults' must be between 1 and "
                                                  f"{PAGE_SIZE}.")
        page = items[offset:offset + size]
        next_link = None
        if offset + size < len(items):
            query = {"api-version": request.query.get("api-version", "7.5"), "$skiptoken": str(offset + size),
                     "maxresults": str(size)}
            next_link = f"{self._origin(request)}{request.path}?{urlencode(query)}"
        return json_response(200, {"value": page, "nextLink": next_link})

    # -- helpers ------------------------------------------------------------------------------------------

    def _live(self, vault: Vault, name: str) -> VaultSecret:
        secret = self._find(vault, name)
        if secret is None or secret.deleted_at is not None or not secret.versions:
            raise self._secret_not_found(name)
        return secret

    @staticmethod
    def _find(vault: Vault, name: str) -> VaultSecret | None:
        """Secret names are case-insensitive in Key Vault."""
        for key, secret in vault.secrets.items():
            if key.lower() == name.lower():
                return secret
        return None

    def _version(self, secret: VaultSecret, version: str | None) -> SecretVersion:
        if not version:
            latest = secret.latest()
            assert latest is not None
            return latest
        for v in secret.versions:
            if v.version.lower() == version.lower():
                return v
        raise self._secret_not_found(secret.name, version)

    # -- secrets ------------------------------------------------------------------------------------------

    def set_secret(self, request: Request) -> Response:
        name = request.params["name"]
        with self.state.lock:
            vault, _ = self._begin(request, "setSecret/action", name)
            payload = request.json()
            if not isinstance(payload, dict) or not isinstance(payload.get("value"), str):
                raise self._fail(400, "BadParameter", "Property 'value' is required and must be a string.")
            existing = self._find(vault, name)
            if existing is not None and self._being_deleted(existing):
                raise self._still_deleting(existing.name)
            if existing is not None and existing.deleted_at is not None:
                raise self._fail(409, "Conflict",
                                 f"Secret {existing.name} is currently in a deleted but recoverable state, and its "
                                 "name cannot be reused; in this state, the secret can only be recovered or "
                                 "purged.", "ObjectIsDeletedButRecoverable")
            attrs = payload.get("attributes") or {}
            now = self.state.now()
            version = SecretVersion(
                version=new_guid().replace("-", ""), value=payload["value"],
                content_type=payload.get("contentType"), tags=dict(payload.get("tags") or {}),
                enabled=bool(attrs.get("enabled", True)), not_before=_from_unix(attrs.get("nbf")),
                expires=_from_unix(attrs.get("exp")), created=now, updated=now,
            )
            if existing is None:
                existing = vault.secrets[name] = VaultSecret(name)
            existing.versions.append(version)
            return json_response(200, self._bundle(request, existing.name, version))

    def get_secret(self, request: Request) -> Response:
        name = request.params["name"]
        with self.state.lock:
            vault, _ = self._begin(request, "getSecret/action", name)
            secret = self._live(vault, name)
            version = self._version(secret, request.params.get("version"))
            if not version.enabled:
                raise self._fail(403, "Forbidden", "Operation get is not allowed on a disabled secret.",
                                 "SecretDisabled")
            return json_response(200, self._bundle(request, secret.name, version))

    def update_secret(self, request: Request) -> Response:
        name = request.params["name"]
        with self.state.lock:
            vault, _ = self._begin(request, "update/action", name)
            secret = self._live(vault, name)
            version = self._version(secret, request.params.get("version"))
            payload = request.json() or {}
            if not isinstance(payload, dict):
                raise self._fail(400, "BadParameter", "The request body must be a JSON object.")
            attrs = payload.get("attributes") or {}
            if "enabled" in attrs and attrs["enabled"] is not None:
                version.enabled = bool(attrs["enabled"])
            if "nbf" in attrs:
                version.not_before = _from_unix(attrs["nbf"])
            if "exp" in attrs:
                version.expires = _from_unix(attrs["exp"])
            if payload.get("contentType") is not None:
                version.content_type = payload["contentType"]
            if payload.get("tags") is not None:
                version.tags = dict(payload["tags"])
            version.updated = self.state.now()
            return json_response(200, self._bundle(request, secret.name, version, with_value=False))

    def list_secrets(self, request: Request) -> Response:
        with self.state.lock:
            vault, _ = self._begin(request, "readMetadata/action", None)
            items = [self._item(request, s.name, s.versions[-1], versioned=False)
                     for s in vault.secrets.values() if s.deleted_at is None and s.versions]
        return self._page(request, items)

    def list_versions(self, request: Request) -> Response:
        name = request.params["name"]
        with self.state.lock:
            vault, _ = self._begin(request, "readMetadata/action", name)
            secret = self._find(vault, name)
            if secret is None or secret.deleted_at is not None:
                # Key Vault answers an empty list, not a 404, for a name with no versions
                items: list[dict[str, Any]] = []
            else:
                items = [self._item(request, secret.name, v, versioned=True) for v in secret.versions]
        return self._page(request, items)

    def delete_secret(self, request: Request) -> Response:
        name = request.params["name"]
        with self.state.lock:
            vault, _ = self._begin(request, "delete", name)
            secret = self._live(vault, name)
            secret.deleted_at = self.state.now()
            seconds = self.state.switches.secret_delete_seconds
            secret.deleting_until = secret.deleted_at + timedelta(seconds=seconds) if seconds > 0 else None
            return json_response(200, self._deleted_bundle(request, secret))

    # -- asynchronous soft delete -------------------------------------------------------------------------
    # Key Vault answers the DELETE at once and finishes the deletion in the background: until then the deleted
    # secret cannot be read (404 "Deleted Secret not found", Azure/azure-sdk-for-net#26027, which is what
    # azure-keyvault-secrets' delete poller waits out), nor purged (409 Conflict "Secret is currently being
    # deleted.", hashicorp/terraform-provider-azurerm#10454). The same 409 for recover and for a set of the
    # name, and the innererror code `ObjectIsBeingDeleted`, are the twin's assumption.

    def _being_deleted(self, secret: VaultSecret) -> bool:
        return secret.deleting_until is not None and self.state.now() < secret.deleting_until

    def _still_deleting(self, name: str) -> HttpError:
        return self._fail(409, "Conflict", "Secret is currently being deleted.", "ObjectIsBeingDeleted")

    # -- soft delete --------------------------------------------------------------------------------------

    def _deleted(self, vault: Vault, name: str) -> VaultSecret:
        secret = self._find(vault, name)
        if secret is None or secret.deleted_at is None or not secret.versions or self._being_deleted(secret):
            raise self._fail(404, "SecretNotFound", f"Deleted Secret not found: {name}")
        return secret

    def _refuse_while_deleting(self, vault: Vault, name: str) -> None:
        secret = self._find(vault, name)
        if secret is not None and self._being_deleted(secret):
            raise self._still_deleting(name)

    def list_deleted(self, request: Request) -> Response:
        with self.state.lock:
            vault, _ = self._begin(request, "readMetadata/action", None)
            items = [self._deleted_bundle(request, s, item=True)
                     for s in vault.secrets.values()
                     if s.deleted_at is not None and s.versions and not self._being_deleted(s)]
        return self._page(request, items)

    def get_deleted(self, request: Request) -> Response:
        name = request.params["name"]
        with self.state.lock:
            vault, _ = self._begin(request, "readMetadata/action", name)
            return json_response(200, self._deleted_bundle(request, self._deleted(vault, name)))

    def purge_deleted(self, request: Request) -> Response:
        name = request.params["name"]
        with self.state.lock:
            vault, _ = self._begin(request, "purge/action", name)
            self._refuse_while_deleting(vault, name)
            secret = self._deleted(vault, name)
            vault.secrets = {k: v for k, v in vault.secrets.items() if v is not secret}
        return empty(204)

    def recover_deleted(self, request: Request) -> Response:
        name = request.params["name"]
        with self.state.lock:
            vault, _ = self._begin(request, "recover/action", name)
            self._refuse_while_deleting(vault, name)
            secret = self._deleted(vault, name)
            secret.deleted_at = None
            secret.deleting_until = None
            latest = secret.latest()
            assert latest is not None
            return json_response(200, self._bundle(request, secret.name, latest, with_value=False))
