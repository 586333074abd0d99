"""At most one failed CycleCloud login per server and user per minute, in this process.

CycleCloud locks a user for 5 minutes after 5 failed logins within 60 seconds. A wrong password is not fixed by
trying again, so after a refused login the adapter does not send that user's credentials to that server again
for a minute; callers get an error that says so (and why) instead of a request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

PAUSE_SECONDS = 60.0


class LoginGuard:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failed_at: dict[tuple[str, str], float] = {}

    def seconds_to_wait(self, url: str, user: str) -> float:
        with self._lock:
            failed = self._failed_at.get((url.lower(), user))
            if failed is None:
                return 0.0
            return max(0.0, PAUSE_SECONDS - (self._clock() - failed))

    def record_failure(self, url: str, user: str) -> None:
        with self._lock:
            self._failed_at[(url.lower(), user)] = self._clock()

    def record_success(self, url: str, user: str) -> None:
        with self._lock:
            self._failed_at.pop((url.lower(), user), None)

    def reset(self) -> None:
        """Forget every failure (a new process starts this way; tests call it between cases)."""
        with self._lock:
            self._failed_at.clear()


login_guard = LoginGuard()
