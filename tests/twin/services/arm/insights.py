"""Microsoft.Insights: the Activity Log, filtered by Azure's restricted `$filter` grammar and paged with
`nextLink` (the grammar and paging live in services/activity_log.py).

Scenario events (`activity_log`) can carry any ARM error as `message` (e.g. a `RequestDisallowedByPolicy` for a
VM that CycleCloud tried to create); failed writes of the other providers are logged by `ArmProvider`.
"""

from __future__ import annotations

import re
from typing import Any

from ...http import Request, Response, json_response
from ...state import ActivityLogEvent, new_guid
from .. import activity_log
from .base import ArmProvider

_RG_IN_SCOPE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/([^/]+)", re.IGNORECASE)


class InsightsProvider(ArmProvider):
    """Activity Log - List (management events of a subscription)."""

    def activity_log(self, request: Request) -> Response:
        """Filtered by Azure's restricted `$filter` grammar and paged with `nextLink` (services/activity_log.py)."""
        sub_id = request.params["sub"].lower()
        scope = f"/subscriptions/{sub_id}"
        info = self._caller(request, scope)
        self._authorize(info, "Microsoft.Insights/eventtypes/values/read", scope)
        flt = request.query.get("$filter", "")
        wanted = activity_log.parse_filter(flt, self.state.now())
        offset = activity_log.offset_of(request.query.get("$skiptoken") or request.query.get("$skipToken"))
        with self.state.lock:
            events = [e for e in self.state.activity_log if e.subscription_id == sub_id]
            page_size = self.state.switches.activity_log_page_size
        matching = [e for e in sorted(events, key=lambda e: (e.timestamp, e.correlation_id), reverse=True)
                    if wanted.accepts(timestamp=e.timestamp, caller=e.caller, status=e.status,
                                      resource_id=e.resource_id, operation=e.operation_name,
                                      correlation_id=e.correlation_id)]
        page = matching[offset:offset + page_size]
        more = offset + page_size < len(matching)
        link = activity_log.next_link(request.host, f"/subscriptions/{request.params['sub']}/providers/"
                                      "Microsoft.Insights/eventtypes/management/values",
                                      request.query.get("api-version", ""), flt, offset + page_size) if more else None
        return json_response(200, {"value": [self._event_body(e) for e in page], "nextLink": link})

    def _claims(self, caller: str) -> dict[str, str]:
        """The token claims Azure copies into an event: for a service principal (managed identities included) the
        client id is `appid` (also the event's `caller`) and the object id is only here."""
        with self.state.lock:
            principal = next((p for p in self.state.principals.values()
                              if (p.app_id or "").lower() == caller.lower() or p.object_id == caller.lower()), None)
            if principal is None:
                return {}
            return {"appid": (principal.app_id or "").lower(), "idtyp": "app",
                    "http://schemas.microsoft.com/identity/claims/objectidentifier": principal.object_id,
                    "http://schemas.microsoft.com/identity/claims/tenantid": principal.tenant_id}

    def _event_body(self, event: ActivityLogEvent) -> dict[str, Any]:
        event_id = new_guid()
        rg = _RG_IN_SCOPE.match(event.resource_id)
        failed = event.status.lower() == "failed"
        return {
            "authorization": {"action": event.operation_name, "scope": event.resource_id},
            "caller": event.caller, "claims": self._claims(event.caller), "channels": "Operation",
            "correlationId": event.correlation_id,
            "eventDataId": event_id, "eventName": {"value": "EndRequest", "localizedValue": "End request"},
            "category": {"value": "Administrative", "localizedValue": "Administrative"},
            "eventTimestamp": activity_log.timestamp(event.timestamp, event.correlation_id),
            "id": f"{event.resource_id}/events/{event_id}/ticks/{activity_log.dotnet_ticks(event.timestamp)}",
            "level": "Error" if failed else "Informational", "operationId": event.correlation_id,
            "operationName": {"value": event.operation_name, "localizedValue": event.operation_name},
            "resourceGroupName": rg.group(1) if rg else None,
            "resourceProviderName": {"value": event.operation_name.split("/")[0],
                                     "localizedValue": event.operation_name.split("/")[0]},
            "resourceId": event.resource_id,
            "status": {"value": event.status, "localizedValue": event.status},
            "subStatus": {"value": "Forbidden" if failed else "", "localizedValue": ""},
            "submissionTimestamp": activity_log.timestamp(event.timestamp, event_id),
            "subscriptionId": event.subscription_id,
            "properties": {"statusCode": "Forbidden" if failed else "OK", "statusMessage": event.message,
                           "eventCategory": "Administrative"},
        }
