// What the product's identity may do at ONE target subscription:
// - Reader: read subscriptions, role definitions and assignments, policy assignments, the Activity Log and
//   the effective permissions the diagnosis reports on;
// - Role Based Access Control Administrator, constrained by an ABAC condition: it may create or delete only
//   assignments of the allowed role definitions, and create them only for service principals (CycleCloud's
//   app or the CycleCloud VM's identity). Without the condition this role could grant anything, including
//   Owner: never deploy it unconditioned (tests/test_infra.py fails the build if anyone does).
targetScope = 'subscription'

param identityPrincipalId string
@description('Role definition ids the product may assign (GUIDs); never Owner, User Access Administrator or RBAC Administrator.')
param allowedRoleIds array

var readerRoleId = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
var rbacAdministratorRoleId = 'f58310d9-a9f6-439a-9e8d-f62e7b41a168'
var allowedRoles = join(allowedRoleIds, ', ')

// The documented "constrain roles and principal types" shape: one clause for write (@Request), one for
// delete (@Resource), condition version 2.0.
var constrainedDelegation = '((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/write\'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${allowedRoles}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'})) AND ((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/delete\'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${allowedRoles}}))'

resource reader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, identityPrincipalId, readerRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', readerRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'cyclecloud-credential-remediator: diagnosis reads'
  }
}

resource constrainedRbacAdministrator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(allowedRoleIds)) {
  name: guid(subscription().id, identityPrincipalId, rbacAdministratorRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', rbacAdministratorRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    description: 'cyclecloud-credential-remediator: repair CycleCloud role assignments (allowed roles only)'
    condition: constrainedDelegation
    conditionVersion: '2.0'
  }
}
