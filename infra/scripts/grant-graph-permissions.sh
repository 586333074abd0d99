#!/usr/bin/env bash
# For the Entra admin (Privileged Role Administrator, or Cloud Application Administrator + an admin who can
# consent app roles): gives the remediator's managed identity what it needs in Microsoft Graph, and nothing more.
#
#   1. Microsoft Graph application permissions on the identity:
#        Application.ReadWrite.OwnedBy        add/remove client secrets, but ONLY on apps the identity owns
#        Policy.Read.ApplicationConfiguration read app management policies (clamp a new secret's lifetime)
#   2. The identity as an owner of each CycleCloud app registration (--app-id, repeatable) and of its service
#      principal, which is what makes OwnedBy reach that app. Nothing else becomes reachable.
#
# Idempotent: every grant is looked up first and only created when missing; running it again changes nothing.
#
# Usage:
#   infra/scripts/grant-graph-permissions.sh [--identity-object-id ID] [--app-id APP_ID ...] [--dry-run]
# Without --identity-object-id it reads AZURE_IDENTITY_PRINCIPAL_ID from the azd environment (`azd env get-values`).
# Needs: az (logged in to the tenant with `az login`).
set -euo pipefail

GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"
PERMISSIONS=("Application.ReadWrite.OwnedBy" "Policy.Read.ApplicationConfiguration")

identity=""
apps=()
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --identity-object-id) identity="$2"; shift 2 ;;
    --app-id) apps+=("$2"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$identity" ] && command -v azd >/dev/null 2>&1; then
  identity=$(azd env get-values 2>/dev/null | sed -n 's/^AZURE_IDENTITY_PRINCIPAL_ID="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p')
fi
if [ -z "$identity" ]; then
  echo "No identity: pass --identity-object-id (the Object (principal) ID of the remediator's managed identity," >&2
  echo "azd output AZURE_IDENTITY_PRINCIPAL_ID)." >&2
  exit 2
fi

run() {  # a change: printed, and made unless --dry-run
  echo "+ $*"
  if [ "$dry_run" -eq 0 ]; then "$@" >/dev/null; fi
}

# Graph's endpoint in this cloud (https://graph.microsoft.com/ in the public cloud), without the trailing slash
graph=$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)
graph="${graph%/}"
graph_sp=$(az ad sp show --id "$GRAPH_APP_ID" --query id -o tsv)

for permission in "${PERMISSIONS[@]}"; do
  role_id=$(az ad sp show --id "$GRAPH_APP_ID" \
    --query "appRoles[?value=='${permission}' && contains(allowedMemberTypes, 'Application')].id | [0]" -o tsv)
  if [ -z "$role_id" ]; then
    echo "Microsoft Graph has no application permission named ${permission} in this cloud" >&2
    exit 1
  fi
  held=$(az rest --method GET --uri "${graph}/v1.0/servicePrincipals/${identity}/appRoleAssignments" \
    --query "length(value[?appRoleId=='${role_id}' && resourceId=='${graph_sp}'])" -o tsv)
  if [ "$held" != "0" ]; then
    echo "= ${permission}: already granted"
  else
    run az rest --method POST --uri "${graph}/v1.0/servicePrincipals/${identity}/appRoleAssignments" \
      --headers "Content-Type=application/json" \
      --body "{\"principalId\": \"${identity}\", \"resourceId\": \"${graph_sp}\", \"appRoleId\": \"${role_id}\"}"
  fi
done

for app in "${apps[@]+"${apps[@]}"}"; do
  owner=$(az ad app owner list --id "$app" --query "length([?id=='${identity}'])" -o tsv)
  if [ "$owner" != "0" ]; then
    echo "= owner of app ${app}: already"
  else
    run az ad app owner add --id "$app" --owner-object-id "$identity"
  fi
  # ... and of its service principal (a separate object): OwnedBy reads only the objects the identity owns, and
  # the product looks the service principal up to repair its role assignments.
  sp=$(az ad sp show --id "$app" --query id -o tsv)
  owner=$(az rest --method GET --uri "${graph}/v1.0/servicePrincipals/${sp}/owners?\$select=id" \
    --query "length(value[?id=='${identity}'])" -o tsv)
  if [ "$owner" != "0" ]; then
    echo "= owner of the service principal of ${app}: already"
  else
    run az rest --method POST --uri "${graph}/v1.0/servicePrincipals/${sp}/owners/\$ref" \
      --headers "Content-Type=application/json" --body "{\"@odata.id\": \"${graph}/v1.0/directoryObjects/${identity}\"}"
  fi
done

echo "Done. The platform caches managed identity tokens (up to 24 h): a token issued before this grant still lacks"
echo "the new permission until it expires. \`validate\` shows function.permission_missing until then."
