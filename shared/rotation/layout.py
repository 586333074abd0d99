"""The Key Vault layout of a target's secret (docs/rotation.md, "Key Vault layout"): names, tag keys, tag values.

The one place these strings are spelled: rotation writes them, migration and diagnosis read them, and a consumer
outside the product relies on them, so a rename here is a breaking change for that consumer.
"""

from __future__ import annotations

PENDING_SUFFIX = "-pending"
MAX_SECRET_NAME = 127  # Key Vault's limit on a secret name

TAG_KEY_ID = "keyId"  # the app credential a version's value belongs to
TAG_OPERATION_ID = "operationId"
TAG_APP_ID = "appId"
TAG_TENANT_ID = "tenantId"
TAG_ROTATED_AT = "rotatedAt"
TAG_STATE = "state"  # pending versions only (and the migrated marker): one of the STATE_* values

STATE_PENDING = "pending"  # written by create; the value is not tested yet
STATE_COMMITTED = "committed"  # the value reached the main secret
STATE_STALE = "stale"  # abandoned: its operation is no longer the current one
STATE_MIGRATED = "migrated"  # a managed-identity migration left this version (shared/migration/cleanup.py)


def pending_name(secret_name: str) -> str:
    """The secret that holds a new value between create and commit (consumers never read it)."""
    return f"{secret_name}{PENDING_SUFFIX}"


def key_id_tag(tags: dict[str, str] | None) -> str | None:
    """The keyId a version is tagged with, lower-cased; a person may have typed the tag in another case."""
    tags = tags or {}
    value = tags.get(TAG_KEY_ID) or tags.get("keyid") or tags.get("KeyId")
    return value.lower() if value else None
