// Run Command on ONE CycleCloud VM (the `runcommand` transport, and the VM's identity in managed-identity
// mode), deployed at the VM's subscription. A custom role carries only what the code calls
// (shared/adapters/compute.py): read the VM, and create, read and delete its managed Run Commands. It is
// assigned on the VM alone, not its resource group, so no other VM is reachable. Virtual Machine Contributor
// would also work but adds delete, resize and extensions on the VM.
targetScope = 'subscription'

param identityPrincipalId string
param vmResourceGroupName string
param vmName string
@description('Also grant reading Compute operation status at this subscription (Run Command is a long-running operation). Not needed where the identity is already Reader (a target subscription).')
param readOperationStatus bool

var runCommandRoleName = guid(subscription().id, 'cyclecloud-credential-remediator', 'run-command')
var operationStatusRoleName = guid(subscription().id, 'cyclecloud-credential-remediator', 'compute-operation-status')

resource runCommandRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: runCommandRoleName
  properties: {
    roleName: 'CycleCloud Credential Remediator Run Command (${subscription().subscriptionId})'
    description: 'Read a VM and manage its Run Commands; assigned on single CycleCloud VMs only.'
    type: 'CustomRole'
    assignableScopes: [subscription().id]
    permissions: [
      {
        actions: [
          'Microsoft.Compute/virtualMachines/read'
          'Microsoft.Compute/virtualMachines/runCommands/read'
          'Microsoft.Compute/virtualMachines/runCommands/write'
          'Microsoft.Compute/virtualMachines/runCommands/delete'
        ]
        notActions: []
      }
    ]
  }
}

resource operationStatusRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (readOperationStatus) {
  name: operationStatusRoleName
  properties: {
    roleName: 'CycleCloud Credential Remediator Compute operation status (${subscription().subscriptionId})'
    description: 'Poll the status of Compute long-running operations (nothing else).'
    type: 'CustomRole'
    assignableScopes: [subscription().id]
    permissions: [
      {
        actions: ['Microsoft.Compute/locations/operations/read']
        notActions: []
      }
    ]
  }
}

resource operationStatus 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (readOperationStatus) {
  name: guid(subscription().id, identityPrincipalId, operationStatusRoleName)
  properties: {
    roleDefinitionId: operationStatusRole.id
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

module onVm 'vm-role-assignment.bicep' = {
  name: 'run-command-${take(uniqueString(vmResourceGroupName, vmName), 8)}'
  scope: resourceGroup(vmResourceGroupName)
  params: {
    identityPrincipalId: identityPrincipalId
    vmName: vmName
    roleDefinitionId: runCommandRole.id
  }
}
