// The whole deployment of the CycleCloud Credential Remediator (`azd up`): a Flex Consumption Function app on
// Python 3.13 that runs as ONE user-assigned managed identity, with exactly the grants listed in
// docs/deploy.md ("What the identity may do, and why"). Nothing here grants Owner, User Access Administrator or
// an unconditioned Role Based Access Control Administrator: tests/test_infra.py checks that.
targetScope = 'subscription'

// -- environment (azd) ------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('azd environment name; used for the resource group name and the unique resource token.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the person running azd (AZURE_PRINCIPAL_ID). Gets Key Vault Secrets Officer on the vault so they can store the CycleCloud secrets. Empty: no access for people.')
param operatorPrincipalId string = ''

@description('Give operatorPrincipalId Key Vault Secrets Officer on the vault (to store the first secrets). Turn off once they are stored.')
param operatorVaultAccess bool = true

@description('Principal type of operatorPrincipalId: User (azd up from a laptop) or ServicePrincipal (a pipeline).')
@allowed(['User', 'ServicePrincipal', 'Group'])
param operatorPrincipalType string = 'User'

@description('Resource group name; default rg-<environmentName>.')
param resourceGroupName string = ''

// -- what the product looks after -------------------------------------------------------------------------

@description('The TARGETS setting: a list of targets exactly as in README "Configuration reference" (no secret values, only Key Vault secret names). azd: azd env set TARGETS_JSON \'[...]\'.')
param targets array = []

@description('Role definition ids (GUIDs) the product may assign, the ABAC allowlist of its Role Based Access Control Administrator grant. Empty: every GUID in the targets\' roles (default Contributor). Name a custom role by its GUID here when a target names it by display name.')
param assignableRoleIds array = []

@description('Azure cloud of the targets and the vault: AzureCloud, AzureUSGovernment or AzureChinaCloud.')
@allowed(['AzureCloud', 'AzureUSGovernment', 'AzureChinaCloud'])
param azureCloud string = 'AzureCloud'

@description('NCRONTAB (seconds first, UTC: Flex Consumption has no time zones) of the rotation timer.')
param rotationSchedule string = '0 0 3 * * *'

@description('NCRONTAB of the hourly health check.')
param healthSchedule string = '0 0 * * * *'

@description('Let the health timer remediate what it finds (AUTO_REMEDIATE).')
param autoRemediate bool = false

@description('Targets handled at once by the timers (MAX_CONCURRENCY).')
@minValue(1)
@maxValue(32)
param maxConcurrency int = 4

@description('Upper bound on Function instances (Flex Consumption allows 40 to 1000), so a fan-out cannot flood Graph, ARM or CycleCloud.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Blob container for rotation journals, leases and health records (STATE_CONTAINER).')
param stateContainerName string = 'remediator'

@description('Storage queue for continuations of long operations (CONTINUATION_QUEUE).')
param continuationQueueName string = 'remediator-continuations'

@description('Seconds an HTTP call works before it answers 202 and continues through the queue (HTTP_BUDGET_SECONDS; the front end cuts calls at 230 s).')
@minValue(5)
@maxValue(200)
param httpBudgetSeconds int = 30

@description('First delay of a queued continuation, doubling up to 300 s (CONTINUATION_BACKOFF_SECONDS).')
@minValue(1)
@maxValue(300)
param continuationBackoffSeconds int = 30

@description('Require the operator app role CredentialRemediator.Operate on calls that change Azure (REQUIRE_APP_ROLE). Needs authClientId: without App Service Authentication nobody could hold the role.')
param requireAppRole bool = false

@description('Name of a Key Vault secret (in the product\'s vault) holding a Teams workflow or Slack webhook URL for notifications. Empty: no notifications.')
param notifyWebhookSecretName string = ''

@description('Payload format of notifications (NOTIFY_FORMAT).')
@allowed(['teams', 'slack'])
param notifyFormat string = 'teams'

@description('Send the Python worker\'s logs and OpenTelemetry data to Application Insights (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY).')
param pythonTelemetry bool = true

// -- optional parts ---------------------------------------------------------------------------------------

@description('More CycleCloud VM resource ids that need Run Command (the VMs of targets with the runcommand transport are found in the targets already). Each gets a Run Command-only custom role for the identity, on that VM alone.')
param runCommandVmResourceIds array = []

@description('Grant Microsoft Graph Application.ReadWrite.OwnedBy (and Policy.Read.ApplicationConfiguration) to the identity with the Graph Bicep extension. Needs a deployer with Privileged Role Administrator; otherwise leave false and run infra/scripts/grant-graph-permissions.sh as the Entra admin.')
param grantGraphPermissions bool = false

@description('Create the product\'s multi-tenant app registration, whose only credential is a federated identity credential trusting the managed identity, for targets in other Entra tenants (docs/tenants.md). Needs a deployer who may create app registrations; each other tenant then runs infra/scripts/onboard-tenant.sh.')
param enableCrossTenant bool = false

@description('Client id of the Entra app registration that fronts the app (App Service Authentication), created by infra/scripts/create-operator-app.sh. Empty: function keys only.')
param authClientId string = ''

@description('Mail address that receives alerts. Empty: no action group and no alerts.')
param alertEmail string = ''

@description('Optional webhook (e.g. an incident tool) the action group also calls.')
@secure()
param alertWebhookUrl string = ''

// -- names ------------------------------------------------------------------------------------------------

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}remediator-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 12)}'
var contributorRoleId = 'b24988ac-6180-42a0-ab88-20f7382dd24c'

// Subscriptions the product diagnoses and repairs, and the roles it may assign there (from the targets).
var targetSubscriptionIds = union(map(flatten(map(targets, t => t.subscription_ids)), s => toLower(s)), [])
var targetRoleIds = union(flatten(map(targets, t => t.?roles ?? [contributorRoleId])), [])
var requestedRoleIds = empty(assignableRoleIds) ? targetRoleIds : assignableRoleIds
// Privileged roles never enter the allowlist, whatever a target says: Owner, User Access Administrator,
// Role Based Access Control Administrator (granting these would let the product grant anything).
var privilegedRoleIds = [
  '8e3af657-a8ff-443c-a75c-2fe8c4bcb635'
  '18d7d88d-d35e-4fb5-a5c3-7773c20a72d9'
  'f58310d9-a9f6-439a-9e8d-f62e7b41a168'
]
var allowedRoleIds = filter(map(requestedRoleIds, r => toLower(r)), r => !contains(privilegedRoleIds, r))
// Run Command only where the runcommand transport is used, on exactly those VMs.
var runCommandTargets = filter(targets, t => (t.?cyclecloud.?transport ?? 'rest') == 'runcommand')
var runCommandVmIds = union(map(runCommandTargets, t => t.vm_resource_id), runCommandVmResourceIds)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

// -- the identity: used for everything (host storage, deployment package, Key Vault, Graph, ARM) ----------

module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.4.1' = {
  name: 'identity'
  scope: rg
  params: {
    enableTelemetry: false // no usage-telemetry deployment for Microsoft
    name: '${abbrs.managedIdentityUserAssignedIdentities}remediator-${resourceToken}'
    location: location
    tags: tags
  }
}

// -- storage: host state, the deployment package, journals and continuations (no shared keys) -------------

module storage 'br/public:avm/res/storage/storage-account:0.8.3' = {
  name: 'storage'
  scope: rg
  params: {
    enableTelemetry: false // no usage-telemetry deployment for Microsoft
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    skuName: 'Standard_LRS'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    blobServices: {
      deleteRetentionPolicyEnabled: true
      deleteRetentionPolicyDays: 7
      containers: [
        { name: deploymentContainerName }
        { name: stateContainerName }
      ]
    }
    queueServices: {
      queues: [
        { name: continuationQueueName }
      ]
    }
  }
}

// -- monitoring: Log Analytics + Application Insights with Entra-only ingestion ---------------------------

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.7.0' = {
  name: 'logAnalytics'
  scope: rg
  params: {
    enableTelemetry: false // no usage-telemetry deployment for Microsoft
    name: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    location: location
    tags: tags
    dataRetention: 30
  }
}

module appInsights 'br/public:avm/res/insights/component:0.4.1' = {
  name: 'appInsights'
  scope: rg
  params: {
    enableTelemetry: false // no usage-telemetry deployment for Microsoft
    name: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    disableLocalAuth: true
  }
}

// -- Key Vault: RBAC mode, soft delete, purge protection ---------------------------------------------------

module vault 'app/vault.bicep' = {
  name: 'vault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${take(resourceToken, 19)}'
    location: location
    tags: tags
  }
}

// -- the Function app -------------------------------------------------------------------------------------

module plan 'br/public:avm/res/web/serverfarm:0.1.1' = {
  name: 'plan'
  scope: rg
  params: {
    enableTelemetry: false // no usage-telemetry deployment for Microsoft
    name: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    sku: {
      name: 'FC1'
      tier: 'FlexConsumption'
    }
    reserved: true
  }
}

// a Key Vault reference: the URL itself is a secret (anyone holding it can post to the channel)
var notifyWebhookReference = empty(notifyWebhookSecretName) ? '' : '@Microsoft.KeyVault(SecretUri=${vault.outputs.uri}/secrets/${notifyWebhookSecretName})'

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: tags
    planId: plan.outputs.resourceId
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: appInsights.outputs.name
    authClientId: authClientId
    maximumInstanceCount: maximumInstanceCount
    appSettings: {
      // every setting shared/config.py reads (tests/test_infra.py cross-checks the list)
      AZURE_CLIENT_ID: identity.outputs.clientId
      AZURE_CLOUD: azureCloud
      KEY_VAULT_URL: vault.outputs.uri
      TARGETS: string(targets)
      ROTATION_SCHEDULE: rotationSchedule
      HEALTH_SCHEDULE: healthSchedule
      AUTO_REMEDIATE: toLower(string(autoRemediate))
      MAX_CONCURRENCY: string(maxConcurrency)
      // each instance takes this share of the per-service limits (shared/limits.py)
      MAXIMUM_INSTANCE_COUNT: string(maximumInstanceCount)
      STATE_CONTAINER: stateContainerName
      CONTINUATION_QUEUE: continuationQueueName
      HTTP_BUDGET_SECONDS: string(httpBudgetSeconds)
      CONTINUATION_BACKOFF_SECONDS: string(continuationBackoffSeconds)
      REQUIRE_APP_ROLE: toLower(string(requireAppRole))
      NOTIFY_WEBHOOK_URL: notifyWebhookReference
      NOTIFY_FORMAT: notifyFormat
      // the managed identity's tenant: a target elsewhere without the multi-tenant app is "not onboarded", not "gone"
      HOME_TENANT_ID: tenant().tenantId
      PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: toLower(string(pythonTelemetry))
      // every span is kept (a few per target per hour); the distro's default rate-limited sampler drops some
      OTEL_TRACES_SAMPLER: 'microsoft.fixed_percentage'
      OTEL_TRACES_SAMPLER_ARG: '1.0'
    }
  }
}

// -- grants in the product's resource group ---------------------------------------------------------------

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    identityPrincipalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: appInsights.outputs.name
    vaultName: vault.outputs.name
    operatorPrincipalId: operatorVaultAccess ? operatorPrincipalId : ''
    operatorPrincipalType: operatorPrincipalType
  }
}

// -- grants at each target subscription: Reader + RBAC Administrator constrained by an ABAC condition --------

module targetAccess 'app/target-access.bicep' = [
  for subscriptionId in targetSubscriptionIds: {
    name: 'target-access-${take(uniqueString(subscriptionId, environmentName), 8)}'
    scope: subscription(subscriptionId)
    params: {
      identityPrincipalId: identity.outputs.principalId
      allowedRoleIds: allowedRoleIds
    }
  }
]

// -- Run Command on the CycleCloud VMs that need it, on each VM alone --------------------------------------

// one at a time: VMs in one subscription share the custom role definition
@batchSize(1)
module vmAccess 'app/vm-access.bicep' = [
  for vmId in runCommandVmIds: {
    name: 'vm-access-${take(uniqueString(vmId), 8)}'
    scope: subscription(split(vmId, '/')[2])
    params: {
      identityPrincipalId: identity.outputs.principalId
      vmResourceGroupName: split(vmId, '/')[4]
      vmName: last(split(vmId, '/'))
      readOperationStatus: !contains(targetSubscriptionIds, toLower(split(vmId, '/')[2]))
    }
  }
]

// -- Microsoft Graph (off by default: needs an Entra admin) -----------------------------------------------

module graph 'app/graph.bicep' = if (grantGraphPermissions) {
  name: 'graph'
  scope: rg
  params: {
    identityPrincipalId: identity.outputs.principalId
  }
}

// -- targets in other tenants (off by default: needs a deployer who may create app registrations) ------------

module crossTenantApp 'app/cross-tenant-app.bicep' = if (enableCrossTenant) {
  name: 'cross-tenant-app'
  scope: rg
  params: {
    identityPrincipalId: identity.outputs.principalId
    uniqueName: 'remediator-${resourceToken}'
  }
}

// -- alerts -----------------------------------------------------------------------------------------------

module alerts 'app/alerts.bicep' = if (!empty(alertEmail)) {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    applicationInsightsId: appInsights.outputs.resourceId
    alertEmail: alertEmail
    alertWebhookUrl: alertWebhookUrl
    continuationQueueName: continuationQueueName
  }
}

// -- outputs (azd stores them in .azure/<env>/.env; the scripts read them) --------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = api.outputs.name
output AZURE_FUNCTION_URL string = api.outputs.url
output AZURE_KEY_VAULT_NAME string = vault.outputs.name
output AZURE_KEY_VAULT_URI string = vault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output ALLOWED_ROLE_IDS array = allowedRoleIds
// the client id a target in another tenant names as its `identity` (empty without enableCrossTenant)
output CROSS_TENANT_APP_ID string = enableCrossTenant ? crossTenantApp.outputs.appId : ''

