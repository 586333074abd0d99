"""Service limits, as Azure enforces them, so that a fan-out that floods a service is answered 429.

Each limit is a token bucket (capacity, refill per second) per partition, with the documented numbers:

| service | partition | limit (documented) |
|---|---|---|
| ARM | caller x subscription, per kind | reads: 250, refilled 25/s; writes 200, 10/s; deletes 200, 10/s |
| Graph (identity) | app x tenant | 3,500 request units / 10 s (a small tenant); writes 3,000 / 150 s |
| Key Vault | vault | 4,000 secret transactions / 10 s |

(ARM: "Understand how Azure Resource Manager throttles requests", the token-bucket algorithm per security
principal per subscription per region; Graph: "Microsoft Graph service-specific throttling limits", identity and
access, every request costing one unit here; Key Vault: "Azure Key Vault service limits".) Entra ID's token
endpoint, managed identity and CycleCloud have no documented number and are not limited. Buckets run on the
monotonic clock: time-machine (the chaos simulation) moves the wall clock, not the rate at which a process can
send requests.

A scenario can set other numbers (`"throttling": {"arm_read": [5, 1], ...}`, or `false` to turn limits off).
Every 429 carries `Retry-After` in whole seconds, as the services send it.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from .http import Request, Response, json_response

# limit name -> (capacity, refill per second)
DOCUMENTED_LIMITS: dict[str, tuple[float, float]] = {
    "arm_read": (250, 25),
    "arm_write": (200, 10),
    "arm_delete": (200, 10),
    "graph": (3500, 350),
    "graph_write": (3000, 20),
    "keyvault": (4000, 400),
}

_SUBSCRIPTION = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)


@dataclass
class _Bucket:
    capacity: float
    refill: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take one token; 0.0 when granted, else the seconds until one is there."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.refill)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.refill


class Throttle:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.limits: dict[str, tuple[float, float]] = dict(DOCUMENTED_LIMITS)
        self.enabled = True
        self._buckets: dict[tuple[str, ...], _Bucket] = {}
        self.throttled = 0  # how many requests it answered 429

    def configure(self, setting: Any) -> None:
        """A scenario's `throttling`: absent or true = the documented limits; false = none; a mapping overrides
        single limits by name."""
        with self._lock:
            self._buckets.clear()
            self.throttled = 0
            self.limits = dict(DOCUMENTED_LIMITS)
            self.enabled = setting is not False
            if isinstance(setting, dict):
                for name, value in setting.items():
                    if name not in DOCUMENTED_LIMITS:
                        raise ValueError(f"throttling: unknown limit {name!r} (known: {sorted(DOCUMENTED_LIMITS)})")
                    capacity, refill = value
                    self.limits[name] = (float(capacity), float(refill))

    def check(self, request: Request, caller: str | None) -> Response | None:
        """A 429 when one of the request's partitions is out of tokens, else None (the request proceeds)."""
        if not self.enabled:
            return None
        partitions = self._partitions(request, caller or "anonymous")
        if not partitions:
            return None
        now = time.monotonic()
        with self._lock:
            wait = 0.0
            for name, key in partitions:
                capacity, refill = self.limits[name]
                bucket = self._buckets.setdefault((name, *key), _Bucket(capacity, refill, capacity, now))
                wait = max(wait, bucket.take(now))
            if wait <= 0:
                return None
            self.throttled += 1
        return _too_many(request.service, max(1, math.ceil(wait)))

    @staticmethod
    def _partitions(request: Request, caller: str) -> list[tuple[str, tuple[str, ...]]]:
        if request.service == "arm":
            match = _SUBSCRIPTION.match(request.path)
            scope = match.group(1).lower() if match else "tenant"
            kind = {"GET": "read", "HEAD": "read", "DELETE": "delete"}.get(request.method, "write")
            if request.method == "POST" and request.path.lower().endswith(("/listkeys", "/list")):
                kind = "read"
            return [(f"arm_{kind}", (caller, scope))]
        if request.service == "graph":
            partitions: list[tuple[str, tuple[str, ...]]] = [("graph", (caller,))]
            if request.method != "GET":
                partitions.append(("graph_write", (caller,)))
            return partitions
        if request.service == "keyvault":
            return [("keyvault", (request.host,))]
        return []


def _too_many(service: str, seconds: int) -> Response:
    headers = {"Retry-After": str(seconds)}
    if service == "graph":
        return json_response(429, {"error": {"code": "TooManyRequests", "message": "Too many requests: the "
                                             "application is over its request-unit budget for this tenant."}},
                             headers)
    if service == "keyvault":
        return json_response(429, {"error": {"code": "Throttled", "message": "Request was not processed because "
                                             "too many requests were received. Reason: VaultRequestTypeLimitReached"}},
                             headers)
    return json_response(429, {"error": {"code": "TooManyRequests", "message": "The request is being throttled as "
                                         "the limit has been reached for operation type."}}, headers)
