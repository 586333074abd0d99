"""The Key Vault layout of a target's secret (docs/rotation.md, "Key Vault layout"): names and tag keys."""

from __future__ import annotations

PENDING_SUFFIX = "-pending"

TAG_KEY_ID = "keyId"  # the app credential a version's value belongs to
TAG_OPERATION_ID = "operationId"
TAG_APP_ID = "appId"
TAG_TENANT_ID = "tenantId"
TAG_ROTATED_AT = "rotatedAt"
TAG_STATE = "state"  # pending versions only: pending | committed | stale


def pending_name(secret_name: str) -> str:
    """The secret that holds a new value between create and commit (consumers never read it)."""
    return f"{secret_name}{PENDING_SUFFIX}"
