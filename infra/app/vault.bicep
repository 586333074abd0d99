// The product's Key Vault: RBAC authorization only (no access policies), soft delete and purge protection
// (a rotated secret can always be recovered, and nobody can destroy it for good before the retention ends).
param name string
param location string
param tags object

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Flex Consumption without a virtual network has no fixed outbound address to allow, so the vault
      // relies on Entra authentication and RBAC; see docs/deploy.md "Network" for the private-endpoint route.
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

output name string = vault.name
output id string = vault.id
// no trailing slash: KEY_VAULT_URL and the Key Vault references append paths to it
output uri string = 'https://${vault.name}${environment().suffixes.keyvaultDns}'
