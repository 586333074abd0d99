"""Long-running HTTP operations: 202 + Location + Retry-After, continued through a Storage queue (docs/http.md)."""

from .model import MAX_DEQUEUE_COUNT, ContinuationMessage, OperationKind, OperationRecord, OperationState
from .runner import operation_status, poisoned_operations, record_poisoned, resume_operation, start_operation
from .store import OperationNotFoundError, OperationStore

__all__ = [
    "MAX_DEQUEUE_COUNT",
    "ContinuationMessage",
    "OperationKind",
    "OperationNotFoundError",
    "OperationRecord",
    "OperationState",
    "OperationStore",
    "operation_status",
    "poisoned_operations",
    "record_poisoned",
    "resume_operation",
    "start_operation",
]
