#!/usr/bin/env bash
# For an administrator of ANOTHER Entra tenant whose CycleCloud accounts the remediator should look after
# (docs/tenants.md). Run it signed in to that tenant (`az login --tenant <tenant id>`); it gives the remediator's
# multi-tenant app what it needs there, and nothing more:
#
#   1. consent: the app's service principal in this tenant (what the admin consent URL also creates);
#   2. Microsoft Graph Application.ReadWrite.OwnedBy on that service principal (add/remove client secrets, but
#      ONLY on apps it owns);
#   3. that service principal as an owner of each CycleCloud app registration (--app-id, repeatable) and of its
#      service principal, which is what makes OwnedBy reach exactly those apps;
#   4. on each CycleCloud subscription (--subscription, repeatable): Reader, and Role Based Access Control
#      Administrator constrained by the same ABAC condition as the home deployment (only --role role ids, only
#      for service principals; Contributor by default).
#
# Idempotent: every grant is looked up first and only created when missing; running it again changes nothing.
# --offboard removes what it would grant (role assignments, ownerships, the Graph permission, the service
# principal), each only when present; the CycleCloud apps and their secrets are left alone.
#
# Usage:
#   infra/scripts/onboard-tenant.sh --tenant TENANT_ID --product-app CLIENT_ID [--app-id APP_ID ...]
#       [--subscription SUBSCRIPTION_ID ...] [--role ROLE_DEFINITION_ID ...] [--offboard] [--dry-run]
# --product-app is the remediator's multi-tenant app (azd output CROSS_TENANT_APP_ID in the home tenant).
# Needs: az, signed in to TENANT_ID as a Privileged Role Administrator (or Cloud Application Administrator plus
# someone who may grant app roles) who may also assign roles on the subscriptions.
set -euo pipefail

GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"
OWNED_BY="Application.ReadWrite.OwnedBy"
READER="acdd72a7-3385-48ef-bd42-f606fba81ae7"
RBAC_ADMINISTRATOR="f58310d9-a9f6-439a-9e8d-f62e7b41a168"
CONTRIBUTOR="b24988ac-6180-42a0-ab88-20f7382dd24c"
PRIVILEGED=("8e3af657-a8ff-443c-a75c-2fe8c4bcb635" "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9" "$RBAC_ADMINISTRATOR")

tenant=""
product_app=""
apps=()
subscriptions=()
roles=()
offboard=0
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tenant) tenant="$2"; shift 2 ;;
    --product-app) product_app="$2"; shift 2 ;;
    --app-id) apps+=("$2"); shift 2 ;;
    --subscription) subscriptions+=("$2"); shift 2 ;;
    --role) roles+=("$2"); shift 2 ;;
    --offboard) offboard=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$tenant" ] || [ -z "$product_app" ]; then
  echo "--tenant and --product-app are required (see --help)" >&2
  exit 2
fi
[ "${#roles[@]}" -gt 0 ] || roles=("$CONTRIBUTOR")
for role in "${roles[@]}"; do
  for privileged in "${PRIVILEGED[@]}"; do
    if [ "${role,,}" = "$privileged" ]; then
      echo "--role ${role}: a role that can grant any access is never delegated (docs/roles.md)" >&2
      exit 2
    fi
  done
done

signed_in=$(az account show --query tenantId -o tsv)
if [ "${signed_in,,}" != "${tenant,,}" ]; then
  echo "az is signed in to tenant ${signed_in}, not ${tenant}: run az login --tenant ${tenant} --allow-no-subscriptions" >&2
  exit 2
fi

run() {  # a change: printed, and made unless --dry-run
  echo "+ $*"
  if [ "$dry_run" -eq 0 ]; then "$@" >/dev/null; fi
}

graph=$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)
graph="${graph%/}"
graph_sp=$(az ad sp show --id "$GRAPH_APP_ID" --query id -o tsv)
role_id=$(az ad sp show --id "$GRAPH_APP_ID" \
  --query "appRoles[?value=='${OWNED_BY}' && contains(allowedMemberTypes, 'Application')].id | [0]" -o tsv)

sp=$(az ad sp list --filter "appId eq '${product_app}'" --query "[0].id" -o tsv)
if [ "$offboard" -eq 0 ] && [ -z "$sp" ]; then
  run az ad sp create --id "$product_app"
  if [ "$dry_run" -eq 1 ]; then
    echo "(dry run: the other grants go to that service principal; run without --dry-run to make them)"
    exit 0
  fi
  sp=$(az ad sp list --filter "appId eq '${product_app}'" --query "[0].id" -o tsv)
elif [ -n "$sp" ]; then
  echo "= service principal of ${product_app}: ${sp}"
fi
if [ -z "$sp" ]; then
  echo "= no service principal of ${product_app} in ${tenant}: nothing to offboard"
  exit 0
fi

allowed=$(printf '%s, ' "${roles[@]}")
allowed="${allowed%, }"
condition="((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${allowed}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'})) AND ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {${allowed}}))"

for subscription in "${subscriptions[@]+"${subscriptions[@]}"}"; do
  scope="/subscriptions/${subscription}"
  for grant in "$READER" "$RBAC_ADMINISTRATOR"; do
    held=$(az role assignment list --assignee "$sp" --role "$grant" --scope "$scope" --query "length(@)" -o tsv)
    if [ "$offboard" -eq 1 ]; then
      if [ "$held" != "0" ]; then
        run az role assignment delete --assignee "$sp" --role "$grant" --scope "$scope"
      fi
    elif [ "$held" != "0" ]; then
      echo "= role ${grant} on ${scope}: already"
    elif [ "$grant" = "$READER" ]; then
      run az role assignment create --assignee-object-id "$sp" --assignee-principal-type ServicePrincipal \
        --role "$grant" --scope "$scope" --description "cyclecloud-credential-remediator: diagnosis reads"
    else
      run az role assignment create --assignee-object-id "$sp" --assignee-principal-type ServicePrincipal \
        --role "$grant" --scope "$scope" --condition "$condition" --condition-version 2.0 \
        --description "cyclecloud-credential-remediator: repair CycleCloud role assignments (allowed roles only)"
    fi
  done
done

for app in "${apps[@]+"${apps[@]}"}"; do
  owner=$(az ad app owner list --id "$app" --query "length([?id=='${sp}'])" -o tsv)
  if [ "$offboard" -eq 1 ]; then
    [ "$owner" = "0" ] || run az ad app owner remove --id "$app" --owner-object-id "$sp"
  elif [ "$owner" != "0" ]; then
    echo "= owner of app ${app}: already"
  else
    run az ad app owner add --id "$app" --owner-object-id "$sp"
  fi
  app_sp=$(az ad sp show --id "$app" --query id -o tsv)
  owner=$(az rest --method GET --uri "${graph}/v1.0/servicePrincipals/${app_sp}/owners?\$select=id" \
    --query "length(value[?id=='${sp}'])" -o tsv)
  if [ "$offboard" -eq 1 ]; then
    [ "$owner" = "0" ] || run az rest --method DELETE \
      --uri "${graph}/v1.0/servicePrincipals/${app_sp}/owners/${sp}/\$ref"
  elif [ "$owner" != "0" ]; then
    echo "= owner of the service principal of ${app}: already"
  else
    run az rest --method POST --uri "${graph}/v1.0/servicePrincipals/${app_sp}/owners/\$ref" \
      --headers "Content-Type=application/json" --body "{\"@odata.id\": \"${graph}/v1.0/directoryObjects/${sp}\"}"
  fi
done

assignment=$(az rest --method GET --uri "${graph}/v1.0/servicePrincipals/${sp}/appRoleAssignments" \
  --query "value[?appRoleId=='${role_id}' && resourceId=='${graph_sp}'].id | [0]" -o tsv)
if [ "$offboard" -eq 1 ]; then
  if [ -n "$assignment" ]; then
    run az rest --method DELETE --uri "${graph}/v1.0/servicePrincipals/${sp}/appRoleAssignments/${assignment}"
  fi
  run az ad sp delete --id "$sp"
  echo "Offboarded ${tenant}: remove its targets from TARGETS (the product reports tenant.consent_missing otherwise)."
  exit 0
fi
if [ -n "$assignment" ]; then
  echo "= ${OWNED_BY}: already granted"
else
  run az rest --method POST --uri "${graph}/v1.0/servicePrincipals/${sp}/appRoleAssignments" \
    --headers "Content-Type=application/json" \
    --body "{\"principalId\": \"${sp}\", \"resourceId\": \"${graph_sp}\", \"appRoleId\": \"${role_id}\"}"
fi

echo "Done. Set \"identity\": \"${product_app}\" on this tenant's targets, then: python -m shared validate <target>"
