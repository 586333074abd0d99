"""ARM failures turned into domain errors, in one place for every ARM adapter (rbac, compute).

Each error says what failed (the action and scope ARM named), why (ARM's own code and message, which carries
no secret) and how to fix it (the role to grant, and where). Service text is scrubbed of registered secrets
before it is passed on, as defence in depth.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn
from urllib.parse import urlsplit

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

from ..errors import (
    AccessDeniedError,
    AuthenticationError,
    NotFoundError,
    PolicyDeniedError,
    PrincipalNotFoundError,
    RemediatorError,
    ServiceError,
    TenantMismatchError,
)
from ..redaction import scrub

_AUTHZ = re.compile(
    r"The client '(?P<client>[^']*)' with object id '(?P<oid>[^']*)' does not have authorization to perform "
    r"action '(?P<action>[^']+)' over scope '(?P<scope>[^']+)'", re.IGNORECASE)
_SUB_TENANT = re.compile(r"must match the tenant 'https://sts\.windows\.net/([0-9a-fA-F-]{36})/?'", re.IGNORECASE)
_TOKEN_TENANT = re.compile(r"wrong issuer 'https://sts\.windows\.net/([0-9a-fA-F-]{36})/?'", re.IGNORECASE)
_CHALLENGE_TENANT = re.compile(r'authorization_uri="https://[^/"]+/([0-9a-fA-F-]{36})"', re.IGNORECASE)
_SUBSCRIPTION_IN = re.compile(r"^/subscriptions/([^/]+)", re.IGNORECASE)
_SUBSCRIPTION_NAMED = re.compile(r"subscription '([^']+)'", re.IGNORECASE)
# ARM error codes that have a diagnosis finding of their own (shared/findings.py), not a generic `check.failed`
ARM_CODE_FINDINGS: dict[str, str] = {
    "SubscriptionNotFound": "subscription.not_found",
    "InvalidAuthenticationTokenTenant": "tenant.mismatch",
    "ReadOnlyDisabledSubscription": "subscription.disabled",
    "SubscriptionNotRegistered": "subscription.disabled",
    "RequestDisallowedByPolicy": "policy.denied_resource",
}
_POLICY_IDS = re.compile(r"Policy identifiers: '(\[.*\])'", re.DOTALL)
_CHILD_OF_SCOPE = re.compile(r"/providers/Microsoft\.Authorization/roleAssignments/[^/]+$", re.IGNORECASE)

RBAC_ADMIN_ADVICE = ("Role Based Access Control Administrator (or User Access Administrator/Owner) on {scope}; "
                     "Contributor is not enough (it excludes Microsoft.Authorization/*/Write). Constrain it with "
                     "the ABAC condition in docs/roles.md so it can grant only the configured roles.")


def role_to_grant(action: str, scope: str) -> str:
    """The least role that carries `action`, worded as advice."""
    lowered = action.lower()
    if lowered.startswith("microsoft.authorization/roleassignments/") and not lowered.endswith("/read"):
        return RBAC_ADMIN_ADVICE.format(scope=scope)
    if lowered.startswith("microsoft.compute/virtualmachines/runcommand"):
        return f"Virtual Machine Contributor (it includes Microsoft.Compute/virtualMachines/*) on {scope}"
    if lowered.endswith("/read"):
        return f"Reader on {scope}"
    return f"a role that includes '{action}' on {scope}"


def grant_scope(scope: str) -> str:
    """ARM reports a role assignment write at the assignment's own id; the grant belongs on its parent scope."""
    return _CHILD_OF_SCOPE.sub("", scope) or "/"


def _error_fields(exc: HttpResponseError) -> tuple[str, str, Any]:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or ""
    message = getattr(error, "message", None) or ""
    response: Any = exc.response
    if not code and response is not None:
        try:
            body = response.json()
            code = body.get("error", {}).get("code", "") or ""
            message = body.get("error", {}).get("message", "") or ""
        except Exception:  # noqa: S110 - a non-JSON error body: keep the status text
            pass
    return code, scrub(message or str(exc.reason or exc)), error


def _policy_details(error: Any, message: str) -> dict[str, Any]:
    for item in getattr(error, "additional_info", None) or []:
        if getattr(item, "type", "") == "PolicyViolation" and isinstance(getattr(item, "info", None), dict):
            info = item.info
            return {
                "policy_assignment_id": info.get("policyAssignmentId"),
                "policy_assignment_name": info.get("policyAssignmentName"),
                "policy_assignment_display_name": info.get("policyAssignmentDisplayName"),
                "policy_assignment_scope": info.get("policyAssignmentScope"),
                "policy_definition_id": info.get("policyDefinitionId"),
            }
    match = _POLICY_IDS.search(message)
    if match:
        try:
            first = json.loads(match.group(1))[0]
            return {"policy_assignment_id": first["policyAssignment"]["id"],
                    "policy_assignment_name": first["policyAssignment"]["name"],
                    "policy_definition_id": first["policyDefinition"]["id"]}
        except (ValueError, KeyError, IndexError, TypeError):
            pass
    return {}


def _answered_by_arm(exc: HttpResponseError) -> bool:
    if exc.response is None or "AADSTS" in str(exc):
        return False
    url = str(getattr(exc.response.request, "url", "") or "")
    return urlsplit(url).hostname is not None and str(urlsplit(url).hostname).startswith("management.")


def _arm_answer(exc: Exception, what: str) -> HttpResponseError:
    """The answer ARM gave; anything else (a domain error, no connection, no token, a bug) is raised here."""
    if isinstance(exc, RemediatorError):
        raise exc
    if isinstance(exc, ServiceRequestError):
        raise ServiceError(f"{what}: Azure Resource Manager could not be reached.", reason=scrub(str(exc)),
                           fix="Check outbound HTTPS from this host to the ARM endpoint and retry.") from None
    if isinstance(exc, ClientAuthenticationError) and not _answered_by_arm(exc):
        # the credential itself failed: Entra ID (or the managed identity endpoint) refused the token request
        from ..aadsts import parse_entra_error

        evidence = parse_entra_error(scrub(str(exc)))
        raise AuthenticationError(f"{what}: no token could be obtained for ARM.",
                                  reason=evidence.description.splitlines()[0] if evidence.description else "",
                                  fix="See the AADSTS code in the details; run `python -m shared token <target>`.",
                                  details={"entra": evidence.to_dict()}) from None
    if not isinstance(exc, HttpResponseError):
        raise exc
    return exc


def _authorization_failed(what: str, message: str, scope: str | None, details: dict[str, Any]) -> NoReturn:
    match = _AUTHZ.search(message)
    action = match.group("action") if match else "(unknown action)"
    failed_scope = match.group("scope") if match else (scope or "")
    where = grant_scope(failed_scope)
    details.update(action=action, scope=failed_scope, object_id=match.group("oid") if match else None,
                   # "The client '<x>' with object id '<oid>'": Azure puts the object id (or a user's name)
                   # in <x>, not the client id, so it is kept under a neutral name
                   client=match.group("client") if match else None, role_to_grant=role_to_grant(action, where))
    raise AccessDeniedError(f"{what}: the identity may not perform '{action}' on '{where}'.", reason=message,
                            fix=f"Grant {role_to_grant(action, where)}.", details=details) from None


def _policy_denied(what: str, message: str, error: Any, details: dict[str, Any]) -> NoReturn:
    details.update(_policy_details(error, message))
    name = details.get("policy_assignment_display_name") or details.get("policy_assignment_name") or "a policy"
    assignment = details.get("policy_assignment_id") or "(see the message)"
    raise PolicyDeniedError(f"{what}: Azure Policy assignment '{name}' ({assignment}) denies it.",
                            reason=message,
                            fix="Ask the owner of that policy assignment for an exemption for this scope, or "
                                "change the configured role to one the policy allows.",
                            details=details) from None


def _tenant_mismatch(what: str, message: str, answer: HttpResponseError, details: dict[str, Any]) -> NoReturn:
    owner = _SUB_TENANT.search(message)
    challenged: Any = answer.response
    if owner is None and challenged is not None:
        owner = _CHALLENGE_TENANT.search(challenged.headers.get("WWW-Authenticate", ""))
    token = _TOKEN_TENANT.search(message)
    details.update(owning_tenant=owner.group(1) if owner else None, token_tenant=token.group(1) if token else None)
    raise TenantMismatchError(
        f"{what}: the subscription belongs to tenant {details['owning_tenant'] or '(unknown)'}, not to the "
        f"tenant {details['token_tenant'] or 'of the identity'} that asked.",
        reason=message,
        fix="Set the target's tenant_id to the tenant that owns the subscription (Subscriptions > Overview > "
            "Parent management group / Directory), or move the subscription.",
        details=details) from None


def _subscription_not_found(what: str, message: str, scope: str | None, details: dict[str, Any]) -> NoReturn:
    sub = _SUBSCRIPTION_IN.search(scope or "") or _SUBSCRIPTION_NAMED.search(message)
    details["subscription_id"] = sub.group(1) if sub else None
    raise NotFoundError(
        f"{what}: Azure Resource Manager does not know subscription {details['subscription_id'] or '(unknown)'}.",
        reason=message,
        fix="Check the subscription id in the target's subscription_ids for a typo: `az account list --all "
            "--query \"[].{name:name, id:id, tenant:tenantId}\" -o table` lists the ones you can see (a "
            "subscription of another tenant, or one the product's identity has no role on, is not found "
            "either).",
        details=details) from None


def raise_arm_error(exc: Exception, *, what: str, scope: str | None = None) -> NoReturn:
    """Translate an SDK/pipeline exception from an ARM call into a domain error. `what` says what was tried."""
    answer = _arm_answer(exc, what)
    code, message, error = _error_fields(answer)
    status = answer.status_code
    details: dict[str, Any] = {"arm_code": code, "status": status}
    if code == "AuthorizationFailed":
        _authorization_failed(what, message, scope, details)
    if code == "RequestDisallowedByPolicy":
        _policy_denied(what, message, error, details)
    if code == "PrincipalNotFound":
        raise PrincipalNotFoundError(f"{what}: ARM cannot see the principal yet.", reason=message,
                                     fix="This is directory replication after the principal was created; retry in "
                                         "a minute. If it persists, check the principal's object id.",
                                     details=details) from None
    if code == "InvalidAuthenticationTokenTenant":
        _tenant_mismatch(what, message, answer, details)
    if code == "SubscriptionNotFound":
        _subscription_not_found(what, message, scope, details)
    if code in ("ResourceNotFound", "RoleDefinitionDoesNotExist", "ParentResourceNotFound",
                "ResourceGroupNotFound") or status == 404:
        raise NotFoundError(f"{what}: not found.", reason=message,
                            fix="Check the ids in the target's configuration (subscription, VM resource id, role).",
                            details=details) from None
    if status == 401:
        raise AccessDeniedError(f"{what}: ARM refused the token.", reason=message,
                                fix="Check the identity's tenant and that its token is for the ARM audience.",
                                details=details) from None
    raise ServiceError(f"{what}: ARM answered {status} {code}.", reason=message,
                       fix="Retry later; if it persists, open a support case with the correlation id in the logs.",
                       details=details) from None
