"""The App Service managed identity endpoint (api-version 2019-08-01), plain HTTP on 127.0.0.1 as in Azure.

Errors are App Service's `{"statusCode", "message", "correlationId"}`: 401 for a wrong `X-IDENTITY-HEADER`,
400 "Unable to load the proper Managed Identity." for an unknown user-assigned client id, and 500 for a
resource Entra does not know (see `token`)."""

from __future__ import annotations

import time

from ..http import HttpError, Request, Response, Router, json_response
from ..server import Service
from ..state import new_guid

# a managed identity's token for another app's federated identity credential (workload identity federation)
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


class ManagedIdentityService(Service):
    name = "msi"

    def serves(self, host: str) -> bool:
        return False  # reached only through its own port, never through the proxy

    def register(self, router: Router) -> None:
        router.add("GET", "/msi/token", "token", self.token)

    def _error(self, status: int, message: str) -> HttpError:
        return HttpError(json_response(status, {"statusCode": status, "message": message,
                                                "correlationId": new_guid()}))

    def token(self, request: Request) -> Response:
        if request.headers.get("x-identity-header") != self.twin.identity_header:
            raise self._error(401, "Unauthorized request")
        resource = request.query.get("resource", "").rstrip("/")
        client_id = request.query.get("client_id")
        with self.state.lock:
            if client_id:
                object_id = self.state.user_assigned_identities.get(client_id.lower())
                if object_id is None:
                    raise self._error(400, "Unable to load the proper Managed Identity.")
            else:
                object_id = self.state.function_identity
                if object_id is None:
                    raise self._error(400, "No managed identity is assigned to this Function app. Turn on the "
                                           "system-assigned identity, or assign a user-assigned identity.")
            principal = self.state.principals[object_id]
            now = self.state.now()
        from .entra import KNOWN_AUDIENCES

        if resource not in KNOWN_AUDIENCES and resource != TOKEN_EXCHANGE_AUDIENCE:
            # App Service / Functions does not pass Entra's AADSTS500011 on: it answers a vague 500 (quoted in
            # Azure/azure-functions-host#9884 and Azure/azure-sdk-for-net#44685, "occured" sic; MSAL Python's
            # msal/managed_identity.py: "Empirically, wrong resource ends up with a vague statusCode=500"),
            # which azure-core's retry policy retries like any 500 before azure-identity gives up.
            raise self._error(500, "An unexpected error occured while fetching the AAD Token.")
        token, _ = self.twin.tokens.issue(principal.tenant_id, principal.object_id, principal.app_id or "",
                                          resource, now)
        return json_response(200, {
            "access_token": token,
            "expires_on": str(int(time.time()) + 3599),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": principal.app_id or "",
        })
