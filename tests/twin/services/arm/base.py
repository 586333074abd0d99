"""What every ARM resource provider of the twin shares: ARM's error body, the caller's authentication (bearer
token, tenant of the subscription) and authorisation (the twin's RBAC), and the Activity Log entry a failed write
leaves.

Modelling choices:
- Tenant: a token from another tenant than the subscription's gets 401 `InvalidAuthenticationTokenTenant`
  with ARM's `WWW-Authenticate` header; an unknown subscription gets 404 `SubscriptionNotFound`.
- Failed writes (authorization, policy) are appended to the Activity Log with the caller's client id as
  `caller`, as the Activity Log records service principals; the object id is only in the event's `claims`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ...http import HttpError, Request, json_response
from ...server import Service
from ...state import ActivityLogEvent, Subscription, iso
from ...tokens import TokenInfo
from ..common import require_token

AUTH = "/providers/Microsoft.Authorization"
_GUID_TAIL = re.compile(r"([0-9a-fA-F-]{36})$")
SUB_IN_SCOPE = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)


def arm_error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
              **extra: Any) -> HttpError:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return HttpError(json_response(status, {"error": body}, headers))


def guid_of(value: str) -> str:
    """Role definition ids arrive as a GUID or a full id; compare by the trailing GUID."""
    match = _GUID_TAIL.search(value.strip())
    return (match.group(1) if match else value.rsplit("/", 1)[-1]).lower()


def norm_scope(scope: str) -> str:
    scope = "/" + scope.strip("/")
    return scope


class ArmProvider(Service):
    """Base of the ARM resource providers the twin's `ArmService` combines."""

    # -- callers --------------------------------------------------------------------------------------------

    def _audiences(self, request: Request) -> set[str]:
        own = f"https://{request.host}"
        return {own, "https://management.core.windows.net"} if request.host == "management.azure.com" else {own}

    def _caller(self, request: Request, scope: str | None = None) -> TokenInfo:
        """Authenticate; when `scope` lies in a subscription, check that it exists and the token's tenant."""
        if request.bearer is None:
            raise arm_error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is "
                            "missing.", headers={"WWW-Authenticate": 'Bearer authorization_uri="https://login.'
                                                 'windows.net/", error="invalid_token", error_description="The '
                                                 'authentication failed because of missing \'Authorization\' '
                                                 'header."'})
        info = self.twin.tokens.lookup(request.bearer)
        if info is None or info.audience.rstrip("/") not in self._audiences(request):
            info = require_token(self.twin, request, f"https://{request.host}")
        if info.expires < self.state.now():
            raise arm_error(401, "ExpiredAuthenticationToken", "The access token expiry UTC time '"
                            f"{iso(info.expires)}' is earlier than current UTC time '{iso(self.state.now())}'.")
        if scope is not None:
            match = SUB_IN_SCOPE.match(scope)
            if match:
                self._subscription_for(info, match.group(1))
        return info

    def _subscription_for(self, info: TokenInfo, sub_id: str) -> Subscription:
        with self.state.lock:
            sub = self.state.subscriptions.get(sub_id.lower())
        if sub is None:
            raise arm_error(404, "SubscriptionNotFound", f"The subscription '{sub_id}' could not be found.")
        if sub.tenant_id != info.tenant_id.lower():
            raise arm_error(
                401, "InvalidAuthenticationTokenTenant",
                f"The access token is from the wrong issuer 'https://sts.windows.net/{info.tenant_id}/'. It must "
                f"match the tenant 'https://sts.windows.net/{sub.tenant_id}/' associated with this subscription. "
                f"Please use the authority (URL) 'https://login.windows.net/{sub.tenant_id}' to get the token. "
                "Note, if the subscription is transferred to another tenant there is no impact to the services, "
                "but information about new tenant could take time to propagate (up to an hour). If you just "
                "transferred your subscription and see this error message, please try back later.",
                headers={"WWW-Authenticate": f'Bearer authorization_uri="https://login.windows.net/{sub.tenant_id}'
                                             '", error="invalid_token", error_description="The access token is '
                                             'from the wrong issuer. It must match the tenant associated with this '
                                             'subscription. Please use correct authority to get the token."'},
            )
        return sub

    def _authorize(self, info: TokenInfo, action: str, scope: str, *, reported_scope: str | None = None,
                   log_failure: bool = False) -> None:
        with self.state.lock:
            allowed = self.state.is_allowed(info.object_id, action, scope)
        if allowed:
            return
        shown = reported_scope or scope
        message = (f"The client '{self._client_name(info)}' with object id '{info.object_id}' does not have "
                   "authorization to "
                   f"perform action '{action}' over scope '{shown}' or the scope is invalid. If access was "
                   "recently granted, please refresh your credentials.")
        if log_failure:
            self._log_failure(info, action, shown, {"error": {"code": "AuthorizationFailed", "message": message}})
        raise arm_error(403, "AuthorizationFailed", message)

    def _client_name(self, info: TokenInfo) -> str:
        """Who ARM names as 'the client' in AuthorizationFailed: a service principal (managed identities included)
        by its object id, twice ("The client '63df…' with object id '63df…'", Azure/azure-sdk-for-net#1157,
        microsoft/azure-tools-for-java#3643), a user by sign-in name (Azure/azure-powershell#16319)."""
        with self.state.lock:
            principal = self.state.principals.get(info.object_id.lower())
        if principal is not None and principal.kind == "User":
            return principal.display_name
        return info.object_id

    def _log_failure(self, info: TokenInfo, action: str, resource_id: str, error: dict[str, Any]) -> None:
        match = SUB_IN_SCOPE.match(resource_id)
        if not match:
            return
        with self.state.lock:
            self.state.activity_log.append(ActivityLogEvent(
                subscription_id=match.group(1).lower(), caller=info.app_id.lower(), operation_name=action,
                resource_id=resource_id, status="Failed", message=json.dumps(error), timestamp=self.state.now(),
            ))
