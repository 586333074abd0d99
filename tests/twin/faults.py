"""Fault injection: per service and operation, or on the k-th request the twin receives.

A fault can answer with a status and body (optionally `Retry-After`), delay the request, drop the
connection, or hold the request until a test releases it (or kills the caller) for crash tests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .http import Request, Response, json_response


@dataclass
class Fault:
    service: str = "*"  # "entra", "msi", "graph", "arm", "keyvault", "cyclecloud" or "*"
    operation: str = "*"  # operation name from the service's router, or "*"
    status: int | None = None
    body: Any = None
    retry_after: float | None = None
    delay: float = 0.0
    drop: bool = False
    hold: bool = False
    after: bool = False  # let the service do the work first, then answer with the fault (a 5xx after success)
    times: int | None = 1  # how many matching requests it affects (None = every one)
    nth: int | None = None  # only the n-th request overall (twin-wide sequence number)
    skip: int = 0  # let this many matching requests through first
    id: int = 0
    hits: int = 0
    seen: int = 0

    def matches(self, request: Request) -> bool:
        if self.nth is not None and request.seq != self.nth:
            return False
        if self.service not in ("*", request.service):
            return False
        return self.operation in ("*", request.operation)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class HeldRequest:
    seq: int
    service: str
    operation: str
    method: str
    path: str
    released: threading.Event = field(default_factory=threading.Event)


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._next_id = 1
        self.held: dict[int, HeldRequest] = {}
        self._held_changed = threading.Condition(self._lock)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            fault.id = self._next_id
            self._next_id += 1
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            for held in self.held.values():
                held.released.set()
            self.held.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._rules]

    def pick(self, request: Request) -> Fault | None:
        with self._lock:
            for fault in self._rules:
                if not fault.matches(request):
                    continue
                fault.seen += 1
                if fault.seen <= fault.skip:
                    continue
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                fault.hits += 1
                return fault
        return None

    def apply(self, fault: Fault, request: Request) -> Response | None:
        """Run the fault. Returns a response to send instead of the real one, or None to carry on."""
        if fault.delay:
            time.sleep(fault.delay)
        if fault.hold:
            held = HeldRequest(request.seq, request.service, request.operation, request.method, request.path)
            with self._lock:
                self.held[request.seq] = held
                self._held_changed.notify_all()
            held.released.wait()
            with self._lock:
                self.held.pop(request.seq, None)
        if fault.drop:
            return Response(0, drop=True)
        if fault.status is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            body = fault.body if fault.body is not None else {
                "error": {"code": "InjectedFault", "message": f"Injected fault {fault.status}."}
            }
            return json_response(fault.status, body, headers)
        return None

    def wait_held(self, timeout: float) -> list[HeldRequest]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self.held:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._held_changed.wait(remaining)
            return list(self.held.values())

    def release(self, seq: int | None = None) -> int:
        with self._lock:
            targets = [self.held[seq]] if seq is not None and seq in self.held else list(self.held.values())
        for held in targets:
            held.released.set()
        return len(targets)
