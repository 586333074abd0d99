"""The api-versions ARM accepts on each route the twin serves, and ARM's answer to any other.

ARM routes a request to a resource provider by (namespace, resource type, api-version): a version the
provider's manifest does not list never reaches the provider. Azure answers, depending on who owns the type:

- ARM's own types (Microsoft.Resources: subscriptions): **400 `InvalidApiVersionParameter`** "The api-version
  '<v>' is invalid. The supported versions are '<v1>,<v2>,...'." (Azure/azure-sdk-for-net#2276,
  hashicorp/vault-plugin-secrets-azure#13, ansible-collections/azure#1739, pulumi/pulumi-azure-native#3637);
- location-less provider types (Microsoft.Authorization, Microsoft.Insights event types): **404
  `InvalidResourceType`** "The resource type '<type>' could not be found in the namespace '<ns>' for api version
  '<v>'. The supported api-versions are '<v1>,<v2>,...'." (Azure/azure-sdk-for-go#16699,
  Azure/azure-rest-api-specs#14807 (a 404), JulianHayward/Azure-MG-Sub-Governance-Reporting#297 (404));
- regional resources (Microsoft.Compute virtual machines and run commands): **400 `NoRegisteredProviderFound`**
  "No registered resource provider found for location '<location>' and API version '<v>' for type '<type>'. The
  supported api-versions are '<v1>, <v2>'. The supported locations are '<l1>, <l2>'." (Azure/azure-cli#28496,
  pulumi/pulumi-azure-nextgen#170);
- no api-version at all: **400 `MissingApiVersionParameter`** "The api-version query parameter (?api-version=)
  is required for all requests."

The accepted lists: what the SDK versions we pin send (azure-mgmt-authorization 4.0.0 `DEFAULT_API_VERSION`
2022-04-01; azure-mgmt-resource-subscriptions 1.0.0 `2022-12-01`; azure-mgmt-compute 39.0.0 `2026-04-01`, its
`api_versions_list` metadata for the VM family; shared/adapters/rbac.py's raw reads) and the other versions
those packages know for the operation group (`_authorization_management_client.py`), plus the lists Azure
itself printed in the threads above. Newest first, as Azure prints them. A scenario can narrow a route's list
(`arm_api_versions`: operation -> versions) to model a sovereign cloud that lags behind public cloud.
"""

from __future__ import annotations

from dataclasses import dataclass

# Microsoft.Resources (subscriptions): Azure's own list in ansible-collections/azure#1739 (2024), trimmed at 2016
RESOURCES = (
    "2024-08-01", "2024-06-01-preview", "2024-03-01", "2023-07-01", "2023-07-01-preview", "2023-03-01-preview",
    "2022-12-01", "2022-11-01-preview", "2022-09-01", "2022-06-01", "2022-05-01", "2022-03-01-preview",
    "2022-01-01", "2021-04-01", "2021-01-01", "2020-10-01", "2020-09-01", "2020-08-01", "2020-07-01",
    "2020-06-01", "2020-05-01", "2020-01-01", "2019-11-01", "2019-10-01", "2019-09-01", "2019-08-01",
    "2019-07-01", "2019-06-01", "2019-05-10", "2019-05-01", "2019-03-01", "2018-11-01", "2018-09-01",
    "2018-08-01", "2018-07-01", "2018-06-01", "2018-05-01", "2018-02-01", "2018-01-01", "2017-12-01",
    "2017-08-01", "2017-06-01", "2017-05-10", "2017-05-01", "2017-03-01", "2016-09-01", "2016-07-01",
    "2016-06-01", "2016-02-01", "2015-11-01", "2015-01-01",
)
# roleAssignments: Azure's list in MicrosoftDocs/azure-docs#82469 (2021) + 2022-04-01 (stable spec, SDK default)
ROLE_ASSIGNMENTS = (
    "2022-04-01", "2021-04-01-preview", "2020-08-01-preview", "2020-04-01-preview", "2020-03-01-preview",
    "2019-04-01-preview", "2018-12-01-preview", "2018-09-01-preview", "2018-07-01", "2018-01-01-preview",
    "2017-10-01-preview", "2017-09-01", "2017-05-01", "2016-07-01", "2015-07-01", "2015-06-01",
    "2015-05-01-preview", "2014-10-01-preview", "2014-07-01-preview", "2014-04-01-preview",
)
# roleDefinitions and permissions: the versions azure-mgmt-authorization 4.0.0 maps these groups to
ROLE_DEFINITIONS = ("2022-05-01-preview", "2022-04-01", "2018-01-01-preview", "2015-07-01")
PERMISSIONS = ("2022-05-01-preview", "2022-04-01", "2018-01-01-preview", "2015-07-01")
# policyAssignments: stable versions in azure-rest-api-specs Microsoft.Authorization/stable (policy)
POLICY_ASSIGNMENTS = (
    "2024-05-01", "2024-04-01", "2023-04-01", "2022-06-01", "2021-06-01", "2020-09-01", "2019-09-01",
    "2019-06-01", "2019-01-01", "2018-05-01", "2018-03-01", "2016-12-01", "2016-04-01",
)
# Activity Log: Microsoft.Insights eventtypes/management/values has one version (specification/monitor
# .../stable/2015-04-01/activityLogs_API.json)
ACTIVITY_LOG = ("2015-04-01",)
# Microsoft.Compute VM family: azure-mgmt-compute 39.0.0 api_versions_list + older ComputeRP stable folders
COMPUTE = (
    "2026-04-01", "2026-03-01", "2025-11-01", "2025-04-01", "2024-11-01", "2024-07-01", "2024-03-01",
    "2023-09-01", "2023-07-01", "2023-03-01", "2022-11-01", "2022-08-01",
)
COMPUTE_LOCATIONS = ("eastus", "eastus2", "westus2", "westeurope", "northeurope", "southcentralus", "uksouth")


@dataclass(frozen=True)
class ApiVersions:
    kind: str  # "resources" | "type" | "regional"
    namespace: str
    resource_type: str
    versions: tuple[str, ...]


ACCEPTED: dict[str, ApiVersions] = {
    "listSubscriptions": ApiVersions("resources", "Microsoft.Resources", "subscriptions", RESOURCES),
    "getSubscription": ApiVersions("resources", "Microsoft.Resources", "subscriptions", RESOURCES),
    "listPermissions": ApiVersions("type", "Microsoft.Authorization", "permissions", PERMISSIONS),
    "listPolicyAssignments": ApiVersions("type", "Microsoft.Authorization", "policyAssignments",
                                         POLICY_ASSIGNMENTS),
    "listActivityLog": ApiVersions("type", "Microsoft.Insights", "eventtypes", ACTIVITY_LOG),
    "getRoleDefinition": ApiVersions("type", "Microsoft.Authorization", "roleDefinitions", ROLE_DEFINITIONS),
    "listRoleDefinitions": ApiVersions("type", "Microsoft.Authorization", "roleDefinitions", ROLE_DEFINITIONS),
    "createRoleAssignment": ApiVersions("type", "Microsoft.Authorization", "roleAssignments", ROLE_ASSIGNMENTS),
    "getRoleAssignment": ApiVersions("type", "Microsoft.Authorization", "roleAssignments", ROLE_ASSIGNMENTS),
    "deleteRoleAssignment": ApiVersions("type", "Microsoft.Authorization", "roleAssignments", ROLE_ASSIGNMENTS),
    "listRoleAssignments": ApiVersions("type", "Microsoft.Authorization", "roleAssignments", ROLE_ASSIGNMENTS),
    "getVirtualMachine": ApiVersions("regional", "Microsoft.Compute", "virtualMachines", COMPUTE),
    "updateVirtualMachine": ApiVersions("regional", "Microsoft.Compute", "virtualMachines", COMPUTE),
    "createRunCommand": ApiVersions("regional", "Microsoft.Compute", "virtualMachines/runCommands", COMPUTE),
    "getRunCommand": ApiVersions("regional", "Microsoft.Compute", "virtualMachines/runCommands", COMPUTE),
    "deleteRunCommand": ApiVersions("regional", "Microsoft.Compute", "virtualMachines/runCommands", COMPUTE),
    "getComputeOperation": ApiVersions("regional", "Microsoft.Compute", "locations/operations", COMPUTE),
}


def api_version_error(operation: str, api_version: str | None, *, location: str = "eastus",
                      narrowed: dict[str, list[str]] | None = None) -> tuple[int, dict[str, str]] | None:
    """(status, ARM error) when `api_version` is not accepted on the route, else None."""
    accepted = ACCEPTED.get(operation)
    if accepted is None:
        return None
    if not api_version:
        return 400, {"code": "MissingApiVersionParameter",
                     "message": "The api-version query parameter (?api-version=) is required for all requests."}
    versions = tuple(narrowed[operation]) if narrowed and operation in narrowed else accepted.versions
    if api_version in versions:
        return None
    if accepted.kind == "resources":
        return 400, {"code": "InvalidApiVersionParameter",
                     "message": f"The api-version '{api_version}' is invalid. The supported versions are "
                                f"'{','.join(versions)}'."}
    if accepted.kind == "type":
        return 404, {"code": "InvalidResourceType",
                     "message": f"The resource type '{accepted.resource_type}' could not be found in the namespace "
                                f"'{accepted.namespace}' for api version '{api_version}'. The supported "
                                f"api-versions are '{','.join(versions)}'."}
    return 400, {"code": "NoRegisteredProviderFound",
                 "message": f"No registered resource provider found for location '{location}' and API version "
                            f"'{api_version}' for type '{accepted.resource_type}'. The supported api-versions are "
                            f"'{', '.join(versions)}'. The supported locations are "
                            f"'{', '.join(COMPUTE_LOCATIONS)}'."}
