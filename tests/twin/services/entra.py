"""Entra ID: OpenID configuration, instance discovery and the v2.0 client-credentials token endpoint,
answering with Entra's real error bodies (AADSTS codes, trace and correlation ids, timestamp)."""

from __future__ import annotations

from ..http import HttpError, Request, Response, Router, json_response
from ..server import LOGIN_HOSTS, Service
from ..state import Application, State, hash_secret, iso, new_guid

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KNOWN_AUDIENCES = {
    "https://management.azure.com", "https://management.core.windows.net", "https://graph.microsoft.com",
    "https://vault.azure.net", "https://storage.azure.com",
    "https://management.usgovcloudapi.net", "https://graph.microsoft.us", "https://vault.usgovcloudapi.net",
    "https://management.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn", "https://vault.azure.cn",
}


class EntraService(Service):
    name = "entra"

    def serves(self, host: str) -> bool:
        return host in LOGIN_HOSTS

    def register(self, router: Router) -> None:
        router.add("GET", "/common/discovery/instance", "instanceDiscovery", self.instance_discovery)
        router.add("GET", "/{tenant}/v2.0/.well-known/openid-configuration", "openidConfiguration", self.openid)
        router.add("GET", "/{tenant}/.well-known/openid-configuration", "openidConfiguration", self.openid)
        router.add("POST", "/{tenant}/oauth2/v2.0/token", "token", self.token)

    # -- errors -------------------------------------------------------------------------------------------

    def aadsts(self, status: int, error: str, code: int, text: str) -> HttpError:
        trace, correlation = new_guid(), new_guid()
        timestamp = iso(self.state.now()).replace("T", " ")  # type: ignore[union-attr]
        description = (f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
                       f"Timestamp: {timestamp}")
        return HttpError(json_response(status, {
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://{self._host}/error?code={code}",
        }))

    _host = "login.microsoftonline.com"

    def _tenant(self, request: Request) -> str:
        self._host = request.host
        raw = request.params["tenant"].lower()
        with self.state.lock:
            for tenant in self.state.tenants.values():
                if raw in (tenant.id, tenant.domain.lower()):
                    return tenant.id
        raise self.aadsts(400, "invalid_request", 90002,
                          f"Tenant '{raw}' not found. Check to make sure you have the correct tenant ID and are "
                          "signing into the correct cloud. Check with your subscription administrator, this may "
                          "happen if there are no active subscriptions for the tenant.")

    # -- routes -------------------------------------------------------------------------------------------

    def instance_discovery(self, request: Request) -> Response:
        host = request.host
        return json_response(200, {
            "tenant_discovery_endpoint": f"https://{host}/common/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        })

    def openid(self, request: Request) -> Response:
        tenant = self._tenant(request)
        base = f"https://{request.host}/{tenant}"
        return json_response(200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "issuer": f"https://{request.host}/{tenant}/v2.0",
            "jwks_uri": f"https://{request.host}/{tenant}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
        })

    def token(self, request: Request) -> Response:
        tenant_id = self._tenant(request)
        form = request.form()
        client_id = form.get("client_id", "")
        secret = form.get("client_secret")
        scope = form.get("scope", "")
        if form.get("grant_type") != "client_credentials":
            raise self.aadsts(400, "unsupported_grant_type", 70003,
                              "The app requested an unsupported grant type.")
        audience = scope.removesuffix("/.default").rstrip("/") if scope.endswith("/.default") else ""
        with self.state.lock:
            tenant = self.state.tenants[tenant_id]
            app = self.state.app_for_sign_in(client_id, tenant_id)
            if app is None:
                raise self.aadsts(400, "unauthorized_client", 700016,
                                  f"Application with identifier '{client_id}' was not found in the directory "
                                  f"'{tenant.domain}'. This can happen if the application has not been installed "
                                  "by the administrator of the tenant or consented to by any user in the tenant. "
                                  "You may have sent your authentication request to the wrong tenant.")
            if form.get("client_assertion"):
                self._check_assertion(request, app, form.get("client_assertion_type", ""),
                                      form.get("client_assertion", ""))
            elif not secret:
                raise self.aadsts(401, "invalid_client", 7000216,
                                  "'client_assertion', 'client_secret' or 'request' is required for the "
                                  "'client_credentials' grant type.")
            else:
                problem = client_secret_problem(self.state, app, secret)
                if problem is not None:
                    raise self.aadsts(401, "invalid_client", *problem)
            now = self.state.now()
            if audience not in KNOWN_AUDIENCES:
                raise self.aadsts(400, "invalid_resource", 500011,
                                  f"The resource principal named {audience or scope} was not found in the tenant "
                                  f"named {tenant.domain}. This can happen if the application has not been "
                                  "installed by the administrator of the tenant or consented to by any user in the "
                                  "tenant. You might have sent your authentication request to the wrong tenant.")
            sp = self.state.service_principal_of(client_id, tenant_id)
            object_id = sp.object_id if sp else app.object_id
        token, _ = self.twin.tokens.issue(tenant_id, object_id, client_id, audience, now)
        return json_response(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                   "access_token": token})


    def _check_assertion(self, request: Request, app: Application, assertion_type: str, assertion: str) -> None:
        """Workload identity federation: the assertion must be a token the twin issued (here: a managed identity's
        token), unexpired, and match one of the app's federated identity credentials by issuer
        (https://<login host>/<issuer tenant>/v2.0), subject (the identity's object id) and audience."""
        if assertion_type != JWT_BEARER:
            raise self.aadsts(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
        info = self.twin.tokens.lookup(assertion)
        if info is None:
            raise self.aadsts(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
        now = self.state.now()
        if now >= info.expires:
            raise self.aadsts(400, "invalid_client", 700024,
                              "Client assertion is not within its valid time range.")
        issuer = f"https://{request.host}/{info.tenant_id}/v2.0"
        if any(f.issuer == issuer and f.subject == info.object_id and info.audience in f.audiences
               for f in app.federated_credentials):
            return
        raise self.aadsts(400, "invalid_client", 70021,
                          f"No matching federated identity record found for presented assertion. Assertion Issuer: "
                          f"'{issuer}'. Assertion Subject: '{info.object_id}'. Assertion Audience: "
                          f"'{info.audience}'. https://docs.microsoft.com/en-us/azure/active-directory/develop/"
                          "workload-identity-federation")


def client_secret_problem(state: State, app: Application, secret: str) -> tuple[int, str] | None:
    """Why Entra refuses `secret` for `app` as (AADSTS code, text), or None when it works now. Shared with the
    twin's CycleCloud, whose "Validate" asks Entra the same question. The caller holds `state.lock`."""
    credential = next((c for c in app.password_credentials if c.secret_hash == hash_secret(secret)), None)
    now = state.now()
    invalid = (f"Invalid client secret provided. Ensure the secret being sent in the request is the client "
               f"secret value, not the client secret ID, for a secret added to app '{app.app_id}'.")
    if credential is None:
        return 7000215, invalid
    if now >= credential.end:
        return 7000222, (f"The provided client secret keys for app '{app.app_id}' are expired. Visit the "
                         "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or "
                         "consider using certificate credentials for added security: https://aka.ms/certCreds.")
    age = (now - credential.created_at).total_seconds()
    if now < credential.start or age < state.propagation.new_secret_seconds:
        return 7000215, invalid
    return None
