"""The catalog of diagnosis findings: every problem `validate` can report, with a stable code.

Each entry says, for a newcomer, what is wrong in one sentence, how a person fixes it (the Azure portal path
and the equivalent CLI or API call), and whether `remediate` can fix it on its own (and with which action).
Codes are part of the product's contract (reports, alerts, runbooks match on them): never rename one; add a
new code instead.

A `Finding` is one occurrence: the catalog entry plus a sentence about this target (`detail`), the evidence a
support case needs (AADSTS code, trace and correlation ids, the failing action and scope, ...) and the
remediation steps with the target's own ids filled in.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """`error` makes a target `failing`, `warning` makes it `degraded`, `info` is advice."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class FixAction(StrEnum):
    """What `remediate` does for a fixable finding (the remediation engine dispatches on these)."""

    ROTATE = "rotate"  # create a new client secret, store it in Key Vault, push it to CycleCloud
    RECONCILE_ROLES = "reconcile_roles"  # create the configured role assignments that are missing
    PUSH_TO_CYCLECLOUD = "push_to_cyclecloud"  # give CycleCloud the secret Key Vault holds
    STORE_TRIMMED_SECRET = "store_trimmed_secret"  # noqa: S105 - an action name; store the value without whitespace, then push it


@dataclass(frozen=True)
class RemediationStep:
    """One thing a person does, by hand in the portal or with the CLI/API."""

    action: str
    portal: str
    cli: str

    def render(self, params: Mapping[str, object]) -> RemediationStep:
        return RemediationStep(_fill(self.action, params), _fill(self.portal, params), _fill(self.cli, params))

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "portal": self.portal, "cli": self.cli}


@dataclass(frozen=True)
class FindingSpec:
    code: str
    severity: Severity
    title: str
    summary: str  # one sentence a newcomer understands
    steps: tuple[RemediationStep, ...]
    fix_action: FixAction | None = None  # set when `remediate` fixes it
    remediate_how: str | None = None

    @property
    def fixable_by_remediate(self) -> bool:
        return self.fix_action is not None


class _Blank(dict[str, object]):
    """str.format_map helper: unknown placeholders stay readable as <name>."""

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


def _fill(text: str, params: Mapping[str, object]) -> str:
    names = {name for _, name, _, _ in string.Formatter().parse(text) if name}
    if not names:
        return text.replace("{{", "{").replace("}}", "}")
    return text.format_map(_Blank({k: v for k, v in params.items() if v is not None}))


_APP_SECRETS = "Microsoft Entra ID > App registrations > (app {app_id}) > Certificates & secrets > Client secrets"
_CC_CREDENTIALS = "CycleCloud > Configure > Cloud Provider Accounts > {account} > Credentials > Edit"
_SUB_IAM = "Subscriptions > (subscription {subscription_id}) > Access control (IAM)"
_ROTATE = ("remediate rotates the secret: it creates a new client secret on the app, stores it in Key Vault, "
           "pushes it to CycleCloud, checks it works, then retires the old one after the grace period.")
_NEW_SECRET_STEPS = (
    RemediationStep(
        "Create a new client secret and copy its Value (not its Secret ID).",
        f"{_APP_SECRETS} > New client secret",
        "az ad app credential reset --id {app_id} --append --display-name cyclecloud --years 1",
    ),
    RemediationStep(
        "Store the new value in Key Vault.",
        "Key vaults > {vault_name} > Objects > Secrets > {secret_name} > New Version",
        "az keyvault secret set --vault-name {vault_name} --name {secret_name} --file <file-with-the-value>",
    ),
    RemediationStep(
        "Give CycleCloud the same value, then Validate and Save.",
        f"{_CC_CREDENTIALS} > Application Secret",
        "cyclecloud account edit {account} -f <account.json>",
    ),
)

_CATALOG: tuple[FindingSpec, ...] = (
    # -- the client secret ------------------------------------------------------------------------------
    FindingSpec(
        "secret.expired", Severity.ERROR, "Client secret expired (AADSTS7000222)",
        "The client secret CycleCloud signs in with has passed its expiry date, so Entra ID refuses every "
        "sign-in and CycleCloud cannot create or delete VMs.",
        _NEW_SECRET_STEPS, FixAction.ROTATE, _ROTATE,
    ),
    FindingSpec(
        "secret.expiring_soon", Severity.WARNING, "Client secret expires soon",
        "The client secret still works but expires within the rotation window, after which CycleCloud stops "
        "working.",
        _NEW_SECRET_STEPS, FixAction.ROTATE, _ROTATE,
    ),
    FindingSpec(
        "secret.invalid", Severity.ERROR, "Client secret not accepted (AADSTS7000215)",
        "Entra ID does not recognise the stored client secret: it is mistyped, truncated, belongs to another "
        "app, or its credential was deleted from the app.",
        _NEW_SECRET_STEPS, FixAction.ROTATE, _ROTATE,
    ),
    FindingSpec(
        "secret.whitespace", Severity.ERROR, "Spaces or line breaks around the secret",
        "The stored secret has whitespace before or after it (a copy-paste accident), which Entra ID rejects "
        "as an invalid secret.",
        (
            RemediationStep(
                "Store the value again without leading or trailing spaces or line breaks.",
                "Key vaults > {vault_name} > Objects > Secrets > {secret_name} > New Version (paste, then check "
                "the ends of the value)",
                "az keyvault secret set --vault-name {vault_name} --name {secret_name} --file <file-without-"
                "trailing-newline>",
            ),
            RemediationStep("Paste the trimmed value into CycleCloud, then Validate and Save.",
                            f"{_CC_CREDENTIALS} > Application Secret",
                            "cyclecloud account edit {account} -f <account.json>"),
        ),
        FixAction.STORE_TRIMMED_SECRET,
        "remediate stores the trimmed value as a new Key Vault version and pushes it to CycleCloud.",
    ),
    FindingSpec(
        "secret.looks_like_secret_id", Severity.ERROR, "The Secret ID was stored instead of the secret Value",
        "What is stored is a GUID (the client secret's Secret ID shown next to it in the portal), not the "
        "secret Value, so Entra ID rejects it.",
        _NEW_SECRET_STEPS, FixAction.ROTATE,
        "remediate rotates: the value of an existing secret cannot be shown again, so a new one is created. "
        + _ROTATE,
    ),
    FindingSpec(
        "secret.unknown_credential", Severity.ERROR, "Stored secret matches none of the app's credentials",
        "The secret in Key Vault does not belong to any client secret the app registration still has (it was "
        "deleted, or the secret belongs to another app).",
        _NEW_SECRET_STEPS, FixAction.ROTATE, _ROTATE,
    ),
    FindingSpec(
        "secret.missing_in_vault", Severity.ERROR, "No secret in Key Vault",
        "The Key Vault secret that should hold CycleCloud's client secret does not exist (or is disabled or "
        "deleted), so nothing can check, rotate or restore it.",
        _NEW_SECRET_STEPS, FixAction.ROTATE,
        "remediate creates a new client secret, stores it under the configured name and pushes it to CycleCloud.",
    ),
    # -- the app registration and the tenant --------------------------------------------------------------
    FindingSpec(
        "app.not_found_in_tenant", Severity.ERROR, "Application not found in the tenant (AADSTS700016)",
        "No app registration with the configured Application (client) ID exists in the configured tenant, so "
        "the app id or the tenant id is wrong, or the app was deleted.",
        (
            RemediationStep(
                "Find the app and compare its Application (client) ID and Directory (tenant) ID with the target's "
                "app_id and tenant_id.",
                "Microsoft Entra ID > App registrations > All applications > search {app_id} > Overview",
                "az ad app show --id {app_id} --query \"{{appId:appId, tenant:publisherDomain}}\"",
            ),
            RemediationStep(
                "If the app exists but has no service principal in this tenant, create it.",
                "Microsoft Entra ID > Enterprise applications > search {app_id}",
                "az ad sp create --id {app_id}",
            ),
        ),
    ),
    FindingSpec(
        "app.disabled", Severity.ERROR, "Application disabled (AADSTS7000112)",
        "The app's service principal is disabled in this tenant, so nobody can sign in as it.",
        (RemediationStep(
            "Enable sign-in for the service principal.",
            "Microsoft Entra ID > Enterprise applications > (app {app_id}) > Properties > Enabled for users to "
            "sign-in = Yes",
            "az ad sp update --id {app_id} --set accountEnabled=true",
        ),),
    ),
    FindingSpec(
        "tenant.not_found", Severity.ERROR, "Tenant not found (AADSTS90002)",
        "Entra ID does not know the configured tenant id, so it is mistyped or belongs to another Azure cloud "
        "(Government, China).",
        (RemediationStep(
            "Copy the Directory (tenant) ID from the app registration and set it as the target's tenant_id "
            "(and AZURE_CLOUD if the tenant lives in another cloud).",
            "Microsoft Entra ID > Overview > Tenant ID",
            "az account show --query tenantId",
        ),),
    ),
    FindingSpec(
        "tenant.mismatch", Severity.ERROR, "Subscription belongs to another tenant",
        "The subscription CycleCloud deploys into belongs to a different Microsoft Entra tenant than the "
        "service principal, so role assignments made for the principal have no effect there.",
        (RemediationStep(
            "Compare the subscription's Directory with the app registration's Directory (tenant) ID; use a "
            "service principal from the subscription's tenant, or move the subscription.",
            "Subscriptions > (subscription {subscription_id}) > Overview > Directory",
            "az account show --subscription {subscription_id} --query tenantId",
        ),),
    ),
    # -- targets in other tenants (docs/tenants.md) -------------------------------------------------------
    FindingSpec(
        "tenant.not_onboarded", Severity.ERROR, "Target in a tenant where the product has no identity",
        "The target's app registration is in another Microsoft Entra tenant than the product's managed identity, "
        "and the target uses the home identity, so the product cannot see the app there (the app is not gone).",
        (
            RemediationStep(
                "Have an administrator of tenant {tenant_id} consent to the product's multi-tenant app and make it "
                "an owner of app {app_id} (docs/tenants.md).",
                "Open {consent_url} as a Global or Privileged Role Administrator of tenant {tenant_id} and accept",
                "infra/scripts/onboard-tenant.sh --tenant {tenant_id} --product-app <multi-tenant app client id> "
                "--app {app_id} --subscription {subscription_id}",
            ),
            RemediationStep(
                "Set the target's identity to the multi-tenant app's client id, then validate again.",
                "Function App > Settings > Environment variables > TARGETS > target {target}: \"identity\": "
                "\"<multi-tenant app client id>\"",
                "python -m shared validate {target}",
            ),
        ),
    ),
    FindingSpec(
        "tenant.consent_missing", Severity.ERROR, "Tenant has not consented to the product's app",
        "The product signs in to the target's tenant as its multi-tenant app, but that tenant has no service "
        "principal for it (no admin consent), so Entra ID refuses the sign-in (AADSTS700016, 7000229 or 65001).",
        (
            RemediationStep(
                "An administrator of tenant {tenant_id} grants admin consent to the product's app {identity_app_id} "
                "(this creates its service principal and grants Application.ReadWrite.OwnedBy).",
                "{consent_url}",
                "{az_consent}",
            ),
            RemediationStep(
                "Make the product's service principal an owner of the CycleCloud app registration {app_id}.",
                "Microsoft Entra ID (tenant {tenant_id}) > App registrations > (app {app_id}) > Owners > Add owners "
                "> the product's app",
                "{az_owner}",
            ),
        ),
    ),
    FindingSpec(
        "tenant.federation_mismatch", Severity.ERROR, "The product's app does not trust its managed identity",
        "The product's multi-tenant app signs in with its managed identity's token as a client assertion, but no "
        "federated identity credential on the app matches that token (issuer, subject or audience), so Entra ID "
        "refuses every cross-tenant sign-in.",
        (RemediationStep(
            "In the home tenant, add a federated identity credential to app {identity_app_id}: issuer "
            "https://login.microsoftonline.com/{home_tenant_id}/v2.0, subject = the managed identity's object id, "
            "audience api://AzureADTokenExchange (or redeploy with the Bicep's enableCrossTenant parameter).",
            "Microsoft Entra ID > App registrations > (app {identity_app_id}) > Certificates & secrets > Federated "
            "credentials > Add credential > Managed identity",
            "az ad app federated-credential create --id {identity_app_id} --parameters '{{\"name\": "
            "\"remediator-mi\", \"issuer\": \"https://login.microsoftonline.com/{home_tenant_id}/v2.0\", "
            "\"subject\": \"<managed identity object id>\", \"audiences\": [\"api://AzureADTokenExchange\"]}}'",
        ),),
    ),
    FindingSpec(
        "tenant.app_access_missing", Severity.ERROR, "The product's app may not manage the app in that tenant",
        "The product signs in to the target's tenant, but Microsoft Graph there refuses it the app registration: "
        "its service principal lacks the Application.ReadWrite.OwnedBy permission (admin consent) or is not an "
        "owner of the app.",
        (
            RemediationStep(
                "An administrator of tenant {tenant_id} grants admin consent to the product's app {identity_app_id}.",
                "{consent_url}",
                "{az_consent}",
            ),
            RemediationStep(
                "Make the product's service principal an owner of app {app_id}.",
                "Microsoft Entra ID (tenant {tenant_id}) > App registrations > (app {app_id}) > Owners > Add owners "
                "> the product's app",
                "{az_owner}",
            ),
        ),
    ),
    FindingSpec(
        "entra.sign_in_refused", Severity.ERROR, "Entra ID refused the sign-in",
        "Entra ID refused the service principal's sign-in for a reason other than the secret itself (see the "
        "AADSTS code and its explanation in the evidence).",
        (RemediationStep(
            "Open the failed sign-in with its correlation id and follow the explanation.",
            "Microsoft Entra ID > Monitoring > Sign-in logs > Service principal sign-ins > filter by "
            "correlation id",
            "az rest --url \"https://graph.microsoft.com/v1.0/auditLogs/signIns?$filter=correlationId eq "
            "'<correlation-id>'\"",
        ),),
    ),
    FindingSpec(
        "entra.unknown_error", Severity.ERROR, "Unrecognised Entra ID error",
        "Entra ID refused the sign-in with an error code this product does not know; its own description and "
        "the error-lookup link are in the evidence.",
        (RemediationStep(
            "Look the code up and open the failed sign-in with its correlation id.",
            "https://login.microsoftonline.com/error?code=<code>; Microsoft Entra ID > Monitoring > Sign-in logs",
            "az rest --url \"https://graph.microsoft.com/v1.0/auditLogs/signIns?$filter=correlationId eq "
            "'<correlation-id>'\"",
        ),),
    ),
    # -- roles and permissions ----------------------------------------------------------------------------
    FindingSpec(
        "role.missing", Severity.ERROR, "Required role not assigned",
        "The CycleCloud identity does not hold the role CycleCloud needs on the subscription, so CycleCloud's "
        "calls fail with 'does not have authorization to perform action'.",
        (RemediationStep(
            "Assign the role to the CycleCloud identity at the subscription (needs Owner, User Access "
            "Administrator or Role Based Access Control Administrator; Contributor is not enough).",
            f"{_SUB_IAM} > Add > Add role assignment > {{role}} > Members: {{principal_id}}",
            "az role assignment create --assignee-object-id {principal_id} --assignee-principal-type "
            "ServicePrincipal --role \"{role}\" --scope /subscriptions/{subscription_id}",
        ),),
        FixAction.RECONCILE_ROLES,
        "remediate creates the missing assignment (labelled as managed by this product) and checks it took effect.",
    ),
    FindingSpec(
        "role.insufficient", Severity.ERROR, "Effective permissions lack actions CycleCloud needs",
        "The CycleCloud identity holds its configured roles, yet its effective permissions on the subscription "
        "(after deny assignments and notActions) still lack actions CycleCloud calls, such as "
        "Microsoft.Storage/storageAccounts/read.",
        (
            RemediationStep(
                "Find the deny assignment (or the notActions of a held role) that removes the listed actions and ask "
                "its owner to exclude the CycleCloud identity.",
                f"{_SUB_IAM} > Deny assignments",
                "az rest --url https://management.azure.com/subscriptions/{subscription_id}/providers/"
                "Microsoft.Authorization/denyAssignments?api-version=2022-04-01",
            ),
            RemediationStep(
                "Check what the identity may really do there (the same list CycleCloud gets).",
                f"{_SUB_IAM} > Check access > {{principal_id}}",
                "az rest --url https://management.azure.com/subscriptions/{subscription_id}/providers/"
                "Microsoft.Authorization/permissions?api-version=2022-04-01 (signed in as the CycleCloud identity)",
            ),
        ),
    ),
    FindingSpec(
        "role.custom_role_incomplete", Severity.ERROR, "The custom role lacks actions CycleCloud needs",
        "The CycleCloud identity holds its configured custom role, but that role's definition does not include "
        "every action CycleCloud calls, so CycleCloud fails with 'does not have authorization to perform action'.",
        (
            RemediationStep(
                "Add the missing action(s) {missing_actions} to the custom role '{role}' (assigning Contributor "
                "instead would undo the least-privilege choice).",
                "Subscriptions > (subscription {subscription_id}) > Access control (IAM) > Roles > {role} > Edit > "
                "Permissions > Add permissions: {missing_actions} > Review + update",
                "az role definition list --name \"{role}\" --scope /subscriptions/{subscription_id} --query \"[0]\" "
                "-o json | jq '.permissions[0].actions += {missing_actions_json}' > role.json && "
                "az role definition update --role-definition role.json",
            ),
            RemediationStep(
                "Role changes take a few minutes to take effect; then validate again.",
                "CycleCloud > Configure > Cloud Provider Accounts > {account} > Credentials > Edit > Validate",
                "python -m shared validate {target}",
            ),
        ),
    ),
    FindingSpec(
        "role.propagating", Severity.ERROR, "Role assignment not in effect yet",
        "The CycleCloud identity's role assignment exists, but Azure does not apply it yet (new assignments take "
        "one to two minutes, sometimes up to ten), so CycleCloud's calls still fail until it does.",
        (RemediationStep(
            "Wait until the time given in the evidence (check_again_at), then validate again; nothing needs to be "
            "changed.",
            "CycleCloud > Configure > Cloud Provider Accounts > {account} > Credentials > Edit > Validate "
            "(after check_again_at)",
            "python -m shared validate {target}",
        ),),
    ),
    FindingSpec(
        "role.policy_denied", Severity.ERROR, "Azure Policy denies the role assignment",
        "An Azure Policy assignment on the subscription denies the role assignment CycleCloud needs, so "
        "assigning it fails (or was silently refused).",
        (RemediationStep(
            "Ask the policy owner for an exemption for the CycleCloud identity, or assign an allowed role.",
            "Policy > Assignments > {policy_assignment} > Create exemption; Policy > Compliance",
            "az policy exemption create --name cyclecloud-role --policy-assignment {policy_assignment_id} "
            "--exemption-category Waiver --scope /subscriptions/{subscription_id}",
        ),),
    ),
    FindingSpec(
        "activity.failed_operations", Severity.WARNING, "Recent failed operations in the Activity Log",
        "The Activity Log shows operations by the CycleCloud identity that Azure refused recently; each entry "
        "names the exact action and resource.",
        (RemediationStep(
            "Open the failed operations (newer than the last role or secret change) and fix what they name.",
            "Subscriptions > (subscription {subscription_id}) > Activity log > Status: Failed > Event initiated "
            "by: {activity_caller}",
            "az monitor activity-log list --subscription {subscription_id} --caller {activity_caller} --status "
            "Failed --start-time {activity_since}",
        ),),
    ),
    FindingSpec(
        "policy.denied_resource", Severity.ERROR, "Azure Policy denied a resource CycleCloud creates",
        "An Azure Policy assignment denied a resource CycleCloud tried to create (a VM, disk, NIC, public IP...), "
        "so the cluster cannot grow until the policy allows it or the cluster asks for something the policy "
        "permits.",
        (
            RemediationStep(
                "Option 1: ask the policy's owner for an exemption covering CycleCloud's resource group.",
                "Policy > Assignments > {policy_assignment} > Create exemption > Scope: {exemption_scope}",
                "az policy exemption create --name cyclecloud-{target} --policy-assignment {policy_assignment_id} "
                "--exemption-category Waiver --scope {exemption_scope}",
            ),
            RemediationStep(
                "Option 2: change the cluster's parameters (VM size, region, image, public IP, tags) to what the "
                "policy allows.",
                "Policy > Assignments > {policy_assignment} > Parameters (what is allowed); then CycleCloud > "
                "Clusters > (cluster) > Edit",
                "az policy assignment show --name {policy_assignment_name} --scope {policy_assignment_scope} "
                "--query parameters",
            ),
        ),
    ),
    FindingSpec(
        "subscription.not_found", Severity.ERROR, "Subscription not found (SubscriptionNotFound)",
        "Azure Resource Manager does not know the configured subscription id (usually a typo, or a subscription "
        "of another tenant or cloud), so nothing can be checked or deployed there.",
        (
            RemediationStep(
                "Find the id of the subscription CycleCloud deploys into and put it in the target's "
                "subscription_ids (and CycleCloud's account).",
                "Subscriptions (switch to All directories) > the subscription > Overview > Subscription ID",
                "az account list --all --query \"[].{{name:name, id:id, tenant:tenantId, state:state}}\" -o table",
            ),
        ),
    ),
    FindingSpec(
        "subscription.disabled", Severity.ERROR, "Subscription not active",
        "The subscription CycleCloud deploys into is not in the Enabled state (disabled, past due or deleted), "
        "so Azure refuses to create resources in it.",
        (RemediationStep(
            "Reactivate the subscription (billing) or move the target to an active subscription.",
            "Subscriptions > (subscription {subscription_id}) > Overview > Status",
            "az account show --subscription {subscription_id} --query state",
        ),),
    ),
    # -- managed identity mode ----------------------------------------------------------------------------
    FindingSpec(
        "identity.disabled", Severity.ERROR, "CycleCloud VM has no managed identity",
        "The CycleCloud VM's system-assigned managed identity is off, so CycleCloud configured for managed "
        "identity cannot sign in at all.",
        (
            RemediationStep("Turn the system-assigned identity on.",
                            "Virtual machines > {vm_name} > Settings > Identity > System assigned > Status: On > Save",
                            "az vm identity assign --ids {vm_id}"),
            RemediationStep("Then give it its role at the subscription (see identity.role_missing).",
                            "Virtual machines > {vm_name} > Identity > Azure role assignments > Add role assignment",
                            "az role assignment create --assignee-object-id $(az vm show --ids {vm_id} --query "
                            "identity.principalId -o tsv) --assignee-principal-type ServicePrincipal --role "
                            "\"{role}\" --scope /subscriptions/{subscription_id}"),
        ),
    ),
    FindingSpec(
        "identity.role_missing", Severity.ERROR, "CycleCloud VM identity lacks its role",
        "The CycleCloud VM's managed identity is on but does not hold the role CycleCloud needs on the "
        "subscription.",
        (RemediationStep(
            "Assign the role to the VM's identity at the subscription.",
            "Virtual machines > {vm_name} > Identity > Azure role assignments > Add role assignment > Scope: "
            "Subscription > Role: {role}",
            "az role assignment create --assignee-object-id {principal_id} --assignee-principal-type "
            "ServicePrincipal --role \"{role}\" --scope /subscriptions/{subscription_id}",
        ),),
        FixAction.RECONCILE_ROLES,
        "remediate assigns the role to the VM's identity and checks it took effect.",
    ),
    # -- CycleCloud ---------------------------------------------------------------------------------------
    FindingSpec(
        "cyclecloud.unreachable", Severity.WARNING, "CycleCloud cannot be reached",
        "The product cannot reach the CycleCloud server (network, DNS, TLS certificate or the server is down), "
        "so it can neither check nor update CycleCloud's credential.",
        (RemediationStep(
            "Check the URL, that the server runs, that this host may reach it on HTTPS and that the CA bundle "
            "signs its certificate.",
            "Virtual machines > {vm_name} > Overview (Status) and Networking",
            "curl --cacert <ca-bundle> -sS -o /dev/null -w '%{{http_code}}' {cyclecloud_url}/",
        ),),
    ),
    FindingSpec(
        "cyclecloud.login_failed", Severity.WARNING, "CycleCloud refused the product's login",
        "CycleCloud rejected the user name or password the product signs in with (or locked the user after "
        "failed logins), so the product cannot update CycleCloud.",
        (RemediationStep(
            "Reset the CycleCloud user's password and store it in Key Vault under the configured name.",
            "CycleCloud > Admin > Users > {cyclecloud_user} > Edit; Key vaults > {vault_name} > Secrets > "
            "{password_secret}",
            "az keyvault secret set --vault-name {vault_name} --name {password_secret} --file <password-file>",
        ),),
    ),
    FindingSpec(
        "cyclecloud.account_missing", Severity.ERROR, "CycleCloud has no such cloud provider account",
        "CycleCloud has no cloud provider account with the configured name, so clusters have no Azure "
        "credential to use.",
        (RemediationStep(
            "Create the account, or set the target's cyclecloud.account to the name CycleCloud shows.",
            "CycleCloud > Configure > Cloud Provider Accounts",
            "cyclecloud account list; cyclecloud account create -f <account.json>",
        ),),
    ),
    FindingSpec(
        "cyclecloud.out_of_sync", Severity.ERROR, "CycleCloud holds a different credential than Key Vault",
        "CycleCloud's account uses a different client secret (or app, or tenant) than the one in Key Vault, "
        "so CycleCloud breaks when the secret it holds expires or is removed.",
        (RemediationStep(
            "Paste the Key Vault secret into CycleCloud, then Validate and Save.",
            f"{_CC_CREDENTIALS} > Application Secret",
            "az keyvault secret show --vault-name {vault_name} --name {secret_name} --query value -o tsv > <file>; "
            "cyclecloud account edit {account} -f <account.json>",
        ),),
        FixAction.PUSH_TO_CYCLECLOUD,
        "remediate pushes the Key Vault secret to CycleCloud and reads it back to verify.",
    ),
    FindingSpec(
        "cyclecloud.identity_mismatch", Severity.ERROR, "CycleCloud's account names another app or tenant",
        "CycleCloud's account signs in as a different application or tenant than the target is configured "
        "for, so one of the two is wrong and pushing a secret cannot reconcile them.",
        (
            RemediationStep(
                "Compare the app registration's Application (client) ID and Directory (tenant) ID with both; "
                "correct the target's app_id/tenant_id, or CycleCloud's account, whichever is wrong.",
                f"Microsoft Entra ID > App registrations > (app {{app_id}}) > Overview; {_CC_CREDENTIALS}",
                "az ad sp show --id {app_id} --query \"{{appId:appId, tenant:appOwnerOrganizationId}}\"",
            ),
        ),
    ),
    FindingSpec(
        "cyclecloud.update_unsupported", Severity.WARNING, "CycleCloud does not accept the product's updates",
        "CycleCloud answers, but not on the credential update path the product is configured to use, so "
        "rotation could not give CycleCloud a new secret.",
        (RemediationStep(
            "Run the probe, then set the target's cyclecloud.credential_path/credential_method to what the server "
            "accepts, or switch to the runcommand transport (Run Command on the CycleCloud VM).",
            "Function App > Functions > cyclecloud_probe > Test/Run",
            "python -m shared cyclecloud probe {target}",
        ),),
    ),
    # -- the product itself -------------------------------------------------------------------------------
    FindingSpec(
        "function.permission_missing", Severity.WARNING, "The product lacks a permission it needs",
        "The product's own identity lacks a right it needs to rotate or repair this target, so those fixes "
        "would fail until it is granted.",
        (RemediationStep(
            "Grant the product's identity the role or permission named in the evidence.",
            "{grant_portal}",
            "{grant_cli}",
        ),),
    ),
    FindingSpec(
        "function.cyclecloud_password_unreadable", Severity.WARNING,
        "The product cannot read the CycleCloud password from Key Vault",
        "The product could not read its CycleCloud user's password from Key Vault (its own identity or rights "
        "are the problem, or the secret is missing), so it never contacted CycleCloud's login and cannot update "
        "CycleCloud.",
        (RemediationStep(
            "Give the product's identity read access to the secret (or create the secret with the CycleCloud "
            "user's password).",
            "{grant_portal}",
            "{grant_cli}",
        ),),
    ),
    FindingSpec(
        "function.identity_unavailable", Severity.ERROR, "The product's own identity cannot sign in",
        "The product cannot get a token as itself (managed identity not assigned or its endpoint unreachable; "
        "for the CLI, Azure CLI missing or not logged in), so it cannot check or fix anything.",
        (
            RemediationStep("In Azure: turn the Function app's managed identity on.",
                            "Function App > Settings > Identity > System assigned > Status: On",
                            "az functionapp identity assign --name <function-app> --resource-group <rg>"),
            RemediationStep("On a workstation: install the Azure CLI and sign in.",
                            "https://learn.microsoft.com/cli/azure/install-azure-cli",
                            "az login && az account get-access-token --scope https://management.azure.com/.default"),
        ),
    ),
    # -- advice ---------------------------------------------------------------------------------------------
    FindingSpec(
        "advice.use_managed_identity", Severity.INFO, "Consider a managed identity",
        "This single-subscription target could use the CycleCloud VM's managed identity instead of a client "
        "secret, which removes expiring secrets altogether (Microsoft's recommendation for CycleCloud).",
        (RemediationStep(
            "Turn on the VM's identity, give it the role, switch the CycleCloud account to managed identity, "
            "then set the target's mode to managed_identity.",
            "Virtual machines > {vm_name} > Identity; CycleCloud > Configure > Cloud Provider Accounts > "
            "{account} > Credentials > Managed Identity",
            "az vm identity assign --ids {vm_id}",
        ),),
    ),
    # -- the rotation journal ----------------------------------------------------------------------------
    FindingSpec(
        "rotation.stopped", Severity.WARNING, "A rotation stopped with an error",
        "A secret rotation of this target stopped at a stage with an error; CycleCloud keeps a secret that works, "
        "and the next run resumes at that stage once the cause is fixed.",
        (RemediationStep("Read the error, fix its cause, then run the rotation again (it resumes where it stopped).",
                         "Function App > Functions > rotate_target > Test/Run",
                         "python -m shared rotate {target} --status; python -m shared rotate {target}"),),
    ),
    FindingSpec(
        "rotation.credential_kept", Severity.WARNING, "A replaced credential is kept",
        "A credential an earlier rotation replaced is past its grace period but is kept, because the product could "
        "not show that nothing uses it (the reason names what could not be established).",
        (RemediationStep("Fix what the reason names (recover or re-enable the Key Vault secret, make CycleCloud "
                         "reachable, check the account read-back); the next run retires the credential by itself.",
                         "Key vaults > {vault_name} > Objects > Secrets > {secret_name}",
                         "python -m shared rotate {target} --dry-run"),),
    ),
    FindingSpec(
        "rotation.lifetime_limited", Severity.INFO, "Secret lifetime limited by a policy",
        "An app management policy caps how long a new client secret may live, so rotations happen more often "
        "than rotation.lifetime_days says, and a secret is due at most halfway through its life.",
        (RemediationStep("Set rotation.lifetime_days (and rotate_before_days) within the policy, or ask the Entra "
                         "admin to exempt the app.",
                         "Entra ID > Enterprise apps > App management policies",
                         "python -m shared rotate {target} --dry-run"),),
    ),
    FindingSpec(
        "rotation.push_unconfirmed", Severity.WARNING, "CycleCloud did not confirm the new secret",
        "The last rotation gave CycleCloud a new secret, but the account's read-back shows no hint of its secret, "
        "so the product cannot confirm CycleCloud holds it; the replaced credential is kept meanwhile.",
        (RemediationStep("Check the account's secret in CycleCloud (Validate), then run the CycleCloud probe.",
                         "CycleCloud > Configure > Cloud Provider Accounts > {account} > Credentials",
                         "python -m shared cyclecloud probe {target}"),),
    ),
    # -- the diagnosis itself ---------------------------------------------------------------------------
    FindingSpec(
        "check.failed", Severity.WARNING, "A check could not run",
        "One of the checks failed with an error, so the report cannot vouch for what that check covers.",
        (RemediationStep("Read the check's error in the evidence, fix its cause, and validate again.",
                         "Function App > Monitoring > Logs (this invocation)",
                         "python -m shared validate {target} -v"),),
    ),
    FindingSpec(
        "check.timed_out", Severity.WARNING, "A check took too long",
        "One of the checks did not finish within its time limit (a slow or unresponsive service), so the "
        "report cannot vouch for what that check covers.",
        (RemediationStep("Validate again; if it keeps timing out, check the named service's health.",
                         "Service Health > Health history",
                         "python -m shared validate {target} -v"),),
    ),
)

CATALOG: dict[str, FindingSpec] = {spec.code: spec for spec in _CATALOG}


def spec(code: str) -> FindingSpec:
    try:
        return CATALOG[code]
    except KeyError:
        raise KeyError(f"unknown finding code {code!r}; add it to shared/findings.py") from None


@dataclass(frozen=True)
class Finding:
    """One occurrence of a catalog entry for a target."""

    code: str
    severity: Severity
    title: str
    summary: str
    detail: str  # one sentence about this target: which secret, which subscription, which action
    evidence: dict[str, Any] = field(default_factory=dict)
    steps: tuple[RemediationStep, ...] = ()
    fix_action: FixAction | None = None
    remediate_how: str | None = None
    check: str = ""  # the check that found it
    subject: str | None = None  # what it is about: a subscription id, a principal, the secret name

    @property
    def fixable_by_remediate(self) -> bool:
        return self.fix_action is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "title": self.title,
            "summary": self.summary,
            "detail": self.detail,
            "subject": self.subject,
            "check": self.check,
            "evidence": self.evidence,
            "remediation": [step.to_dict() for step in self.steps],
            "fixable_by_remediate": self.fixable_by_remediate,
            "remediate_action": self.fix_action.value if self.fix_action else None,
            "remediate_how": self.remediate_how,
        }


def make_finding(code: str, detail: str, *, evidence: Mapping[str, Any] | None = None,
                 params: Mapping[str, object] | None = None, check: str = "", subject: str | None = None,
                 severity: Severity | None = None) -> Finding:
    """A finding from the catalog, its steps filled in with `params` (target ids; unknown ones stay <name>)."""
    entry = spec(code)
    values = dict(params or {})
    return Finding(
        code=entry.code,
        severity=severity or entry.severity,
        title=entry.title,
        summary=entry.summary,
        detail=detail,
        evidence=dict(evidence or {}),
        steps=tuple(step.render(values) for step in entry.steps),
        fix_action=entry.fix_action,
        remediate_how=entry.remediate_how,
        check=check,
        subject=subject,
    )
