"""Never lock the CycleCloud user: at most one unverified login in flight, and at most one failed login per
server and user per minute, in this process.

CycleCloud locks a user for 5 minutes after 5 failed logins within 60 seconds. A wrong password is not fixed by
trying again, and the hourly health sweep checks many targets at once, often with the same CycleCloud user. So:

- A password this process has not yet seen accepted by a server ("unverified") is sent by **one** caller at a
  time per (server, user). Concurrent callers wait for that login's outcome: on success they proceed (the
  password is now verified and requests run concurrently); on failure they get the pause without sending
  anything; when the first caller ends without an answer (network error, cancelled), the next one tries.
- After a refused login, that user's credentials are not sent to that server again for a minute.

The guard lives in memory, per process: N instances of the Function App (scale-out) or a CLI run beside it can
each spend one failed login per minute (see docs/cyclecloud.md). A password is identified by a keyed hash only
(a per-process random key), never kept in the guard.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PAUSE_SECONDS = 60.0


class LoginPaused(Exception):
    """Raised by `admit` instead of letting a login through; the adapter turns it into its domain error."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"login paused for {seconds:.0f} s")
        self.seconds = seconds


@dataclass
class _UserState:
    failed_at: float | None = None
    verified: set[str] = field(default_factory=set)  # keyed hashes of passwords a server accepted
    in_flight: concurrent.futures.Future[None] | None = None  # the one unverified login being tried


class Admission:
    """Permission to send one request with credentials. Exactly one of `succeeded`, `failed`, `release` must
    follow (the later calls are ignored), so waiting callers always learn the outcome."""

    def __init__(self, guard: LoginGuard, key: tuple[str, str], fingerprint: str, owner: bool) -> None:
        self._guard = guard
        self._key = key
        self._fingerprint = fingerprint
        self._owner = owner  # this request carries the unverified login the others wait for
        self._done = False

    @property
    def unverified(self) -> bool:
        return self._owner

    def succeeded(self) -> None:
        """The server accepted the credentials (any answer other than 401 or a lockout)."""
        def record(state: _UserState) -> None:
            state.verified.add(self._fingerprint)
            state.failed_at = None
        self._finish(record)

    def failed(self) -> None:
        """The server refused the login (401) or says the user is locked: pause this user on this server."""
        def record(state: _UserState) -> None:
            state.verified.discard(self._fingerprint)
            state.failed_at = self._guard.clock()
        self._finish(record)

    def release(self) -> None:
        """No answer about the login (connection error, timeout, cancelled): let the next caller try."""
        self._finish(lambda _state: None)

    def _finish(self, update: Callable[[_UserState], None]) -> None:
        if self._done:
            return
        self._done = True
        self._guard.finish(self._key, self._owner, update)


class LoginGuard:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._users: dict[tuple[str, str], _UserState] = {}
        self._hash_key = secrets.token_bytes(32)

    @staticmethod
    def _key(url: str, user: str) -> tuple[str, str]:
        return url.rstrip("/").lower(), user

    def _fingerprint(self, password: str) -> str:
        return hmac.new(self._hash_key, password.encode("utf-8"), hashlib.sha256).hexdigest()

    def _pause_left(self, state: _UserState) -> float:
        if state.failed_at is None:
            return 0.0
        return max(0.0, PAUSE_SECONDS - (self.clock() - state.failed_at))

    def seconds_to_wait(self, url: str, user: str) -> float:
        """Seconds before this user's credentials may be sent to this server again (0 = now)."""
        with self._lock:
            state = self._users.get(self._key(url, user))
            return 0.0 if state is None else self._pause_left(state)

    async def admit(self, url: str, user: str, password: str) -> Admission:
        """Wait until this login may be sent; raise LoginPaused when it must not be sent at all."""
        key = self._key(url, user)
        fingerprint = self._fingerprint(password)
        while True:
            with self._lock:
                state = self._users.setdefault(key, _UserState())
                pause = self._pause_left(state)
                if pause > 0:
                    raise LoginPaused(pause)
                if fingerprint in state.verified:
                    return Admission(self, key, fingerprint, owner=False)
                if state.in_flight is None:
                    state.in_flight = concurrent.futures.Future()
                    return Admission(self, key, fingerprint, owner=True)
                pending = state.in_flight
            # a thread-safe future: callers may run on different event loops (CLI, Functions worker, tests)
            await asyncio.wrap_future(pending)

    def finish(self, key: tuple[str, str], owner: bool, update: Callable[[_UserState], None]) -> None:
        with self._lock:
            state = self._users.setdefault(key, _UserState())
            update(state)
            pending = state.in_flight if owner else None
            if owner:
                state.in_flight = None
        if pending is not None and not pending.done():
            pending.set_result(None)

    def reset(self) -> None:
        """Forget every failure and verified password (a new process starts this way; tests call it between
        cases). Callers waiting on a login in flight are woken and re-evaluate."""
        with self._lock:
            pending = [s.in_flight for s in self._users.values() if s.in_flight is not None]
            self._users.clear()
        for future in pending:
            if not future.done():
                future.set_result(None)


login_guard = LoginGuard()
