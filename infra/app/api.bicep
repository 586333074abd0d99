// The Flex Consumption Function app (Python 3.13) running as the user-assigned identity, with identity-based
// host storage and deployment, Entra-only Application Insights, and optional App Service Authentication.
param name string
param location string
param tags object
param planId string
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
@description('App settings of the product (merged with the host settings below).')
param appSettings object
@description('Client id of the operator app registration; empty: no App Service Authentication.')
param authClientId string = ''
param instanceMemoryMB int = 2048
@description('Upper bound on instances (Flex Consumption: 40 to 1000), so a fan-out cannot flood Graph, ARM or CycleCloud.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Identity-based connections only (the account has shared keys off). Flex Consumption must not get
// FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE or
// SCM_DO_BUILD_DURING_DEPLOYMENT: the runtime comes from functionAppConfig (tests/test_infra.py checks).
var hostSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

// App Service Authentication (Entra) in front of the app: a caller's bearer token, when present, is validated
// and the caller's identity and app roles reach the code (X-MS-CLIENT-PRINCIPAL). Requests without a token
// still pass to the Functions host, where function keys apply, so portal Test/Run and key-holding runbooks
// keep working; REQUIRE_APP_ROLE makes the app demand the operator role on calls that change Azure.
var authSettings = empty(authClientId) ? {} : {
  platform: {
    enabled: true
  }
  globalValidation: {
    requireAuthentication: false
    unauthenticatedClientAction: 'AllowAnonymous'
  }
  httpSettings: {
    requireHttps: true
  }
  identityProviders: {
    azureActiveDirectory: {
      enabled: true
      registration: {
        clientId: authClientId
        openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
      }
      validation: {
        allowedAudiences: [
          'api://${authClientId}'
          authClientId
        ]
      }
    }
  }
  login: {
    tokenStore: {
      enabled: false
    }
  }
}

module site 'br/public:avm/res/web/site:0.15.1' = {
  name: '${name}-site'
  params: {
    enableTelemetry: false // no usage-telemetry deployment for Microsoft
    kind: 'functionapp,linux'
    name: name
    location: location
    // azure.yaml's service is `api`: azd finds the app by this tag
    tags: union(tags, { 'azd-service-name': 'api' })
    serverFarmResourceId: planId
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    managedIdentities: {
      systemAssigned: false
      userAssignedResourceIds: [identityId]
    }
    // Key Vault references in app settings (NOTIFY_WEBHOOK_URL) resolve with the same identity
    keyVaultAccessIdentityResourceId: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
    siteConfig: {
      alwaysOn: false
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      http20Enabled: true
      cors: {
        // the portal's Test/Run calls the app from the browser
        allowedOrigins: ['https://portal.azure.com']
      }
    }
    basicPublishingCredentialsPolicies: [
      { name: 'ftp', allow: false }
      { name: 'scm', allow: false }
    ]
    appSettingsKeyValuePairs: union(appSettings, hostSettings)
    authSettingV2Configuration: authSettings
  }
}

output name string = site.outputs.name
output url string = 'https://${site.outputs.defaultHostname}'
