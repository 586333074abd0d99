// Alerts on what must not go unnoticed: failed rotations, `failing` health results and poison continuations.
// Each rule reads Application Insights (its own table names: customEvents, traces) every 15 minutes and notifies one action group.
// The queries match both the product's custom events and its log lines, so they fire with or without
// OpenTelemetry events enabled.
param location string
param tags object
param resourceToken string
param applicationInsightsId string
param alertEmail string
@secure()
param alertWebhookUrl string = ''
param continuationQueueName string

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-remediator-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'remediator'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: empty(alertWebhookUrl) ? [] : [
      {
        name: 'webhook'
        serviceUri: alertWebhookUrl
        useCommonAlertSchema: true
      }
    ]
  }
}

var rules = [
  {
    name: 'rotation-failed'
    displayName: 'CycleCloud credential rotation failed'
    description: 'A rotation of a CycleCloud client secret failed. Run `validate` on the target named in the results, then follow docs/rotation.md.'
    severity: 1
    query: 'union (customEvents | where name == "RotationFailed"), (traces | where message startswith "rotation of " and message has " failed") | project timestamp, name, message, customDimensions'
  }
  {
    name: 'health-failing'
    displayName: 'CycleCloud credential is failing'
    description: 'The hourly health check found a target `failing`. Run `validate` on it for the findings and the fix.'
    severity: 1
    query: 'union (customEvents | where name == "HealthChecked" and tostring(customDimensions["status"]) == "failing"), (traces | where message startswith "target " and message has " is failing") | project timestamp, name, message, customDimensions'
  }
  {
    name: 'continuation-poison'
    displayName: 'A continuation could not be processed (poison message)'
    description: 'A continuation of a long operation failed five times and went to the poison queue. The journal of the target says where it stopped; call the operation again to resume it.'
    severity: 2
    query: 'union (customEvents | where name == "ContinuationPoisoned"), (traces | where message has "${continuationQueueName}-poison") | project timestamp, name, message, customDimensions'
  }
]

resource queryRules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [
  for rule in rules: {
    name: 'alert-remediator-${rule.name}-${resourceToken}'
    location: location
    tags: tags
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [applicationInsightsId]
      evaluationFrequency: 'PT15M'
      windowSize: 'PT15M'
      autoMitigate: false
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: {
        actionGroups: [actionGroup.id]
      }
    }
  }
]
