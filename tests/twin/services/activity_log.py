"""The Activity Log's `$filter` grammar, its paging and its timestamps, as Azure serves them.

- `$filter` (azure-rest-api-specs specification/monitor/.../stable/2015-04-01/activityLogs_API.json: "The
  $filter argument is very restricted and allows only the following patterns ... No other syntax is allowed"):
  conditions joined by `and`; `eventTimestamp ge '<t>'` is required, `eventTimestamp le '<t>'` optional; at
  most one of `resourceGroupName`, `resourceUri`/`resourceId`, `resourceProvider`, `correlationId` with `eq`;
  also `caller eq` and `status eq` (what `az monitor activity-log list --caller/--status` sends, Azure/azure-cli
  insights module `list_events`). Anything else (`or`, `ne`, unknown fields, unquoted values) is refused. The
  refusal's code and text are the twin's assumption: 400 `BadRequest` naming the filter.
- Paging: `x-ms-pageable` with `nextLink` (same file); a page holds `Switches.activity_log_page_size` events and
  `nextLink` is an absolute URL carrying the same filter plus `$skiptoken` (examples/GetActivityLogsFiltered.json:
  `"nextLink": "https://management.azure.com/...$skiptoken=..."`).
- Timestamps: 7 fractional digits and `Z` (`"eventTimestamp": "2015-01-21T22:14:26.9792776Z"` in the same
  example); the event id ends with `/ticks/<.NET ticks>` (`.../ticks/635574752669792776`).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from ..http import HttpError, json_response
from ..state import parse_time

_CONDITION = re.compile(r"^\s*(\w+)\s+(\w+)\s+'([^']*)'\s*$")
_RESOURCE_SELECTORS = {"resourcegroupname", "resourceuri", "resourceid", "resourceprovider", "correlationid"}
_EQ_FIELDS = _RESOURCE_SELECTORS | {"caller", "status"}
_DOTNET_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


@dataclass
class ActivityFilter:
    since: datetime
    until: datetime | None
    equals: dict[str, str]  # lower-cased field -> value

    def accepts(self, *, timestamp: datetime, caller: str, status: str, resource_id: str, operation: str,
                correlation_id: str) -> bool:
        if timestamp < self.since or (self.until is not None and timestamp > self.until):
            return False
        actual = {"caller": caller, "status": status, "resourceuri": resource_id, "resourceid": resource_id,
                  "resourceprovider": operation.split("/")[0], "correlationid": correlation_id,
                  "resourcegroupname": _resource_group(resource_id)}
        for name, wanted in self.equals.items():
            if (actual.get(name) or "").lower() != wanted.lower():
                return False
        return True


def _resource_group(resource_id: str) -> str:
    match = re.match(r"^/subscriptions/[^/]+/resourceGroups/([^/]+)", resource_id, re.IGNORECASE)
    return match.group(1) if match else ""


def _bad_filter(text: str, why: str) -> HttpError:
    return HttpError(json_response(400, {"error": {
        "code": "BadRequest",
        "message": f"The $filter '{text}' is not supported: {why}. Use eventTimestamp ge '<start>' [and "
                   "eventTimestamp le '<end>'] [and one of resourceGroupName, resourceUri, resourceProvider, "
                   "correlationId eq '<value>'] [and caller eq '<caller>'] [and status eq '<status>'].",
    }}))


def parse_filter(text: str, now: datetime) -> ActivityFilter:
    if not text.strip():
        raise _bad_filter(text, "the eventTimestamp ge '<start time>' condition is required")
    if re.search(r"\s+or\s+", text, re.IGNORECASE):
        raise _bad_filter(text, "'or' is not allowed")
    since: datetime | None = None
    until: datetime | None = None
    equals: dict[str, str] = {}
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _CONDITION.match(part)
        if not match:
            raise _bad_filter(text, f"cannot read the condition {part.strip()!r}")
        field, op, value = match.group(1).lower(), match.group(2).lower(), match.group(3)
        if field == "eventtimestamp" and op in ("ge", "le"):
            moment = parse_time(value, now) if value.startswith("now") else _instant(value)
            if moment is None:
                raise _bad_filter(text, f"{value!r} is not a time")
            if op == "ge":
                since = moment
            else:
                until = moment
        elif field in _EQ_FIELDS and op == "eq":
            if field in equals:
                raise _bad_filter(text, f"{match.group(1)} appears twice")
            equals[field] = value
        else:
            raise _bad_filter(text, f"'{match.group(1)} {match.group(2)}' is not an allowed condition")
    if since is None:
        raise _bad_filter(text, "the eventTimestamp ge '<start time>' condition is required")
    if len(_RESOURCE_SELECTORS & set(equals)) > 1:
        raise _bad_filter(text, "resourceGroupName, resourceUri, resourceProvider and correlationId are exclusive")
    return ActivityFilter(since, until, equals)


def _instant(value: str) -> datetime | None:
    text = value.strip().replace("Z", "+00:00")
    if "." in text:  # 7 fractional digits are legal here; Python reads at most 6
        head, _, tail = text.partition(".")
        digits = re.match(r"\d*", tail)
        frac = digits.group(0) if digits else ""
        text = f"{head}.{frac[:6].ljust(6, '0')}{tail[len(frac):]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def timestamp(moment: datetime, salt: str) -> str:
    """ISO 8601 with 7 fractional digits (100 ns ticks) and `Z`; the 7th digit comes from `salt` so it varies."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%f") + str(sum(map(ord, salt)) % 10) + "Z"


def dotnet_ticks(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - _DOTNET_EPOCH
    return (delta.days * 86400 + delta.seconds) * 10**7 + delta.microseconds * 10


def skiptoken(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def offset_of(token: str | None) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        return max(0, int(text.removeprefix("offset:")))
    except (ValueError, UnicodeDecodeError):
        raise HttpError(json_response(400, {"error": {"code": "BadRequest",
                                                      "message": "The $skiptoken is not valid."}})) from None


def next_link(host: str, path: str, api_version: str, filter_text: str, offset: int) -> str:
    return (f"https://{host}{path}?api-version={quote(api_version, safe='')}&$filter={quote(filter_text, safe='')}"
            f"&$skiptoken={skiptoken(offset)}")
