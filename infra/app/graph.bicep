// Microsoft Graph application permissions for the product's identity, through the Microsoft Graph Bicep
// extension (infra/bicepconfig.json). Deployed only with grantGraphPermissions=true, because the deployer needs
// Privileged Role Administrator (AppRoleAssignment.ReadWrite.All + Application.Read.All). Everyone else: the
// Entra admin runs infra/scripts/grant-graph-permissions.sh, which also makes the identity an owner of each
// CycleCloud app registration (Application.ReadWrite.OwnedBy only reaches apps the identity owns).
extension microsoftGraphV1

param identityPrincipalId string

// Microsoft Graph's well-known application id.
resource msGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

// addPassword / removePassword / read passwordCredentials on the CycleCloud apps it owns, and nothing else.
resource ownedBy 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: identityPrincipalId
  resourceId: msGraph.id
  appRoleId: filter(msGraph.appRoles, role => role.value == 'Application.ReadWrite.OwnedBy')[0].id
}

// Read app management policies, to clamp a new secret's lifetime to the tenant's maximum (read-only).
resource policyRead 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: identityPrincipalId
  resourceId: msGraph.id
  appRoleId: filter(msGraph.appRoles, role => role.value == 'Policy.Read.ApplicationConfiguration')[0].id
}
