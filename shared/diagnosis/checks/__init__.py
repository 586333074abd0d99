"""The checks `validate` runs, each a small async function of `Facts` returning findings.

Order here is the order of the report's `checks` list and, within a severity, of its findings. Every check
runs for every target; one that does not apply skips itself and says why (so the report shows what was not
looked at, and why).
"""

from __future__ import annotations

from ..runner import Check
from .activity import check_activity_log
from .advice import check_managed_identity_advice
from .cyclecloud import check_cyclecloud
from .product import check_own_identity, check_product_rights
from .roles import check_permissions, check_roles, check_vm_identity
from .rotation import check_rotation_journal
from .secret import check_credential, check_secret_in_vault
from .tenant import check_tenant
from .token import check_token

ALL_CHECKS: tuple[Check, ...] = (
    Check("own_identity", "the product's own identity can sign in", check_own_identity),
    Check("secret_in_vault", "the client secret is in Key Vault and well-formed", check_secret_in_vault),
    Check("credential", "which app credential the stored secret is, and its expiry", check_credential),
    Check("token", "Entra ID issues a token for the stored secret", check_token),
    Check("tenant", "each subscription belongs to the target's tenant", check_tenant),
    Check("vm_identity", "the CycleCloud VM's system-assigned identity is on", check_vm_identity),
    Check("roles", "the CycleCloud identity holds its roles on each subscription", check_roles),
    Check("permissions", "the CycleCloud identity's effective permissions cover CycleCloud's actions",
          check_permissions),
    Check("activity_log", "recent failed operations of the CycleCloud identity", check_activity_log),
    Check("cyclecloud", "CycleCloud is reachable and holds the same credential", check_cyclecloud),
    Check("product_rights", "the product's own rights (Graph, Key Vault, ARM)", check_product_rights),
    Check("rotation", "the rotation journal: stopped operations, kept credentials, unconfirmed pushes",
          check_rotation_journal),
    Check("advice", "recommendations", check_managed_identity_advice),
)

CHECK_NAMES: tuple[str, ...] = tuple(c.name for c in ALL_CHECKS)
