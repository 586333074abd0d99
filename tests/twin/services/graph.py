"""Microsoft Graph (v1.0): application registrations, their password credentials, service principals and the
app management policies that restrict password credentials.

Wire details follow what the unmodified msgraph-sdk sends (raw `applications(appId='...')` segments,
`$select`, duplicate slashes) and what Graph answers: OData error bodies with `innerError`, 200 + the new
credential (with `secretText`, once) from addPassword, 204 from removePassword, and the app management
policy errors `CredentialInvalidLifetimeAsPerAppPolicy` / `CredentialTypeNotAllowedAsPerAppPolicy`.
The twin keeps only a SHA-256 hash and the 3-character hint of each secret, as Entra does.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import uuid
from datetime import datetime, timedelta
from typing import Any

from ..http import HttpError, Request, Response, Router, empty, json_response
from ..server import GRAPH_HOSTS, Service
from ..state import Application, PasswordCredential, Principal, hash_secret, new_guid, parse_time
from ..tokens import TokenInfo
from .common import require_token

READ_ROLES = {"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
WRITE_ROLES = {"Application.ReadWrite.All", "Directory.ReadWrite.All"}
OWNED_BY = "Application.ReadWrite.OwnedBy"
POLICY_READ_ROLES = {"Policy.Read.All", "Policy.Read.ApplicationConfiguration",
                     "Policy.ReadWrite.ApplicationConfiguration"}
TENANT_DEFAULT_POLICY_ID = "00000000-0000-0000-0000-000000000000"
DEFAULT_PASSWORD_LIFETIME = timedelta(days=730)  # Graph: "startDateTime + 2 years"
_SECRET_ALPHABET = string.ascii_letters + string.digits + "-_.~"
_FILTER_APP_ID = re.compile(r"^\s*appId\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)
APPLICATION_FIELDS = ("id", "deletedDateTime", "appId", "createdDateTime", "displayName", "identifierUris",
                      "signInAudience", "keyCredentials", "passwordCredentials", "publisherDomain")


def new_client_secret() -> str:
    """40 characters shaped like Entra's generated secrets: 3 characters, a digit, `Q~`, 34 more."""
    head = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(3))
    tail = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(34))
    return f"{head}{secrets.choice(string.digits)}Q~{tail}"


def app_policy_id(app: Application) -> str:
    """The id of the (custom) app management policy the twin models as assigned to `app`."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"appManagementPolicy/{app.object_id}"))


def _add_years(value: datetime, years: int) -> datetime:
    try:
        return value.replace(year=value.year + years)
    except ValueError:  # 29 February
        return value + DEFAULT_PASSWORD_LIFETIME


class GraphService(Service):
    name = "graph"

    def serves(self, host: str) -> bool:
        return host in GRAPH_HOSTS

    def register(self, router: Router) -> None:
        by_app_id = "/v1.0/applications(appId='{appId}')"
        by_object_id = "/v1.0/applications/{objectId}"
        router.add("GET", by_app_id, "getApplication", self.get_application)
        router.add("POST", by_app_id + "/addPassword", "addPassword", self.add_password)
        router.add("POST", by_app_id + "/removePassword", "removePassword", self.remove_password)
        router.add("GET", by_app_id + "/appManagementPolicies", "listAppManagementPolicies", self.app_policies)
        router.add("GET", "/v1.0/applications", "listApplications", self.list_applications)
        router.add("POST", by_object_id + "/addPassword", "addPassword", self.add_password)
        router.add("POST", by_object_id + "/removePassword", "removePassword", self.remove_password)
        router.add("GET", by_object_id + "/appManagementPolicies", "listAppManagementPolicies", self.app_policies)
        router.add("GET", by_object_id, "getApplication", self.get_application)
        router.add("GET", "/v1.0/servicePrincipals(appId='{appId}')", "getServicePrincipal",
                   self.get_service_principal)
        router.add("GET", "/v1.0/servicePrincipals", "listServicePrincipals", self.list_service_principals)
        router.add("GET", "/v1.0/policies/defaultAppManagementPolicy", "getDefaultAppManagementPolicy",
                   self.default_policy)

    def not_found(self, request: Request) -> Response:
        return self._error(request, 400, "BadRequest",
                           f"Resource not found for the segment '{request.path.rsplit('/', 1)[-1]}'.")

    # -- errors -------------------------------------------------------------------------------------------

    def _error(self, request: Request, status: int, code: str, message: str,
               headers: dict[str, str] | None = None, details: list[dict[str, str]] | None = None) -> Response:
        now = self.state.now()
        error: dict[str, Any] = {"code": code, "message": message}
        if details is not None:
            error["details"] = details
        error["innerError"] = {
            # Graph's innerError.date has no fraction and no `Z` ("2024-03-05T13:14:55", quoted in
            # OfficeDev/microsoft-365-agents-toolkit#10998)
            "date": now.strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": new_guid(),
            "client-request-id": request.headers.get("client-request-id", new_guid()),
        }
        return json_response(status, {"error": error}, headers)

    def _fail(self, request: Request, status: int, code: str, message: str,
              details: list[dict[str, str]] | None = None) -> HttpError:
        return HttpError(self._error(request, status, code, message, details=details))

    def _restriction(self, app: Application) -> tuple[str, int | None, bool] | None:
        """(policy id, max password lifetime in days, password addition blocked) that applies to `app`: its own
        assigned policy, else the tenant default policy when enabled (Graph: "the app's policy overrides the
        tenant default"), else None."""
        if app.password_addition_blocked or app.max_password_lifetime_days is not None:
            return app_policy_id(app), app.max_password_lifetime_days, app.password_addition_blocked
        tenant = self.state.tenants.get(app.tenant_id)
        if tenant is not None and tenant.default_policy_enabled:
            return (TENANT_DEFAULT_POLICY_ID, tenant.default_max_password_lifetime_days,
                    tenant.default_password_addition_blocked)
        return None

    def _denied(self, request: Request) -> HttpError:
        return self._fail(request, 403, "Authorization_RequestDenied",
                          "Insufficient privileges to complete the operation.")

    def _missing(self, request: Request, ident: str) -> HttpError:
        return self._fail(request, 404, "Request_ResourceNotFound",
                          f"Resource '{ident}' does not exist or one of its queried reference-property objects "
                          "are not present.")

    # -- authentication and authorization -----------------------------------------------------------------

    def _caller(self, request: Request) -> tuple[TokenInfo, set[str]]:
        try:
            info = require_token(self.twin, request, f"https://{request.host}")
        except HttpError as exc:
            message = json.loads(exc.response.body)["error"]["message"]
            raise self._fail(request, 401, "InvalidAuthenticationToken", message) from None
        principal = self.state.principals.get(info.object_id)
        roles = set(principal.graph_app_roles) if principal else set()
        return info, roles

    @staticmethod
    def _can_read(info: TokenInfo, roles: set[str], app: Application) -> bool:
        return bool(roles & READ_ROLES) or (OWNED_BY in roles and info.object_id in app.owners)

    @staticmethod
    def _can_write(info: TokenInfo, roles: set[str], app: Application) -> bool:
        return bool(roles & WRITE_ROLES) or (OWNED_BY in roles and info.object_id in app.owners)

    def _application(self, request: Request, info: TokenInfo) -> Application:
        """The application the path names (by appId or object id), in the caller's tenant, or a 404."""
        params = request.params
        app: Application | None
        if "appId" in params:
            ident = params["appId"]
            app = self.state.app_by_app_id(ident, info.tenant_id)
        else:
            ident = params["objectId"]
            app = self.state.applications.get(ident.lower())
            if app is not None and app.tenant_id != info.tenant_id:
                app = None
        if app is None:
            raise self._missing(request, ident)
        return app

    # -- representations ----------------------------------------------------------------------------------

    def _app_json(self, app: Application) -> dict[str, Any]:
        return {
            "id": app.object_id,
            "deletedDateTime": None,
            "appId": app.app_id,
            "createdDateTime": "2023-01-01T00:00:00Z",
            "displayName": app.display_name,
            "identifierUris": [],
            "signInAudience": app.sign_in_audience,
            "publisherDomain": self.state.tenants[app.tenant_id].domain if app.tenant_id in self.state.tenants
            else None,
            "keyCredentials": [],
            "passwordCredentials": [c.to_graph() for c in app.credentials_as_read(
                self.state.now(), self.state.propagation.graph_stale_read_seconds)],
        }

    def _sp_json(self, sp: Principal) -> dict[str, Any]:
        return {
            "id": sp.object_id,
            "deletedDateTime": None,
            "accountEnabled": True,
            "appId": sp.app_id,
            "appOwnerOrganizationId": sp.tenant_id,
            "displayName": sp.display_name,
            "servicePrincipalType": "Application",
            "signInAudience": "AzureADMyOrg",
            "servicePrincipalNames": [sp.app_id],
            "keyCredentials": [],
            "passwordCredentials": [],
        }

    @staticmethod
    def _select(request: Request, entity: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
        raw = request.query.get("$select")
        if not raw:
            return entity, None
        fields = [f.strip() for f in raw.split(",") if f.strip()]
        lowered = {k.lower(): k for k in entity}
        chosen = [lowered[f.lower()] for f in fields if f.lower() in lowered]
        return {k: entity[k] for k in chosen}, chosen

    def _context(self, request: Request, collection: str, fields: list[str] | None, *, entity: bool) -> str:
        base = f"https://{request.host}/v1.0/$metadata#{collection}"
        if fields:
            base += f"({','.join(fields)})"
        return base + ("/$entity" if entity else "")

    # -- applications -------------------------------------------------------------------------------------

    def get_application(self, request: Request) -> Response:
        with self.state.lock:
            info, roles = self._caller(request)
            app = self._application(request, info)
            if not self._can_read(info, roles, app):
                raise self._denied(request)
            body, fields = self._select(request, self._app_json(app))
        return json_response(200, {"@odata.context": self._context(request, "applications", fields, entity=True),
                                   **body})

    def list_applications(self, request: Request) -> Response:
        with self.state.lock:
            info, roles = self._caller(request)
            raw_filter = request.query.get("$filter")
            apps = [a for a in self.state.applications.values() if a.tenant_id == info.tenant_id]
            if raw_filter:
                m = _FILTER_APP_ID.match(raw_filter)
                if m is None:
                    raise self._fail(request, 400, "Request_UnsupportedQuery",
                                     f"Unsupported or invalid query filter clause specified for property "
                                     f"'{raw_filter.split()[0]}' of resource 'Application'.")
                apps = [a for a in apps if a.app_id == m.group(1).lower()]
            if not (roles & READ_ROLES) and OWNED_BY not in roles:
                raise self._denied(request)
            visible = [a for a in apps if self._can_read(info, roles, a)]
            items, fields = [], None
            for app in visible:
                item, fields = self._select(request, self._app_json(app))
                items.append(item)
        return json_response(200, {"@odata.context": self._context(request, "applications", fields, entity=False),
                                   "value": items})

    def add_password(self, request: Request) -> Response:
        payload = request.json() or {}
        if not isinstance(payload, dict):
            raise self._fail(request, 400, "Request_BadRequest", "The request body must be a JSON object.")
        requested = payload.get("passwordCredential") or {}
        with self.state.lock:
            info, roles = self._caller(request)
            app = self._application(request, info)
            if not self._can_write(info, roles, app):
                raise self._denied(request)
            now = self.state.now()
            try:
                start = parse_time(requested.get("startDateTime"), now) or now
                end = parse_time(requested.get("endDateTime"), now) or _add_years(start, 2)
            except ValueError:
                raise self._fail(request, 400, "Request_BadRequest",
                                 "Invalid value specified for property 'endDateTime' of resource "
                                 "'PasswordCredential'.") from None
            restriction = self._restriction(app)
            if restriction is not None:
                policy_id, max_days, blocked = restriction
                if blocked:
                    raise self._fail(request, 400, "CredentialTypeNotAllowedAsPerAppPolicy",
                                     f"Credential type not allowed as per assigned policy '{policy_id}'.")
                if max_days is not None and end - start > timedelta(days=max_days):
                    message = ("Credential lifetime exceeds the max value allowed as per assigned policy "
                               f"'{policy_id}'.")
                    # details[] as Graph sends it (OfficeDev/microsoft-365-agents-toolkit#10998)
                    raise self._fail(request, 400, "CredentialInvalidLifetimeAsPerAppPolicy", message,
                                     details=[{"code": "InvalidKeyEndDate", "message": message,
                                               "target": "EndDate"}])
            value = new_client_secret()
            credential = PasswordCredential(
                key_id=new_guid(), secret_hash=hash_secret(value), hint=value[:3],
                display_name=requested.get("displayName"), start=start, end=end, created_at=now,
            )
            app.record_credential_write(now)
            app.password_credentials.append(credential)
            body = credential.to_graph()
        body["secretText"] = value
        return json_response(200, {"@odata.context": f"https://{request.host}/v1.0/$metadata#microsoft.graph."
                                                     "passwordCredential", **body})

    def remove_password(self, request: Request) -> Response:
        payload = request.json() or {}
        key_id = str(payload.get("keyId") or "").lower() if isinstance(payload, dict) else ""
        with self.state.lock:
            info, roles = self._caller(request)
            app = self._application(request, info)
            if not self._can_write(info, roles, app):
                raise self._denied(request)
            if not key_id:
                raise self._fail(request, 400, "Request_BadRequest",
                                 "The request body is missing the required property 'keyId'.")
            remaining = [c for c in app.password_credentials if c.key_id != key_id]
            if len(remaining) == len(app.password_credentials):
                # Graph's exact answer for an unknown keyId is not documented; the twin answers like a missing
                # resource (see docs/twin.md), which adapters must treat as "already gone".
                raise self._missing(request, key_id)
            app.record_credential_write(self.state.now())
            app.password_credentials = remaining
        return empty(204)

    # -- service principals -------------------------------------------------------------------------------

    def _sp_readable(self, info: TokenInfo, roles: set[str], sp: Principal) -> bool:
        if roles & READ_ROLES:
            return True
        app = self.state.app_by_app_id(sp.app_id or "", sp.tenant_id)
        return app is not None and OWNED_BY in roles and info.object_id in app.owners

    def get_service_principal(self, request: Request) -> Response:
        with self.state.lock:
            info, roles = self._caller(request)
            app_id = request.params["appId"]
            sp = self.state.service_principal_of(app_id, info.tenant_id)
            if sp is None or sp.kind != "ServicePrincipal":
                raise self._missing(request, app_id)
            if not self._sp_readable(info, roles, sp):
                raise self._denied(request)
            body, fields = self._select(request, self._sp_json(sp))
        return json_response(200, {"@odata.context": self._context(request, "servicePrincipals", fields,
                                                                   entity=True), **body})

    def list_service_principals(self, request: Request) -> Response:
        with self.state.lock:
            info, roles = self._caller(request)
            raw_filter = request.query.get("$filter") or ""
            m = _FILTER_APP_ID.match(raw_filter)
            if m is None:
                raise self._fail(request, 400, "Request_UnsupportedQuery",
                                 "The twin supports only $filter=appId eq '<id>' on servicePrincipals.")
            sps = [p for p in self.state.principals.values()
                   if p.kind == "ServicePrincipal" and p.tenant_id == info.tenant_id
                   and (p.app_id or "").lower() == m.group(1).lower()]
            if not (roles & READ_ROLES) and OWNED_BY not in roles:
                raise self._denied(request)
            items, fields = [], None
            for sp in sps:
                if self._sp_readable(info, roles, sp):
                    item, fields = self._select(request, self._sp_json(sp))
                    items.append(item)
        return json_response(200, {"@odata.context": self._context(request, "servicePrincipals", fields,
                                                                   entity=False), "value": items})

    # -- app management policies --------------------------------------------------------------------------

    def _policy_json(self, app: Application) -> dict[str, Any]:
        restrictions: list[dict[str, Any]] = []
        if app.password_addition_blocked:
            restrictions.append({"restrictionType": "passwordAddition", "state": "enabled", "maxLifetime": None,
                                 "restrictForAppsCreatedAfterDateTime": "2019-01-01T00:00:00Z"})
        if app.max_password_lifetime_days is not None:
            restrictions.append({"restrictionType": "passwordLifetime", "state": "enabled",
                                 "maxLifetime": f"P{app.max_password_lifetime_days}D",
                                 "restrictForAppsCreatedAfterDateTime": "2019-01-01T00:00:00Z"})
        return {
            "id": app_policy_id(app),
            "displayName": "Credential management policy",
            "description": "Restricts password credentials of this application.",
            "isEnabled": True,
            "restrictions": {"passwordCredentials": restrictions, "keyCredentials": []},
        }

    def app_policies(self, request: Request) -> Response:
        with self.state.lock:
            info, roles = self._caller(request)
            app = self._application(request, info)
            if not roles & POLICY_READ_ROLES:
                raise self._denied(request)
            value = []
            if app.password_addition_blocked or app.max_password_lifetime_days is not None:
                value.append(self._policy_json(app))
        return json_response(200, {"@odata.context": f"https://{request.host}/v1.0/$metadata#policies/"
                                                     "appManagementPolicies", "value": value})

    def default_policy(self, request: Request) -> Response:
        with self.state.lock:
            info, roles = self._caller(request)
            if not roles & POLICY_READ_ROLES:
                raise self._denied(request)
            tenant = self.state.tenants.get(info.tenant_id.lower())
            enabled = bool(tenant and tenant.default_policy_enabled)
            restrictions: list[dict[str, Any]] = []
            if tenant is not None and enabled:
                if tenant.default_password_addition_blocked:
                    restrictions.append({"restrictionType": "passwordAddition", "state": "enabled",
                                         "maxLifetime": None,
                                         "restrictForAppsCreatedAfterDateTime": "2019-01-01T00:00:00Z"})
                if tenant.default_max_password_lifetime_days is not None:
                    restrictions.append({"restrictionType": "passwordLifetime", "state": "enabled",
                                         "maxLifetime": f"P{tenant.default_max_password_lifetime_days}D",
                                         "restrictForAppsCreatedAfterDateTime": "2019-01-01T00:00:00Z"})
        # Off unless the scenario enables it for the caller's tenant (`tenants[].default_app_management_policy`);
        # the shape follows learn.microsoft.com "Get tenantAppManagementPolicy" (id all zeros).
        return json_response(200, {
            "@odata.context": f"https://{request.host}/v1.0/$metadata#policies/defaultAppManagementPolicy/$entity",
            "id": TENANT_DEFAULT_POLICY_ID,
            "displayName": "Default app management tenant policy",
            "description": "Default tenant policy that enforces app management restrictions on applications and "
                           "service principals.",
            "isEnabled": enabled,
            "applicationRestrictions": {"passwordCredentials": restrictions, "keyCredentials": []},
            "servicePrincipalRestrictions": {"passwordCredentials": [], "keyCredentials": []},
        })
