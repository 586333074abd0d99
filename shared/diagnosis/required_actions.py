"""The ARM actions CycleCloud calls on its subscription, as concrete actions that can be tested one by one.

Taken from the least-privilege role in Microsoft's CycleCloud documentation (`includes/custom-role.json`,
included by how-to/managed-identities.md): one concrete action for each line of its `actions`, so an effective
permission set (built-in role, custom role, inherited assignment, deny assignment) can be checked action by
action. The first entry is the seed's failure: `Microsoft.Storage/storageAccounts/read`.

Left out on purpose: the `Microsoft.Authorization/roleAssignments/*` and `roleDefinitions/*` write actions
(only needed when CycleCloud assigns managed identities to nodes; the built-in Contributor, which Microsoft
also documents for CycleCloud, excludes them) and the blob data actions (locker access in the newer variant).
"""

from __future__ import annotations

REQUIRED_ACTIONS: tuple[str, ...] = (
    # storage: the locker account (the seed's "does not have authorization ... storageAccounts/read")
    "Microsoft.Storage/storageAccounts/read",
    "Microsoft.Storage/storageAccounts/write",
    "Microsoft.Storage/storageAccounts/listKeys/action",
    "Microsoft.Storage/checknameavailability/read",
    # compute: the nodes
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Compute/virtualMachines/delete",
    "Microsoft.Compute/virtualMachineScaleSets/write",
    "Microsoft.Compute/virtualMachineScaleSets/delete",
    "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/write",
    "Microsoft.Compute/disks/write",
    "Microsoft.Compute/disks/delete",
    "Microsoft.Compute/availabilitySets/write",
    "Microsoft.Compute/skus/read",
    "Microsoft.Compute/locations/usages/read",
    "Microsoft.Compute/images/read",
    # network: NICs, NSGs, public IPs, subnets
    "Microsoft.Network/virtualNetworks/read",
    "Microsoft.Network/virtualNetworks/subnets/read",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
    "Microsoft.Network/networkInterfaces/write",
    "Microsoft.Network/networkInterfaces/delete",
    "Microsoft.Network/networkInterfaces/join/action",
    "Microsoft.Network/networkSecurityGroups/write",
    "Microsoft.Network/networkSecurityGroups/join/action",
    "Microsoft.Network/publicIPAddresses/write",
    "Microsoft.Network/publicIPAddresses/join/action",
    # resource groups and deployments
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Resources/subscriptions/resourceGroups/write",
    "Microsoft.Resources/subscriptions/resourceGroups/delete",
    "Microsoft.Resources/deployments/read",
    "Microsoft.Resources/subscriptions/resourceGroups/resources/read",
    # marketplace images and pricing
    "Microsoft.MarketplaceOrdering/offertypes/publishers/offers/plans/agreements/read",
    "Microsoft.MarketplaceOrdering/offertypes/publishers/offers/plans/agreements/write",
    "Microsoft.Commerce/RateCard/read",
    "Microsoft.Authorization/roleAssignments/read",
)

# What the product itself needs on each target subscription (to diagnose, and to repair roles).
PRODUCT_ACTIONS_READ: tuple[str, ...] = (
    "Microsoft.Authorization/roleAssignments/read",
    "Microsoft.Authorization/policyAssignments/read",
    "Microsoft.Insights/eventtypes/values/read",
)
PRODUCT_ACTION_ASSIGN = "Microsoft.Authorization/roleAssignments/write"
PRODUCT_ACTIONS_RUNCOMMAND: tuple[str, ...] = (
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/virtualMachines/runCommands/write",
)
