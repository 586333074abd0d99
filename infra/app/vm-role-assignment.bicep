// Assigns the Run Command role on one VM (the assignment's scope is the VM resource itself).
param identityPrincipalId string
param vmName string
param roleDefinitionId string

resource vm 'Microsoft.Compute/virtualMachines@2024-07-01' existing = {
  name: vmName
}

resource runCommand 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vm.id, identityPrincipalId, roleDefinitionId)
  scope: vm
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}
