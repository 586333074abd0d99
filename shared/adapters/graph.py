"""Microsoft Graph: the CycleCloud app registration, its password credentials, and the app management policy
that may restrict them.

Every call goes through the ClientFactory's GraphServiceClient (kiota retry handler: 429/503/504 with
Retry-After, bounded; httpx timeouts). Graph failures become domain errors here, each saying what to grant or
change; SDK models never leave this module. New secret values are registered for redaction the moment
they arrive and are never put into a message.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from ..aadsts import parse_entra_error
from ..clients import ClientFactory
from ..config import HOME_IDENTITY
from ..errors import (
    AccessDeniedError,
    CredentialUnavailableError,
    NotFoundError,
    PolicyDeniedError,
    RemediatorError,
    RequestRejectedError,
    ServiceError,
)
from ..redaction import register_secret, scrub
from .graph_models import SelectedApplication, SelectedServicePrincipal, error_mapping

if TYPE_CHECKING:
    from msgraph.graph_service_client import GraphServiceClient

logger = logging.getLogger(__name__)

# Keep reads small: msgraph builds a full Application model from whatever comes back.
APPLICATION_SELECT = ["id", "appId", "displayName", "passwordCredentials"]
SERVICE_PRINCIPAL_SELECT = ["id", "appId", "displayName"]
WRITE_PERMISSION = "Application.ReadWrite.OwnedBy"
POLICY_READ_PERMISSION = "Policy.Read.ApplicationConfiguration"
LIFETIME_POLICY_CODE = "CredentialInvalidLifetimeAsPerAppPolicy"
ADDITION_POLICY_CODE = "CredentialTypeNotAllowedAsPerAppPolicy"
_POLICY_ID = re.compile(r"policy '([0-9a-fA-F-]{36})'")
OWNED_BY_APP_ROLE_ID = "18a4783c-866b-4cc7-a460-3d5e5662c884"  # Graph's Application.ReadWrite.OwnedBy

# A target in a tenant the product cannot reach: each is its own error code (and diagnosis finding), never
# application_not_found, because the app is not gone - the product has no (working) identity in that tenant.
TENANT_NOT_ONBOARDED = "tenant_not_onboarded"  # target's identity is `home`, but the app is in another tenant
TENANT_CONSENT_MISSING = "tenant_consent_missing"  # the multi-tenant app has no service principal / consent there
TENANT_FEDERATION_MISMATCH = "tenant_federation_mismatch"  # its federated credential does not trust the identity
TENANT_APP_ACCESS_MISSING = "tenant_app_access_missing"  # consented, but no Graph permission or not an owner
CROSS_TENANT_CODES = (TENANT_NOT_ONBOARDED, TENANT_CONSENT_MISSING, TENANT_FEDERATION_MISMATCH,
                      TENANT_APP_ACCESS_MISSING)
# Entra's answers to the multi-tenant app signing in to a tenant that has not consented to it: 700016 (app not
# found in the directory), 7000229 (no service principal in the tenant), 65001 (no consent)
_CONSENT_AADSTS = (700016, 7000229, 65001)
# no federated identity credential matches the assertion (any field / issuer / audience / subject)
_FEDERATION_AADSTS = (70021, 700211, 700212, 700213)


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

    def credential(self, key_id: str) -> AppCredential | None:
        return next((c for c in self.credentials if c.key_id == key_id.lower()), None)


@dataclass(frozen=True)
class NewSecret:
    """What addPassword returns once. `value` is excluded from repr so it cannot leak through logging."""

    credential: AppCredential
    value: str = field(repr=False)
    sent: int = 1  # how many times the POST went out: after a retry, Graph may hold more than this credential


@dataclass(frozen=True)
class ServicePrincipalInfo:
    object_id: str
    app_id: str
    display_name: str


@dataclass(frozen=True)
class PasswordPolicy:
    """The app management restrictions on password credentials that apply to one app registration."""

    max_lifetime_days: int | None  # None = no lifetime restriction
    password_addition_blocked: bool
    policy_id: str | None  # the policy that imposes the restriction (app-specific or the tenant default)


# ---------------------------------------------------------------------------------------------------------
# SDK model -> domain type


def _credential(model: Any) -> AppCredential:
    key_id = model.key_id
    return AppCredential(
        key_id=str(key_id).lower() if key_id is not None else "",
        display_name=model.display_name,
        hint=model.hint,
        start=model.start_date_time,
        end=model.end_date_time,
    )


def _registration(model: Any) -> AppRegistration:
    return AppRegistration(
        object_id=str(model.id or "").lower(),
        app_id=str(model.app_id or "").lower(),
        display_name=model.display_name or "",
        credentials=tuple(_credential(c) for c in (model.password_credentials or [])),
    )


def _days(value: timedelta | None) -> int | None:
    if value is None:
        return None
    return int(value.total_seconds() // 86400)


def _password_restrictions(restrictions: Any) -> tuple[int | None, bool]:
    """(max lifetime days, addition blocked) from an appManagementConfiguration's passwordCredentials."""
    max_days: int | None = None
    blocked = False
    for item in (getattr(restrictions, "password_credentials", None) or []):
        state = getattr(item.state, "value", item.state)
        if state not in (None, "enabled"):
            continue
        kind = getattr(item.restriction_type, "value", item.restriction_type)
        if kind == "passwordLifetime":
            days = _days(item.max_lifetime)
            if days is not None:
                max_days = days if max_days is None else min(max_days, days)
        elif kind == "passwordAddition":
            blocked = True
    return max_days, blocked


# ---------------------------------------------------------------------------------------------------------
# SDK exception -> domain error


def _odata(exc: Exception) -> tuple[int | None, str, str]:
    status = getattr(exc, "response_status_code", None)
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or ""
    message = getattr(error, "message", None) or ""
    return status, code, scrub(message)


def consent_url(clients: ClientFactory, tenant_id: str, identity: str) -> str:
    """The admin consent URL of the product's multi-tenant app for one tenant (creates its service principal
    there and grants the application permissions it declares)."""
    return f"{clients.cloud.login}/{tenant_id}/adminconsent?client_id={identity}"


def onboarding_lines(clients: ClientFactory, tenant_id: str, identity: str, app_id: str) -> list[str]:
    """The exact `az` lines an administrator of `tenant_id` runs to let the product look after `app_id`
    (infra/scripts/onboard-tenant.sh does the same, idempotently)."""
    body = ('{\\"principalId\\":\\"$sp\\",\\"resourceId\\":\\"$graph\\",'
            f'\\"appRoleId\\":\\"{OWNED_BY_APP_ROLE_ID}\\"}}')
    return [
        f"az login --tenant {tenant_id} --allow-no-subscriptions",
        f"sp=$(az ad sp show --id {identity} --query id -o tsv || az ad sp create --id {identity} --query id -o tsv)",
        "graph=$(az ad sp show --id 00000003-0000-0000-c000-000000000000 --query id -o tsv)",
        f'az rest --method POST --url {clients.cloud.graph}/v1.0/servicePrincipals/$sp/appRoleAssignments '
        f'--body "{body}"',
        f"az ad app owner add --id {app_id} --owner-object-id $sp",
        # OwnedBy reads only owned objects: the app's service principal too (role repairs look it up)
        f"az rest --method POST --url {clients.cloud.graph}/v1.0/servicePrincipals/$(az ad sp show --id {app_id} "
        f'--query id -o tsv)/owners/\\$ref --body "{{\\"@odata.id\\":\\"{clients.cloud.graph}/v1.0/'
        f'directoryObjects/$sp\\"}}"',
    ]


def not_onboarded_error(clients: ClientFactory, tenant_id: str, app: str, answer: str) -> AccessDeniedError | None:
    """A target with the home identity in another tenant than the product's (when HOME_TENANT_ID says which
    tenant is home; without it the product cannot tell "in another tenant" from "gone")."""
    home = clients.settings.home_tenant_id
    if home is None or tenant_id == home or clients.identity_for_tenant(tenant_id) != HOME_IDENTITY:
        return None
    return AccessDeniedError(
        f"Target app {app} is in tenant {tenant_id}, where the product has no identity: its managed identity lives "
        f"in tenant {home}.",
        reason=f"{answer}: the product's identity cannot see that tenant (the app is not gone, it is in another "
               "tenant).",
        fix=f"Onboard tenant {tenant_id} for the product's multi-tenant app (docs/tenants.md, "
            "infra/scripts/onboard-tenant.sh), then set the target's identity to that app's client id.",
        target=app, details={"tenant_id": tenant_id, "identity": HOME_IDENTITY, "home_tenant_id": home,
                             "app_id": app, "missing": "identity"},
        code=TENANT_NOT_ONBOARDED,
    )


def cross_tenant_error(clients: ClientFactory, exc: Exception, *, tenant_id: str | None,
                       app: str) -> AccessDeniedError | None:
    """The precise error for a Graph failure that means "the product cannot reach this tenant" (not "the app is
    gone"), or None when the failure is something else."""
    from azure.core.exceptions import ClientAuthenticationError
    from kiota_abstractions.api_error import APIError

    if not tenant_id:
        return None
    identity = clients.identity_for_tenant(tenant_id)
    home = clients.settings.home_tenant_id
    status = getattr(exc, "response_status_code", None) if isinstance(exc, APIError) else None
    details: dict[str, Any] = {"tenant_id": tenant_id, "identity": identity, "home_tenant_id": home,
                               "app_id": app, "status": status}
    if identity == HOME_IDENTITY:
        if status not in (401, 403, 404):
            return None
        return not_onboarded_error(clients, tenant_id, app, f"Microsoft Graph in the product's home tenant "
                                                            f"answered {status}")
    url = consent_url(clients, tenant_id, identity)
    lines = onboarding_lines(clients, tenant_id, identity, app)
    details.update(consent_url=url, az=lines)
    if isinstance(exc, ClientAuthenticationError):
        evidence = parse_entra_error(scrub(str(getattr(exc, "message", exc))))
        details.update(aadsts=evidence.code, trace_id=evidence.trace_id, correlation_id=evidence.correlation_id)
        if evidence.code in _CONSENT_AADSTS:
            details["missing"] = "consent"
            return AccessDeniedError(
                f"Tenant {tenant_id} has not consented to the product's multi-tenant app {identity}: it has no "
                "service principal there, so the product cannot sign in to that tenant.",
                reason=f"Entra ID answered AADSTS{evidence.code}: {evidence.description}",
                fix=f"An administrator of tenant {tenant_id} grants admin consent ({url}) or runs: "
                    + " && ".join(lines[:2]) + "; then makes the app an owner of the target's app registration "
                    f"(az ad app owner add --id {app} --owner-object-id <its service principal id>).",
                target=app, details=details, code=TENANT_CONSENT_MISSING,
            )
        if evidence.code in _FEDERATION_AADSTS:
            details["missing"] = "federated_credential"
            return AccessDeniedError(
                f"The product's multi-tenant app {identity} does not trust the Function's managed identity: no "
                "federated identity credential matches its token.",
                reason=f"Entra ID answered AADSTS{evidence.code}: {evidence.description}",
                fix=f"In the home tenant, add a federated identity credential to app {identity} with issuer "
                    f"{clients.cloud.login}/<home tenant id>/v2.0, subject = the managed identity's object "
                    "(principal) id and audience api://AzureADTokenExchange (the Bicep's crossTenant parameter "
                    "does this): az ad app federated-credential create --id "
                    f"{identity} --parameters fic.json",
                target=app, details=details, code=TENANT_FEDERATION_MISMATCH,
            )
        return None
    if status in (403, 404):
        details["missing"] = "graph_permission_or_ownership"
        return AccessDeniedError(
            f"The product's multi-tenant app may not read app registration {app} in tenant {tenant_id}: it lacks "
            f"the Microsoft Graph permission {WRITE_PERMISSION} there, or is not an owner of the app.",
            reason=f"Microsoft Graph in tenant {tenant_id} answered {status} (Graph answers the same when the app "
                   "is not owned, not consented, or deleted).",
            fix=f"An administrator of tenant {tenant_id} grants admin consent ({url}) and makes the app's service "
                f"principal an owner of app {app}: " + " && ".join(lines[1:]),
            target=app, details=details, code=TENANT_APP_ACCESS_MISSING,
        )
    return None


def _raise_mapped(exc: Exception, *, action: str, app: str, write: bool, clients: ClientFactory | None = None,
                  tenant_id: str | None = None) -> NoReturn:
    """Turn whatever the Graph SDK raised into a domain error and raise it (without the SDK chain: the SDK's
    exception text may carry request details we do not want in logs)."""
    from azure.core.exceptions import ClientAuthenticationError
    from httpx import HTTPError
    from kiota_abstractions.api_error import APIError

    if isinstance(exc, RemediatorError):
        raise exc
    if clients is not None:
        foreign = cross_tenant_error(clients, exc, tenant_id=tenant_id, app=app)
        if foreign is not None:
            raise foreign from None
    if isinstance(exc, APIError):
        status, code, message = _odata(exc)
        graph = f"Microsoft Graph answered {status} {code}: {message}".rstrip(": ")
        if status == 403:
            need = WRITE_PERMISSION if write else f"{WRITE_PERMISSION} (or Application.Read.All)"
            raise AccessDeniedError(
                f"The product's identity is not allowed to {action} app registration {app}.",
                reason=graph,
                fix=(f"Grant the Function's managed identity the Microsoft Graph application permission {need} "
                     "(admin consent required) and make that identity an owner of the app registration "
                     f"(az ad app owner add --id {app} --owner-object-id <identity object id>)."),
                target=app, details={"permission": WRITE_PERMISSION, "graph_code": code, "status": status},
            ) from None
        if status == 404:
            raise NotFoundError(
                f"App registration {app} was not found in the tenant.",
                reason=graph,
                fix="Check the target's app_id (the application (client) id) and tenant_id; the app registration "
                    "may have been deleted (restore it from Entra ID > App registrations > Deleted applications).",
                target=app, details={"graph_code": code, "status": status}, code="application_not_found",
            ) from None
        if status == 401:
            raise CredentialUnavailableError(
                f"Microsoft Graph refused the product's token while trying to {action} app registration {app}.",
                reason=graph,
                fix="Check that the Function's identity belongs to the target's tenant and that the configured "
                    "cloud matches it.",
                target=app, details={"graph_code": code, "status": status},
            ) from None
        if status is not None and (status == 429 or status >= 500):
            raise ServiceError(
                f"Microsoft Graph failed to {action} app registration {app}, also after retries.",
                reason=graph, fix="Try again later; Graph may be throttling or degraded (status.azure.com).",
                target=app, details={"graph_code": code, "status": status},
            ) from None
        raise RequestRejectedError(
            f"Microsoft Graph rejected the request to {action} app registration {app}.",
            reason=graph, fix="See the reason; this is usually a configuration problem in the tenant.",
            target=app, details={"graph_code": code, "status": status}, code="graph_request_rejected",
        ) from None
    if isinstance(exc, ClientAuthenticationError):
        raise CredentialUnavailableError(
            "The product's own identity cannot get a token for Microsoft Graph.",
            reason=scrub(str(exc)).splitlines()[0] if str(exc) else "",
            fix="Check the Function's managed identity (or `az login` for the CLI).",
        ) from None
    if isinstance(exc, HTTPError):
        raise ServiceError(
            f"Microsoft Graph could not be reached to {action} app registration {app}.",
            reason=f"{type(exc).__name__}: {scrub(str(exc))}",
            fix="Check outbound HTTPS to Microsoft Graph (firewall, proxy, DNS), then try again.",
            target=app,
        ) from None
    raise exc


class GraphAdapter:
    """Graph in the tenant of the app registration a call names: `tenant_id` when given, else the tenant the
    configuration (or an earlier answer) puts that app in, else the home tenant."""

    def __init__(self, clients: ClientFactory, tenant_id: str | None = None) -> None:
        self.clients = clients
        self.tenant_id = tenant_id

    def _tenant(self, ident: str) -> str | None:
        return self.tenant_id or self.clients.tenant_of(ident)

    def _client_for(self, ident: str) -> GraphServiceClient:
        return self.clients.graph(self._tenant(ident))

    def _app_item(self, app_object_id: str) -> Any:
        return self._client_for(app_object_id).applications.by_application_id(app_object_id)

    def _raise(self, exc: Exception, *, action: str, app: str, write: bool) -> NoReturn:
        _raise_mapped(exc, action=action, app=app, write=write, clients=self.clients, tenant_id=self._tenant(app))

    def _learn(self, registration: AppRegistration, ident: str) -> AppRegistration:
        tenant = self._tenant(ident)
        if tenant and registration.object_id:
            self.clients.learn_tenant(registration.object_id, tenant)
        return registration

    async def get_application(self, app_id: str) -> AppRegistration:
        """By client id. NotFoundError if absent; AccessDeniedError naming the Graph permission if denied."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications_with_app_id.applications_with_app_id_request_builder import (
            ApplicationsWithAppIdRequestBuilder,
        )

        query = ApplicationsWithAppIdRequestBuilder.ApplicationsWithAppIdRequestBuilderGetQueryParameters(
            select=APPLICATION_SELECT
        )
        try:
            # the SDK's alternate-key builders write appId into the client's SHARED path parameters and build
            # the URL only after awaiting a token: concurrent lookups would read each other's app. Copy them.
            client = self._client_for(app_id)
            info = ApplicationsWithAppIdRequestBuilder(
                client.request_adapter, dict(client.path_parameters), app_id
            ).to_get_request_information(request_configuration=RequestConfiguration(query_parameters=query))
            # a small model: msgraph's full Application would import its whole model graph (graph_models.py)
            model = await client.request_adapter.send_async(info, SelectedApplication,
                                                            error_mapping())
        except Exception as exc:  # mapped to a domain error right here
            self._raise(exc, action="read", app=app_id, write=False)
        if model is None:
            raise NotFoundError(f"App registration {app_id} was not found in the tenant.", target=app_id,
                                code="application_not_found")
        return self._learn(_registration(model), app_id)

    async def get_application_by_object_id(self, app_object_id: str) -> AppRegistration:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.applications.item.application_item_request_builder import (
            ApplicationItemRequestBuilder,
        )

        query = ApplicationItemRequestBuilder.ApplicationItemRequestBuilderGetQueryParameters(
            select=APPLICATION_SELECT
        )
        try:
            item = self._app_item(app_object_id)
            info = item.to_get_request_information(request_configuration=RequestConfiguration(query_parameters=query))
            model = await item.request_adapter.send_async(info, SelectedApplication,
                                                          error_mapping())
        except Exception as exc:
            self._raise(exc, action="read", app=app_object_id, write=False)
        if model is None:
            raise NotFoundError(f"App registration {app_object_id} was not found in the tenant.",
                                target=app_object_id, code="application_not_found")
        return self._learn(_registration(model), app_object_id)

    async def add_password(self, app_object_id: str, display_name: str, end: datetime) -> NewSecret:
        """addPassword. PolicyDeniedError when an app management policy refuses the lifetime (details carry
        `max_lifetime_days` when known)."""
        from kiota_abstractions.api_error import APIError
        from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
            AddPasswordPostRequestBody,
        )
        from msgraph.generated.models.password_credential import PasswordCredential

        body = AddPasswordPostRequestBody(
            password_credential=PasswordCredential(display_name=display_name, end_date_time=end)
        )
        from ..limits import count_sent

        try:
            with count_sent() as sent:
                model = await self._app_item(app_object_id).add_password.post(body)
        except APIError as exc:
            status, code, message = _odata(exc)
            if code in (LIFETIME_POLICY_CODE, ADDITION_POLICY_CODE):
                raise await self._policy_denied(app_object_id, code, message, status) from None
            self._raise(exc, action="add a client secret to", app=app_object_id, write=True)
        except Exception as exc:
            self._raise(exc, action="add a client secret to", app=app_object_id, write=True)
        value = getattr(model, "secret_text", None) if model is not None else None
        register_secret(value)
        if model is None or not value:
            raise ServiceError(f"Microsoft Graph's addPassword answer for app registration {app_object_id} had no "
                               "secret value.", fix="Try again; remove the new credential if it was created.",
                               target=app_object_id)
        credential = _credential(model)
        logger.info("added password credential %s (hint %s) to app %s", credential.key_id, credential.hint,
                    app_object_id)
        return NewSecret(credential=credential, value=value, sent=sent.count)

    async def _policy_denied(self, app_object_id: str, code: str, message: str,
                             status: int | None) -> PolicyDeniedError:
        policy: PasswordPolicy | None
        try:
            policy = await self.get_password_policy(app_object_id)
        except RemediatorError as exc:  # reading the policy needs its own permission; the denial stands anyway
            logger.info("could not read the app management policy of %s: %s", app_object_id, exc.code)
            policy = None
        match = _POLICY_ID.search(message)
        details: dict[str, Any] = {
            "graph_code": code, "status": status,
            "policy_id": match.group(1) if match else (policy.policy_id if policy else None),
            "max_lifetime_days": policy.max_lifetime_days if policy else None,
        }
        if code == ADDITION_POLICY_CODE:
            return PolicyDeniedError(
                f"An app management policy blocks new client secrets on app registration {app_object_id}.",
                reason=f"Microsoft Graph answered {code}: {message}",
                fix="Exempt this app from the policy's passwordAddition restriction (Entra ID > Enterprise apps "
                    "> App management policies), or switch the CycleCloud account to managed identity mode.",
                target=app_object_id, details=details, code="password_addition_blocked",
            )
        limit = details["max_lifetime_days"]
        fix = (f"Set the target's rotation.lifetime_days below {limit} (the product already retries with the "
               "policy's maximum less a day)." if limit is not None else
               "Lower the target's rotation.lifetime_days below the policy's maximum; grant the Function's "
               f"identity {POLICY_READ_PERMISSION} so the product can read the maximum itself.")
        return PolicyDeniedError(
            f"An app management policy refuses the requested client secret lifetime on app registration "
            f"{app_object_id}.",
            reason=f"Microsoft Graph answered {code}: {message}", fix=fix,
            target=app_object_id, details=details, code="credential_lifetime_policy",
        )

    async def remove_password(self, app_object_id: str, key_id: str) -> bool:
        """removePassword by keyId. False when the credential was already gone."""
        from kiota_abstractions.api_error import APIError
        from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
            RemovePasswordPostRequestBody,
        )

        body = RemovePasswordPostRequestBody(key_id=uuid.UUID(key_id))
        try:
            await self._app_item(app_object_id).remove_password.post(body)
        except APIError as exc:
            status, _, _ = _odata(exc)
            if status in (400, 404):
                # Either the app or the key is gone: Graph's answer does not say which, the app's list does.
                app = await self.get_application_by_object_id(app_object_id)
                if app.credential(key_id) is None:
                    logger.info("password credential %s of app %s was already gone", key_id, app_object_id)
                    return False
            self._raise(exc, action="remove a client secret from", app=app_object_id, write=True)
        except Exception as exc:
            self._raise(exc, action="remove a client secret from", app=app_object_id, write=True)
        logger.info("removed password credential %s from app %s", key_id, app_object_id)
        return True

    async def get_service_principal(self, app_id: str) -> ServicePrincipalInfo:
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from msgraph.generated.service_principals_with_app_id.service_principals_with_app_id_request_builder import (
            ServicePrincipalsWithAppIdRequestBuilder,
        )

        query = ServicePrincipalsWithAppIdRequestBuilder.ServicePrincipalsWithAppIdRequestBuilderGetQueryParameters(
            select=SERVICE_PRINCIPAL_SELECT
        )
        try:
            client = self._client_for(app_id)  # own copy of the path parameters: see get_application
            info = ServicePrincipalsWithAppIdRequestBuilder(
                client.request_adapter, dict(client.path_parameters), app_id
            ).to_get_request_information(request_configuration=RequestConfiguration(query_parameters=query))
            model = await client.request_adapter.send_async(
                info, SelectedServicePrincipal, error_mapping())
        except Exception as exc:
            self._raise(exc, action="read the service principal of", app=app_id, write=False)
        if model is None:
            raise NotFoundError(f"App {app_id} has no service principal in the tenant.", target=app_id,
                                code="service_principal_not_found")
        return ServicePrincipalInfo(object_id=str(model.id or "").lower(), app_id=str(model.app_id or "").lower(),
                                    display_name=model.display_name or "")

    async def get_password_policy(self, app_object_id: str) -> PasswordPolicy:
        """The password restrictions that apply to the app: its own app management policy if one is assigned,
        else the tenant default policy. Needs Policy.Read.ApplicationConfiguration (AccessDeniedError)."""
        from kiota_abstractions.api_error import APIError

        try:
            assigned = await self._app_item(app_object_id).app_management_policies.get()
            for policy in (assigned.value if assigned and assigned.value else []):
                if policy.is_enabled is False:
                    continue
                max_days, blocked = _password_restrictions(policy.restrictions)
                return PasswordPolicy(max_days, blocked, str(policy.id) if policy.id else None)
            default = await self._client_for(app_object_id).policies.default_app_management_policy.get()
        except APIError as exc:
            status, code, message = _odata(exc)
            if status == 403:
                raise AccessDeniedError(
                    f"The product's identity cannot read the app management policy of app registration "
                    f"{app_object_id}.",
                    reason=f"Microsoft Graph answered {status} {code}: {message}",
                    fix=f"Grant the Function's managed identity the Microsoft Graph application permission "
                        f"{POLICY_READ_PERMISSION} (admin consent required).",
                    target=app_object_id, details={"permission": POLICY_READ_PERMISSION, "graph_code": code},
                ) from None
            self._raise(exc, action="read the app management policy of", app=app_object_id, write=False)
        except Exception as exc:
            self._raise(exc, action="read the app management policy of", app=app_object_id, write=False)
        if default is None or not default.is_enabled:
            return PasswordPolicy(None, False, None)
        max_days, blocked = _password_restrictions(default.application_restrictions)
        return PasswordPolicy(max_days, blocked, str(default.id) if default.id else None)
