"""Domain exceptions.

Adapters translate SDK and HTTP failures into these at their boundary; nothing above the adapters sees an
SDK exception. Every error carries what failed (`message`), why (`reason`) and how to fix it (`fix`), a
stable `code`, and the HTTP status it maps to (mapped once, in `http_contract`). Messages never contain
secret values: callers pass only names, ids and the service's own (secret-free) error text.
"""

from __future__ import annotations

from typing import Any


class RemediatorError(Exception):
    """Base of every domain error."""

    code = "internal_error"
    status = 500

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        fix: str = "",
        target: str | None = None,
        details: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.fix = fix
        self.target = target
        self.details = details or {}
        if code:
            self.code = code

    def __str__(self) -> str:
        parts = [self.message]
        if self.reason:
            parts.append(f"Why: {self.reason}")
        if self.fix:
            parts.append(f"Fix: {self.fix}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        details = dict(self.details)
        if self.reason:
            details.setdefault("reason", self.reason)
        if self.fix:
            details.setdefault("fix", self.fix)
        return {"code": self.code, "message": self.message, "target": self.target, "details": details}


class ConfigError(RemediatorError):
    """The app settings or target definitions are invalid. Lists every problem at once."""

    code = "invalid_configuration"
    status = 500

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"The configuration has {len(problems)} problem(s):\n{listing}",
            details={"problems": problems},
        )

    def __str__(self) -> str:
        return self.message


class BadRequestError(RemediatorError):
    code = "bad_request"
    status = 400


class TargetNotFoundError(RemediatorError):
    code = "target_not_found"
    status = 404


class AccessDeniedError(RemediatorError):
    """The product's own identity lacks a permission it needs."""

    code = "access_denied"
    status = 502


class NotFoundError(RemediatorError):
    """A cloud resource the configuration names does not exist."""

    code = "not_found"
    status = 502


class ConflictError(RemediatorError):
    code = "conflict"
    status = 409


class LockedError(ConflictError):
    """Another caller holds the target's lock (e.g. a rotation is in progress)."""

    code = "target_locked"
    status = 409


class ServiceError(RemediatorError):
    """A cloud service failed, or kept failing after bounded retries."""

    code = "upstream_error"
    status = 502


class RequestRejectedError(ServiceError):
    """A cloud service refused the request itself (a 4xx other than throttling): retrying will not help."""

    code = "request_rejected"
    status = 502


class AuthenticationError(RemediatorError):
    """Entra ID refused a token request. `details` carries the parsed AADSTS evidence."""

    code = "authentication_failed"
    status = 502


class CredentialUnavailableError(RemediatorError):
    """The product's own identity cannot be used (managed identity off, `az` not logged in, ...)."""

    code = "identity_unavailable"
    status = 503


class PolicyDeniedError(RemediatorError):
    code = "policy_denied"
    status = 502


class CycleCloudError(RemediatorError):
    """Base of CycleCloud connection failures."""

    code = "cyclecloud_error"
    status = 502


class RotationError(RemediatorError):
    code = "rotation_failed"
    status = 502


class PrincipalNotFoundError(ServiceError):
    """ARM cannot see the principal yet (directory replication right after it was created). Retriable."""

    code = "principal_not_found"
    status = 502


class TenantMismatchError(RemediatorError):
    """A subscription belongs to another tenant than the identity that asked for it."""

    code = "tenant_mismatch"
    status = 502
