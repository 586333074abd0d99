"""Per-service concurrency and rate limits, so a wide fan-out never turns into a 429 storm.

One gate per service and key: Microsoft Graph per tenant, ARM per subscription, Key Vault per vault, CycleCloud
per server. A gate bounds the requests in flight (a semaphore) and their rate (a token bucket), and when the
service answers 429 with Retry-After it holds every request for that key until then, instead of letting the
other requests in flight run into the same throttle. Every HTTP attempt passes a gate (retries included: the
gate sits in the transport, under azure-core's and kiota's retry handlers).

LIMITS are budgets for the whole deployment. A worker process cannot see the others, so each takes its share:
the budget divided by the instances the host may run at once (MAXIMUM_INSTANCE_COUNT, the Bicep's
maximumInstanceCount; host.json's batchSize and newBatchThreshold only decide how many targets one process works
on, and those all share that process's gates). The CLI is one process and takes the whole budget. The budgets
are chosen below the documented limits: Graph's identity and access limits per app and tenant; ARM's buckets per
subscription (250 tokens, refilled at 25 a second per principal: every target's own principal has its own);
Key Vault's 4,000 secret reads per 10 s per vault; a CycleCloud server is one VM's web application.

Gates belong to an event loop (asyncio primitives do), so each loop has its own set: the Functions worker runs
one loop, the CLI one per command."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

MAX_HOLD_SECONDS = 60.0  # a Retry-After beyond this is capped (the SDK's own retry still honours it)


@dataclass(frozen=True)
class Limit:
    concurrency: int  # requests in flight per key
    per_second: float  # sustained rate per key
    burst: int  # requests allowed at once after a quiet period


LIMITS: dict[str, Limit] = {  # for the whole deployment, per key
    "graph": Limit(concurrency=64, per_second=160.0, burst=160),  # per tenant
    "arm": Limit(concurrency=32, per_second=20.0, burst=200),  # per subscription (tenant-level calls: per tenant)
    "vault": Limit(concurrency=64, per_second=300.0, burst=300),  # per vault
    "cyclecloud": Limit(concurrency=8, per_second=20.0, burst=20),  # per server
}
_processes = 1  # how many processes share LIMITS (configure())


def configure(processes: int) -> None:
    """How many worker processes share the budgets (the client factory calls this: the instance bound in Azure,
    1 elsewhere). Gates made afterwards take their share."""
    global _processes
    _processes = max(1, processes)


def share(limit: Limit, processes: int) -> Limit:
    """One process's share of a budget (at least one request in flight and one every two seconds)."""
    return Limit(concurrency=max(1, limit.concurrency // processes),
                 per_second=max(0.5, limit.per_second / processes), burst=max(1, limit.burst // processes))


class Gate:
    """One service key's limit: a semaphore for concurrency, a token bucket for rate, a hold after a 429."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self._slots = asyncio.Semaphore(limit.concurrency)
        self._bucket = asyncio.Lock()
        self._tokens = float(limit.burst)
        self._updated = time.monotonic()
        self._held_until = 0.0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.throttled = 0  # 429 answers seen

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._slots:
            await self._take_token()
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1

    async def _take_token(self) -> None:
        async with self._bucket:  # waiters queue here, so the rate holds however many are waiting
            while True:
                now = time.monotonic()
                if now < self._held_until:
                    await asyncio.sleep(self._held_until - now)
                    continue
                refill = (now - self._updated) * self.limit.per_second
                self._tokens = min(float(self.limit.burst), self._tokens + refill)
                self._updated = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.limit.per_second)

    def hold(self, seconds: float) -> None:
        """The service throttled this key: no new request for `seconds` (capped)."""
        self.throttled += 1
        until = time.monotonic() + min(MAX_HOLD_SECONDS, max(0.0, seconds))
        self._held_until = max(self._held_until, until)


_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], Gate]] = \
    weakref.WeakKeyDictionary()


def gate(service: str, key: str) -> Gate:
    """The gate of `service` (a LIMITS key) for `key` in the running event loop."""
    gates = _GATES.setdefault(asyncio.get_running_loop(), {})
    found = gates.get((service, key.lower()))
    if found is None:
        found = gates[(service, key.lower())] = Gate(share(LIMITS[service], _processes))
    return found


def gates() -> dict[tuple[str, str], Gate]:
    """This loop's gates (for the benchmark's report: peak in flight and 429s per key)."""
    try:
        return dict(_GATES.get(asyncio.get_running_loop(), {}))
    except RuntimeError:
        return {}


def retry_after_seconds(headers: Any) -> float:
    """Retry-After (seconds or an HTTP date) or retry-after-ms; 1 s when the service gave neither."""
    try:
        millis = headers.get("retry-after-ms") or headers.get("x-ms-retry-after-ms")
        if millis:
            return float(millis) / 1000
        value = headers.get("retry-after")
        if value:
            try:
                return float(value)
            except ValueError:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, AttributeError):
        pass
    return 1.0


_SUBSCRIPTION = re.compile(r"/subscriptions/([0-9a-fA-F-]{36})", re.IGNORECASE)


def arm_key(url: str) -> str:
    """ARM throttles per subscription: the one the URL names, else the tenant-level bucket."""
    match = _SUBSCRIPTION.search(url)
    return match.group(1) if match else "tenant"


def host_key(url: str) -> str:
    return urlsplit(url).netloc


KeyOf = Callable[[str], str]


def limited_transport(service: str, key_of: KeyOf, *, inner: Any = None, **connection: Any) -> Any:
    """An azure-core async transport (aiohttp, with the SDK's connection and read timeouts; or `inner`, which it
    then closes when it is closed) whose every attempt passes the service's gate."""
    from azure.core.pipeline.transport import AioHttpTransport, AsyncHttpTransport

    class LimitedTransport(AsyncHttpTransport):  # type: ignore[type-arg]
        def __init__(self) -> None:
            self._inner = inner if inner is not None else AioHttpTransport(**connection)

        async def __aenter__(self) -> LimitedTransport:
            await self._inner.__aenter__()
            return self

        async def __aexit__(self, *args: Any) -> None:
            await self._inner.__aexit__(*args)

        async def open(self) -> None:
            await self._inner.open()

        async def close(self) -> None:
            await self._inner.close()

        async def send(self, request: Any, **kwargs: Any) -> Any:
            limiter = gate(service, key_of(request.url))
            async with limiter.slot():
                response = await self._inner.send(request, **kwargs)
            if response.status_code == 429:
                limiter.hold(retry_after_seconds(response.headers))
                logger.warning("%s throttled %s (429); holding its requests", service, key_of(request.url))
            return response

    return LimitedTransport()


class SentAttempts:
    """How many times the requests made inside `count_sent()` went out (every retry of the SDK's counts)."""

    def __init__(self) -> None:
        self.count = 0


_SENT: ContextVar[SentAttempts | None] = ContextVar("sent_attempts", default=None)


@contextmanager
def count_sent() -> Iterator[SentAttempts]:
    """Count the HTTP attempts of the Graph calls made inside (the gate sits under msgraph's retry handler, so
    it sees each one): a POST sent once cannot have created anything twice."""
    sent = SentAttempts()
    token = _SENT.set(sent)
    try:
        yield sent
    finally:
        _SENT.reset(token)


def limit_httpx_client(client: Any, service: str, key: str) -> Any:
    """Put the gate under an httpx client's transports (the plain one and any proxy mounts from the environment:
    passing `transport=` to httpx would drop those), below msgraph's middleware, which wraps them the same way."""
    import httpx

    class LimitedHttpxTransport(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self._inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            limiter = gate(service, key)
            async with limiter.slot():
                sent = _SENT.get()
                if sent is not None:
                    sent.count += 1  # before sending: an attempt that fails may still have reached Graph
                response = await self._inner.handle_async_request(request)
            if response.status_code == 429:
                limiter.hold(retry_after_seconds(response.headers))
                logger.warning("%s throttled %s (429); holding its requests", service, key)
            return response

        async def aclose(self) -> None:
            await self._inner.aclose()

    client._transport = LimitedHttpxTransport(client._transport)
    client._mounts = {pattern: None if transport is None else LimitedHttpxTransport(transport)
                      for pattern, transport in client._mounts.items()}
    return client
