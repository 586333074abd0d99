"""The canonical test world: one healthy CycleCloud target and everything around it.

Tests start from `World().scenario()` (a twin scenario) and `World().env()` (the product's app settings)
and break exactly the thing they are about. Keep ids stable: findings and assertions refer to them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

# Azure's built-in role ids (public constants); the twin's role catalogue is the one list of them.
from tests.twin.state import CONTRIBUTOR as CONTRIBUTOR
from tests.twin.state import OWNER as OWNER
from tests.twin.state import RBAC_ADMINISTRATOR as RBAC_ADMINISTRATOR
from tests.twin.state import READER as READER
from tests.twin.state import USER_ACCESS_ADMINISTRATOR as USER_ACCESS_ADMINISTRATOR

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "11111111-2222-3333-4444-555555555555"
SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
SUBSCRIPTION_2 = "6a8b1c2d-3e4f-4a5b-8c9d-0e1f2a3b4c5d"
APP_ID = "2d4e6f80-1a2b-4c3d-9e8f-a1b2c3d4e5f6"  # the CycleCloud service principal's client id
APP_OBJECT_ID = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
SP_OBJECT_ID = "4c3b2a19-0817-4f6e-9d5c-4b3a29180716"
FUNCTION_OBJECT_ID = "aaaaaaaa-1111-4222-8333-444444444444"  # the product's managed identity
FUNCTION_CLIENT_ID = "bbbbbbbb-1111-4222-8333-444444444444"
VM_PRINCIPAL_ID = "cccccccc-1111-4222-8333-444444444444"  # the CycleCloud VM's system-assigned identity
KEY_ID = "e1d2c3b4-a596-4788-9a0b-1c2d3e4f5a6b"
CURRENT_SECRET = "Abc8Q~current-secret-value-0123456789xyz"
NEW_SECRET = "Nw7Q~brand-new-secret-value-9876543210abc"  # a rotation's new credential (cyclecloud_helpers)
PREVIOUS_SECRET = "Prv8Q~previous-secret-value-still-valid-987"  # an older credential, still valid
PREVIOUS_KEY_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
WRONG_SECRET = "Xyz-wrong-secret-value-42"  # a value Entra ID refuses
VAULT_NAME = "kv-remediator"
VAULT_URL = f"https://{VAULT_NAME}.vault.azure.net"
SECRET_NAME = "cyclecloud-sp-secret"
PENDING = SECRET_NAME + "-pending"  # where a rotation parks the new value before it is pushed
CC_PASSWORD_SECRET = "cyclecloud-admin-password"
CC_PASSWORD = "Cc-admin-password-42!"
CC_USER = "remediator"
CC_HOST = "cyclecloud.contoso.com"
RESOURCE_GROUP = "rg-cyclecloud"
VM_ID = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
         "/providers/Microsoft.Compute/virtualMachines/cyclecloud-vm")
VAULT_RESOURCE_ID = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-remediator"
                     f"/providers/Microsoft.KeyVault/vaults/{VAULT_NAME}")
SUB_SCOPE = f"/subscriptions/{SUBSCRIPTION}"
TARGET = "hpc-prod"
BROKEN_TARGET = "hpc-broken"  # a second target that tests break on purpose
ARM_ENDPOINT = "https://management.azure.com"
ARM_SCOPE = f"{ARM_ENDPOINT}/.default"


def account_record(secret: str = CURRENT_SECRET, *, app_id: str = APP_ID, tenant_id: str = TENANT,
                   subscription_id: str = SUBSCRIPTION, managed_identity: bool = False) -> dict[str, Any]:
    """A CycleCloud account in the shape Microsoft's installers pass to `cyclecloud account create -f`."""
    return {
        "Name": "azure",
        "Provider": "azure",
        "ProviderId": subscription_id,
        "Environment": "public",
        "AzureRMSubscriptionId": subscription_id,
        "AzureRMTenantId": tenant_id,
        "AzureRMApplicationId": "" if managed_identity else app_id,
        "AzureRMApplicationSecret": "" if managed_identity else secret,
        "AzureRMUseManagedIdentity": managed_identity,
        "AzureResourceGroup": RESOURCE_GROUP,
        "Location": "eastus",
        "DefaultAccount": True,
        "RMStorageAccount": "cyclecloudlocker",
        "RMStorageContainer": "cyclecloud",
        "LockerAuthMode": "SharedAccessKey",
        "AcceptMarketplaceTerms": True,
    }


@dataclass
class World:
    secret: str = CURRENT_SECRET
    secret_end: str = "now+200d"
    transport: str = "rest"
    extra_targets: list[dict[str, Any]] = field(default_factory=list)

    def scenario(self) -> dict[str, Any]:
        return copy.deepcopy({
            "tenants": [{"id": TENANT, "domain": "contoso.onmicrosoft.com"},
                        {"id": OTHER_TENANT, "domain": "fabrikam.onmicrosoft.com"}],
            "applications": [{
                "object_id": APP_OBJECT_ID, "app_id": APP_ID, "tenant_id": TENANT, "display_name": "cyclecloud-sp",
                "owners": [FUNCTION_OBJECT_ID],
                "password_credentials": [{"key_id": KEY_ID, "secret": self.secret, "display_name": "initial",
                                          "start": "now-165d", "end": self.secret_end}],
                "service_principal": {"object_id": SP_OBJECT_ID},
            }],
            "principals": [{
                "object_id": FUNCTION_OBJECT_ID, "tenant_id": TENANT, "app_id": FUNCTION_CLIENT_ID,
                "display_name": "func-remediator", "function_identity": True,
                "graph_app_roles": ["Application.ReadWrite.OwnedBy"],
            }],
            "subscriptions": [{"id": SUBSCRIPTION, "tenant_id": TENANT, "display_name": "HPC Production"}],
            "role_assignments": [
                {"scope": f"/subscriptions/{SUBSCRIPTION}", "role": "Contributor", "principal_id": SP_OBJECT_ID,
                 "name": "0d6a3c1e-8b7f-4e2d-9c5a-1f3e5d7b9a01"},
                {"scope": f"/subscriptions/{SUBSCRIPTION}", "role": "Role Based Access Control Administrator",
                 "principal_id": FUNCTION_OBJECT_ID},
                {"scope": f"/subscriptions/{SUBSCRIPTION}", "role": "Reader", "principal_id": FUNCTION_OBJECT_ID},
                {"scope": VAULT_RESOURCE_ID, "role": "Key Vault Secrets Officer", "principal_id": FUNCTION_OBJECT_ID},
                {"scope": VM_ID, "role": "Virtual Machine Contributor", "principal_id": FUNCTION_OBJECT_ID},
            ],
            "virtual_machines": [{"id": VM_ID, "cyclecloud_host": CC_HOST,
                                  "identity": {"principal_id": VM_PRINCIPAL_ID, "tenant_id": TENANT}}],
            "vaults": [{
                "name": VAULT_NAME, "tenant_id": TENANT, "resource_id": VAULT_RESOURCE_ID,
                "secrets": {
                    SECRET_NAME: [{"value": self.secret, "tags": {"keyId": KEY_ID, "appId": APP_ID},
                                   "expires": self.secret_end}],
                    CC_PASSWORD_SECRET: [{"value": CC_PASSWORD}],
                },
            }],
            "cyclecloud_servers": [{
                "host": CC_HOST, "users": [{"name": CC_USER, "password": CC_PASSWORD}],
                "accounts": [account_record(self.secret)],
            }],
        })

    def target(self, ca_bundle: str | None = None) -> dict[str, Any]:
        cyclecloud: dict[str, Any] = {"url": f"https://{CC_HOST}", "account": "azure", "user": CC_USER,
                                      "password_secret": CC_PASSWORD_SECRET, "transport": self.transport}
        if ca_bundle:
            cyclecloud["ca_bundle"] = ca_bundle
        return {
            "name": TARGET, "mode": "service_principal", "tenant_id": TENANT, "app_id": APP_ID,
            "subscription_ids": [SUBSCRIPTION], "secret_name": SECRET_NAME, "cyclecloud": cyclecloud,
            "vm_resource_id": VM_ID,
            "rotation": {"test_successes": 2, "test_timeout_seconds": 20},
        }

    def env(self, ca_bundle: str | None = None, storage: str | None = None) -> dict[str, str]:
        env = {
            "TARGETS": json.dumps([self.target(ca_bundle), *self.extra_targets]),
            "KEY_VAULT_URL": VAULT_URL,
            "AZURE_CLOUD": "AzureCloud",
        }
        if storage:
            env["AzureWebJobsStorage"] = storage
        return env
