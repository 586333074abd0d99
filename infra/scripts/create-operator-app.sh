#!/usr/bin/env bash
# For the Entra admin (Application Administrator or Cloud Application Administrator): the app registration that
# App Service Authentication puts in front of the remediator, so runbooks and people can call it with their own
# Entra identity (a managed identity, a user) instead of, or besides, a function key.
#
#   - an app registration "<name>" with Application ID URI api://<appId> (the token audience);
#   - an app role CredentialRemediator.Operate (members: applications and users), which the app requires on
#     calls that change Azure when REQUIRE_APP_ROLE=true;
#   - its service principal, with "assignment required" on, so only principals given the role get tokens;
#   - the role for each --operator (object id of a runbook's managed identity, a user or a group; repeatable).
#
# Idempotent: the app is found by display name; the role and each assignment are created only when missing.
# Then: azd env set AUTH_CLIENT_ID <appId printed below>; azd env set REQUIRE_APP_ROLE true; azd provision
#
# Usage: infra/scripts/create-operator-app.sh [--name NAME] [--operator OBJECT_ID ...] [--dry-run]
set -euo pipefail

ROLE_VALUE="CredentialRemediator.Operate"
name="cyclecloud-credential-remediator-operators"
operators=()
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --operator) operators+=("$2"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

run() {  # a change: printed, and made unless --dry-run
  echo "+ $*"
  if [ "$dry_run" -eq 0 ]; then "$@" >/dev/null; fi
}

graph=$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)
graph="${graph%/}"

app_id=$(az ad app list --display-name "$name" --query "[0].appId" -o tsv)
if [ -z "$app_id" ]; then
  run az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg
  [ "$dry_run" -eq 1 ] && { echo "(dry run: stopping before the app exists)"; exit 0; }
  app_id=$(az ad app list --display-name "$name" --query "[0].appId" -o tsv)
else
  echo "= app registration ${name}: ${app_id}"
fi
app_object_id=$(az ad app show --id "$app_id" --query id -o tsv)

uri=$(az ad app show --id "$app_id" --query "identifierUris[?@=='api://${app_id}'] | [0]" -o tsv)
[ -n "$uri" ] || run az ad app update --id "$app_id" --identifier-uris "api://${app_id}"

role_id=$(az ad app show --id "$app_id" --query "appRoles[?value=='${ROLE_VALUE}'].id | [0]" -o tsv)
if [ -z "$role_id" ]; then
  role_id=$(python3 -c 'import uuid; print(uuid.uuid4())')
  roles=$(az ad app show --id "$app_id" --query appRoles -o json)
  new_role="{\"id\": \"${role_id}\", \"value\": \"${ROLE_VALUE}\", \"displayName\": \"Operate the CycleCloud Credential Remediator\", \"description\": \"Validate, rotate, repair roles and remediate CycleCloud credentials.\", \"allowedMemberTypes\": [\"Application\", \"User\"], \"isEnabled\": true}"
  body=$(python3 -c 'import json,sys; roles=json.loads(sys.argv[1]); roles.append(json.loads(sys.argv[2])); print(json.dumps({"appRoles": roles}))' "$roles" "$new_role")
  run az rest --method PATCH --uri "${graph}/v1.0/applications/${app_object_id}" \
    --headers "Content-Type=application/json" --body "$body"
else
  echo "= app role ${ROLE_VALUE}: ${role_id}"
fi

sp_id=$(az ad sp list --filter "appId eq '${app_id}'" --query "[0].id" -o tsv)
if [ -z "$sp_id" ]; then
  run az ad sp create --id "$app_id"
  sp_id=$(az ad sp list --filter "appId eq '${app_id}'" --query "[0].id" -o tsv)
fi
required=$(az ad sp show --id "$sp_id" --query appRoleAssignmentRequired -o tsv)
[ "$required" = "true" ] || run az ad sp update --id "$sp_id" --set appRoleAssignmentRequired=true

for operator in "${operators[@]+"${operators[@]}"}"; do
  held=$(az rest --method GET --uri "${graph}/v1.0/servicePrincipals/${sp_id}/appRoleAssignedTo" \
    --query "length(value[?principalId=='${operator}' && appRoleId=='${role_id}'])" -o tsv)
  if [ "$held" != "0" ]; then
    echo "= ${operator} holds ${ROLE_VALUE}"
  else
    run az rest --method POST --uri "${graph}/v1.0/servicePrincipals/${sp_id}/appRoleAssignedTo" \
      --headers "Content-Type=application/json" \
      --body "{\"principalId\": \"${operator}\", \"resourceId\": \"${sp_id}\", \"appRoleId\": \"${role_id}\"}"
  fi
done

echo "AUTH_CLIENT_ID=${app_id}"
echo "Next: azd env set AUTH_CLIENT_ID ${app_id} && azd env set REQUIRE_APP_ROLE true && azd provision"
echo "Callers ask for a token for api://${app_id} (az account get-access-token --resource api://${app_id})."
