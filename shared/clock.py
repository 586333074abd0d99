"""Time, in one place: the wall clock for what is recorded or compared with Azure, the monotonic clock for budgets.

The wall clock is read on every call (never cached), so tests can travel in time (time_machine patches
`datetime.now`); budgets use `time.monotonic`, which time travel leaves alone, so a test's journey of days does
not expire a 200-second deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import overload


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@overload
def iso(value: datetime, *, seconds: bool = ...) -> str: ...
@overload
def iso(value: None, *, seconds: bool = ...) -> None: ...
@overload
def iso(value: datetime | None, *, seconds: bool = ...) -> str | None: ...
def iso(value: datetime | None, *, seconds: bool = False) -> str | None:
    """ISO 8601 in UTC with a `Z` (`2026-05-01T12:00:00.123456Z`; whole seconds when `seconds`); None stays None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds" if seconds else "auto").replace("+00:00", "Z")


def now_iso() -> str:
    """The current time to the second, as records and events show it."""
    return iso(now(), seconds=True)


def from_iso(value: str | None) -> datetime | None:
    """The UTC datetime an ISO 8601 string names (with `Z`, an offset, or none: UTC, as the product writes them);
    None or "" is None; ValueError when it is not ISO 8601."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class Deadline:
    """A time budget on the monotonic clock: the rotation never outlives the 230-second HTTP limit (long waits end
    in 202), and a remediation shares its budget between validations and fixes. `clock` is injectable so a unit
    test can step time without sleeping."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._start = clock()

    def remaining(self) -> float:
        """Seconds left, never below 0."""
        return max(0.0, self.seconds - (self._clock() - self._start))

    def elapsed_ms(self) -> float:
        return (self._clock() - self._start) * 1000.0
