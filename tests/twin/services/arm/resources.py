"""Microsoft.Resources: subscriptions, shown to anyone holding a role at, above or below them."""

from __future__ import annotations

from typing import Any

from ...http import Request, Response, json_response
from ...state import Subscription, scope_covers
from .base import ArmProvider


class ResourcesProvider(ArmProvider):
    """Subscriptions - List and Get."""

    def _subscription_body(self, sub: Subscription) -> dict[str, Any]:
        return {
            "id": f"/subscriptions/{sub.id}", "authorizationSource": "RoleBased", "managedByTenants": [],
            "subscriptionId": sub.id, "tenantId": sub.tenant_id, "displayName": sub.display_name,
            "state": sub.state, "tags": {},
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                     "quotaId": "EnterpriseAgreement_2014-09-01", "spendingLimit": "Off"},
        }

    def _has_any_role_in(self, principal_id: str, sub_id: str) -> bool:
        """ARM shows a subscription to anyone holding a role at, above or anywhere below it."""
        scope = f"/subscriptions/{sub_id}"
        with self.state.lock:
            return any(ra.principal_id == principal_id
                       and (scope_covers(ra.scope, scope) or scope_covers(scope, ra.scope))
                       for ra in self.state.role_assignments.values())

    def list_subscriptions(self, request: Request) -> Response:
        info = self._caller(request)
        with self.state.lock:
            subs = [s for s in self.state.subscriptions.values() if s.tenant_id == info.tenant_id.lower()]
        value = [self._subscription_body(s) for s in subs if self._has_any_role_in(info.object_id, s.id)]
        return json_response(200, {"value": value, "count": {"type": "Total", "value": len(value)}})

    def get_subscription(self, request: Request) -> Response:
        sub_id = request.params["sub"]
        info = self._caller(request)
        sub = self._subscription_for(info, sub_id)
        if not self._has_any_role_in(info.object_id, sub.id):
            self._authorize(info, "Microsoft.Resources/subscriptions/read", f"/subscriptions/{sub.id}")
        return json_response(200, self._subscription_body(sub))
