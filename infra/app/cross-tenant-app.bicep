// The product's multi-tenant app registration, for targets in other Entra tenants (docs/tenants.md), through the
// Microsoft Graph Bicep extension. Deployed only with enableCrossTenant=true: the deployer must be allowed to create
// app registrations (Application Developer or Cloud Application Administrator in the home tenant).
//
// Its only credential is a federated identity credential that trusts the Function's managed identity: the product
// signs in to another tenant as this app with the identity's token for api://AzureADTokenExchange as the client
// assertion, so there is no secret of the product's own to store or rotate. It declares one application
// permission, Microsoft Graph Application.ReadWrite.OwnedBy, which each other tenant's admin consents to
// (infra/scripts/onboard-tenant.sh); it is granted nowhere by this template.
extension microsoftGraphV1

@description('Object (principal) id of the Function\'s user-assigned managed identity: the federated credential\'s subject.')
param identityPrincipalId string

@description('Immutable key of the app registration in the home tenant (idempotent redeployments).')
param uniqueName string

param displayName string = 'CycleCloud Credential Remediator (multi-tenant)'

// Microsoft Graph's well-known application id and the id of its Application.ReadWrite.OwnedBy app role.
var msGraphAppId = '00000003-0000-0000-c000-000000000000'
var ownedByRoleId = '18a4783c-866b-4cc7-a460-3d5e5662c884'

resource crossTenantApp 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMultipleOrgs'
  requiredResourceAccess: [
    {
      resourceAppId: msGraphAppId
      resourceAccess: [
        {
          id: ownedByRoleId
          type: 'Role'
        }
      ]
    }
  ]

  resource managedIdentityTrust 'federatedIdentityCredentials@v1.0' = {
    name: '${crossTenantApp.uniqueName}/function-managed-identity'
    description: 'The Function app managed identity signs in as this app (workload identity federation)'
    audiences: [
      'api://AzureADTokenExchange'
    ]
    issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
    subject: identityPrincipalId
  }
}

// The multi-tenant app's service principal in the home tenant (admin consent in other tenants creates theirs).
resource homeServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: crossTenantApp.appId
}

output appId string = crossTenantApp.appId
