"""Long-running HTTP operations (Azure's 202 + Location pattern): the record kept per operation in the state
container, and the continuation message that resumes it from the queue. Plain data, JSON round-trip, no secrets:
only ids, stages, times, the caller's label and the (secret-free) outcome body."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from ..clock import now_iso

MAX_DEQUEUE_COUNT = 5  # host.json extensions.queues.maxDequeueCount: the fifth failed delivery is poison
MAX_CONTINUATIONS = 12  # with the doubling back-off capped at MAX_BACKOFF_SECONDS: about an hour of waiting
MAX_BACKOFF_SECONDS = 300.0
_ID = re.compile(r"^[0-9a-f]{32}$")


class OperationKind(StrEnum):
    ROTATE = "rotate"
    REMEDIATE = "remediate"
    MIGRATE = "migrate"  # to the CycleCloud VM's managed identity (docs/migration.md)


class OperationState(StrEnum):
    RUNNING = "running"  # a continuation is queued (or being processed)
    SUCCEEDED = "succeeded"  # finished; `outcome` is the final answer
    FAILED = "failed"  # finished with an error, gave up, or poisoned; `error` says why


def new_operation_id() -> str:
    return uuid.uuid4().hex


def is_operation_id(value: str) -> bool:
    return bool(_ID.match(value))


def backoff_seconds(first: float, attempt: int) -> float:
    """The visibility delay before continuation `attempt` (1-based): first, 2x, 4x ... capped."""
    return float(min(MAX_BACKOFF_SECONDS, first * 2 ** max(0, attempt - 1)))


def status_path(operation_id: str) -> str:
    return f"/api/operations/{operation_id}"


@dataclass(frozen=True)
class OperationRecord:
    """`operations/<id>.json` in the state container."""

    id: str
    kind: OperationKind
    target: str
    state: OperationState
    created_at: str
    updated_at: str
    requested_by: str
    options: dict[str, bool] = field(default_factory=dict)
    attempt: int = 1  # the continuation attempt the newest queued message carries
    next_attempt_at: str | None = None
    failed_deliveries: int = 0
    poisoned: bool = False
    outcome: dict[str, Any] | None = None  # the newest response body (final when finished)
    error: dict[str, Any] | None = None  # the error shape's inner object, when failed
    history: tuple[dict[str, Any], ...] = ()  # what each attempt ended with (bounded)

    @property
    def finished(self) -> bool:
        return self.state is not OperationState.RUNNING

    def note(self, event: str, **details: Any) -> OperationRecord:
        entry = {"at": now_iso(), "event": event, **details}
        return replace(self, updated_at=entry["at"], history=(*self.history, entry)[-30:])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"], data["state"] = self.kind.value, self.state.value
        data["history"] = list(self.history)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperationRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["kind"] = OperationKind(known["kind"])
        known["state"] = OperationState(known["state"])
        known["history"] = tuple(known.get("history") or ())
        return cls(**known)

    def to_api(self) -> dict[str, Any]:
        """The `operation` object of a 202 body and the body of GET /api/operations/{id}."""
        body: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind.value,
            "target": self.target,
            "status": self.state.value,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "requestedBy": self.requested_by,
            "attempt": self.attempt,
            "statusUrl": status_path(self.id),
        }
        if self.next_attempt_at and not self.finished:
            body["nextAttemptAt"] = self.next_attempt_at
        if self.failed_deliveries:
            body["failedDeliveries"] = self.failed_deliveries
        if self.poisoned:
            body["poisoned"] = True
        if self.outcome is not None:
            body["outcome"] = self.outcome
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass(frozen=True)
class ContinuationMessage:
    """The queue message: which operation to resume and which attempt this is (older attempts are stale)."""

    operation_id: str
    kind: OperationKind
    target: str
    attempt: int

    def to_json(self) -> str:
        return json.dumps({"v": 1, "operationId": self.operation_id, "kind": self.kind.value, "target": self.target,
                           "attempt": self.attempt})

    @classmethod
    def parse(cls, text: str) -> ContinuationMessage | None:
        """None for anything that is not one of ours (logged and recorded by the caller, never retried)."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("v") != 1:
                return None
            op, target, attempt = data["operationId"], data["target"], data["attempt"]
            if not (isinstance(op, str) and is_operation_id(op) and isinstance(target, str)
                    and isinstance(attempt, int) and not isinstance(attempt, bool) and attempt >= 1):
                return None
            return cls(op, OperationKind(data["kind"]), target, attempt)
        except (ValueError, KeyError, TypeError, RecursionError):
            return None
