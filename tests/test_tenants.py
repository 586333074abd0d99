"""Targets in three tenants looked after by one deployment (issue 19, docs/tenants.md).

The twin holds three Entra tenants: the home tenant (the Function's managed identity, Key Vault, the product's
multi-tenant app with a federated identity credential trusting that identity) and two customer tenants, each with
its own CycleCloud app registration, subscription and CycleCloud server. In a customer tenant the product's app has
a service principal (consent), Graph's Application.ReadWrite.OwnedBy, ownership of the CycleCloud app and roles on
the subscription. Everything goes through the real SDKs: the product gets tokens for a customer tenant with
azure-identity's ClientAssertionCredential over the managed identity's token for api://AzureADTokenExchange, and
the twin's token endpoint checks that assertion (issuer, subject, audience).

Each missing piece of onboarding is a precise finding naming the tenant and the fix, and the rotation stops with
the same code - never application_not_found, as if the customer's app were gone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from shared.config import load_settings
from shared.context import AppContext
from shared.diagnosis import validate_target
from shared.errors import RemediatorError
from shared.rotation import RotationStatus, rotate_target
from tests.leaks import assert_no_leak
from tests.rotation_support import apply_env
from tests.twin import Twin
from tests.world import (
    APP_OBJECT_ID,
    CC_PASSWORD,
    CC_PASSWORD_SECRET,
    CC_USER,
    FUNCTION_OBJECT_ID,
    OTHER_TENANT,
    TARGET,
    TENANT,
    VAULT_NAME,
    World,
    account_record,
)

THIRD_TENANT = "33333333-4444-4555-8666-777777777777"
PRODUCT_APP_ID = "dddddddd-1111-4222-8333-444444444444"  # the product's multi-tenant app (home tenant)
PRODUCT_APP_OBJECT_ID = "dddddddd-2222-4222-8333-444444444444"
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"


class Customer:
    """One customer tenant: its CycleCloud app, subscription, CycleCloud server and the product's foothold."""

    def __init__(self, name: str, tenant_id: str, index: int) -> None:
        self.name, self.tenant_id = name, tenant_id
        self.target = f"hpc-{name}"
        self.app_id = f"{index:08d}-aaaa-4bbb-8ccc-000000000001"
        self.app_object_id = f"{index:08d}-aaaa-4bbb-8ccc-000000000002"
        self.sp_object_id = f"{index:08d}-aaaa-4bbb-8ccc-000000000003"
        self.product_sp = f"{index:08d}-aaaa-4bbb-8ccc-000000000004"  # the product's app's SP in this tenant
        self.subscription = f"{index:08d}-aaaa-4bbb-8ccc-000000000005"
        self.key_id = f"{index:08d}-aaaa-4bbb-8ccc-000000000006"
        self.secret = f"Cu{index}8Q~{name}-current-secret-value-0123456789"[:40]
        self.secret_name = f"cyclecloud-{name}-secret"
        self.cc_host = f"cyclecloud.{name}.example"

    def add_to(self, scenario: dict[str, Any]) -> None:
        scenario["tenants"].append({"id": self.tenant_id, "domain": f"{self.name}.onmicrosoft.com"})
        scenario["applications"].append({
            "object_id": self.app_object_id, "app_id": self.app_id, "tenant_id": self.tenant_id,
            "display_name": f"cyclecloud-{self.name}", "owners": [self.product_sp],
            "password_credentials": [{"key_id": self.key_id, "secret": self.secret, "display_name": "initial",
                                      "start": "now-170d", "end": "now+10d"}],
            "service_principal": {"object_id": self.sp_object_id},
        })
        scenario["principals"].append({
            "object_id": self.product_sp, "tenant_id": self.tenant_id, "app_id": PRODUCT_APP_ID,
            "display_name": "remediator (multi-tenant)", "graph_app_roles": ["Application.ReadWrite.OwnedBy"],
        })
        if not any(s["id"] == self.subscription for s in scenario["subscriptions"]):
            scenario["subscriptions"].append({"id": self.subscription, "tenant_id": self.tenant_id,
                                              "display_name": f"HPC {self.name}"})
        scope = f"/subscriptions/{self.subscription}"
        scenario["role_assignments"] += [
            {"scope": scope, "role": "Contributor", "principal_id": self.sp_object_id},
            {"scope": scope, "role": "Reader", "principal_id": self.product_sp},
            {"scope": scope, "role": "Role Based Access Control Administrator", "principal_id": self.product_sp},
        ]
        scenario["vaults"][0]["secrets"][self.secret_name] = [
            {"value": self.secret, "tags": {"keyId": self.key_id, "appId": self.app_id}, "expires": "now+10d"}]
        scenario["cyclecloud_servers"].append({
            "host": self.cc_host, "users": [{"name": CC_USER, "password": CC_PASSWORD}],
            "accounts": [account_record(self.secret, app_id=self.app_id, tenant_id=self.tenant_id,
                                        subscription_id=self.subscription)],
        })

    def target_config(self, twin: Twin, identity: str = PRODUCT_APP_ID) -> dict[str, Any]:
        return {
            "name": self.target, "mode": "service_principal", "tenant_id": self.tenant_id, "app_id": self.app_id,
            "subscription_ids": [self.subscription], "secret_name": self.secret_name, "identity": identity,
            "cyclecloud": {"url": f"https://{self.cc_host}", "account": "azure", "user": CC_USER,
                           "password_secret": CC_PASSWORD_SECRET,
                           "ca_bundle": str(twin.cyclecloud_ca_path(self.cc_host))},
            "rotation": {"test_successes": 2, "test_timeout_seconds": 20, "grace_hours": 0},
        }


FABRIKAM = Customer("fabrikam", OTHER_TENANT, 1)
NORTHWIND = Customer("northwind", THIRD_TENANT, 2)
CUSTOMERS = (FABRIKAM, NORTHWIND)


def three_tenants() -> dict[str, Any]:
    scenario = World().scenario()
    scenario["tenants"] = [t for t in scenario["tenants"] if t["id"] == TENANT]
    scenario["applications"].append({
        "object_id": PRODUCT_APP_OBJECT_ID, "app_id": PRODUCT_APP_ID, "tenant_id": TENANT,
        "display_name": "remediator (multi-tenant)", "sign_in_audience": "AzureADMultipleOrgs",
        "federated_credentials": [{"name": "function-mi", "issuer": ISSUER, "subject": FUNCTION_OBJECT_ID}],
        "service_principal": {},
    })
    for customer in CUSTOMERS:
        customer.add_to(scenario)
    return scenario


Edit = Callable[[dict[str, Any]], None]


def setup(twin: Twin, monkeypatch: pytest.MonkeyPatch, azurite: str, cc_ca: str, *, edit: Edit | None = None,
          identity: str = PRODUCT_APP_ID, home_tenant: str | None = TENANT) -> dict[str, str]:
    scenario = three_tenants()
    if edit is not None:
        edit(scenario)
    twin.load(scenario)
    home = World().target(ca_bundle=cc_ca)
    home["rotation"] = {"test_successes": 2, "test_timeout_seconds": 20, "grace_hours": 0}
    env = World().env(ca_bundle=cc_ca, storage=azurite)
    env["TARGETS"] = json.dumps([home, *(c.target_config(twin, identity) for c in CUSTOMERS)])
    env["STATE_CONTAINER"] = f"ten-{uuid.uuid4().hex[:20]}"
    if home_tenant:
        env["HOME_TENANT_ID"] = home_tenant
    apply_env(monkeypatch, env)
    return env


async def validate(name: str) -> Any:
    async with AppContext.from_environment() as ctx:
        return await validate_target(ctx, name)


async def rotate(name: str) -> Any:
    async with AppContext.from_environment() as ctx:
        return await rotate_target(ctx, name, force=True, deadline_seconds=120)


def secrets_of_world(twin: Twin | None = None) -> list[str]:
    values = [World().secret, CC_PASSWORD, *(c.secret for c in CUSTOMERS)]
    if twin is not None:  # and every secret the rotations created
        with twin.state.lock:
            values += [v.value for s in twin.state.vaults[f"{VAULT_NAME}.vault.azure.net"].secrets.values()
                       for v in s.versions]
    return values


# -- configuration -------------------------------------------------------------------------------------------


def test_identity_is_validated_like_every_setting() -> None:
    base = {"name": "a", "tenant_id": OTHER_TENANT, "app_id": FABRIKAM.app_id, "secret_name": "s",
            "subscription_ids": [FABRIKAM.subscription]}
    env = {"KEY_VAULT_URL": "https://kv.vault.azure.net", "HOME_TENANT_ID": "not-a-guid",
           "TARGETS": json.dumps([{**base, "identity": "fabrikam-app"},
                                  {**base, "name": "b", "secret_name": "t", "identity": PRODUCT_APP_ID},
                                  {**base, "name": "c", "secret_name": "u"}])}
    with pytest.raises(Exception) as caught:
        load_settings(env)
    problems = "\n".join(caught.value.problems)  # type: ignore[attr-defined]
    assert "TARGETS[0] (a).identity: 'fabrikam-app' is not 'home' or an application (client) id; use 'home'" \
        in problems
    assert "HOME_TENANT_ID: 'not-a-guid' is not a GUID; use the Directory (tenant) ID" in problems
    assert (f"targets[b].identity: is '{PRODUCT_APP_ID}' but target 'a' in the same tenant {OTHER_TENANT} uses "
            "'home'; the product reaches one tenant through one identity") in problems
    ok = load_settings({**env, "HOME_TENANT_ID": TENANT,
                        "TARGETS": json.dumps([{**base, "identity": PRODUCT_APP_ID.upper()}])})
    assert ok.targets[0].identity == PRODUCT_APP_ID and ok.targets[0].cross_tenant
    assert ok.home_tenant_id == TENANT


# -- one deployment, three tenants ----------------------------------------------------------------------------


async def test_one_deployment_validates_and_rotates_targets_in_three_tenants(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    setup(twin, monkeypatch, azurite, cc_ca)
    for customer in CUSTOMERS:
        report = await validate(customer.target)
        assert report.codes == ["secret.expiring_soon"], json.dumps(report.to_dict()["findings"])[:3000]
    assert (await validate(TARGET)).status.value == "healthy"

    for name in (TARGET, *(c.target for c in CUSTOMERS)):
        outcome = await rotate(name)
        assert outcome.status is RotationStatus.ROTATED, outcome.to_dict()

    with twin.state.lock:
        for customer in CUSTOMERS:
            app = twin.state.applications[customer.app_object_id]
            # a new credential on the customer's app (the initial one is kept: the product did not create it)
            assert app.password_credentials[0].key_id == customer.key_id
            assert len(app.password_credentials) == 2
            stored = twin.state.vaults[f"{VAULT_NAME}.vault.azure.net"].secrets[customer.secret_name].latest()
            assert stored is not None and stored.value != customer.secret
            assert stored.tags.get("keyId") == app.password_credentials[1].key_id
            account = twin.state.cyclecloud_servers[customer.cc_host].accounts["azure"]
            assert account["AzureRMTenantId"] == customer.tenant_id
            assert account["AzureRMApplicationSecret"] == stored.value  # CycleCloud got the new secret
    for customer in CUSTOMERS:
        report = await validate(customer.target)
        assert report.status.value == "healthy", report.to_dict()

    # Graph in each customer tenant was called as the product's app in that tenant, with a token that came
    # from the federated exchange; Key Vault only ever in the home tenant, as the managed identity
    exchanges = [r for r in twin.request_log if r.service == "entra" and r.operation == "token"
                 and any(c.tenant_id in r.path for c in CUSTOMERS)]
    assert exchanges and all(r.status == 200 for r in exchanges)
    assert_no_leak(caplog, *secrets_of_world(twin))


async def test_remediate_in_another_tenant_assigns_the_role_there_and_rotates(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate -> fix -> validate in northwind: the missing Contributor is assigned in northwind's subscription
    (as the product's app there) and the expiring secret rotated on northwind's app."""
    from shared.remediation import remediate_target

    def drop_contributor(scenario: dict[str, Any]) -> None:
        scenario["role_assignments"] = [
            r for r in scenario["role_assignments"]
            if not (r["principal_id"] == NORTHWIND.sp_object_id and r["role"] == "Contributor")]

    setup(twin, monkeypatch, azurite, cc_ca, edit=drop_contributor)
    async with AppContext.from_environment() as ctx:
        result = await remediate_target(ctx, NORTHWIND.target, dry_run=False, deadline_seconds=200)
    summary = json.dumps(result.to_dict())[:3000]
    assert set(result.before.codes) >= {"role.missing", "secret.expiring_soon"}, summary
    assert result.after is not None and result.after.status.value == "healthy", summary
    with twin.state.lock:
        scope = f"/subscriptions/{NORTHWIND.subscription}"
        created = [r for r in twin.state.role_assignments.values()
                   if r.principal_id == NORTHWIND.sp_object_id and r.scope == scope]
        assert created, "the Contributor assignment was not created in the customer's subscription"
        assert len(twin.state.applications[NORTHWIND.app_object_id].password_credentials) == 2
    # the home target was not touched
    with twin.state.lock:
        assert len(twin.state.applications[APP_OBJECT_ID].password_credentials) == 1


# -- each missing piece of onboarding: its own finding, and the rotation stops with it -------------------------


def no_consent(scenario: dict[str, Any]) -> None:
    """Tenant fabrikam never consented: no service principal of the product's app there."""
    scenario["principals"] = [p for p in scenario["principals"] if p["object_id"] != FABRIKAM.product_sp]


def no_graph_permission(scenario: dict[str, Any]) -> None:
    for principal in scenario["principals"]:
        if principal["object_id"] == FABRIKAM.product_sp:
            principal["graph_app_roles"] = []


def not_owner(scenario: dict[str, Any]) -> None:
    for app in scenario["applications"]:
        if app["object_id"] == FABRIKAM.app_object_id:
            app["owners"] = []


def federation_for_another_identity(scenario: dict[str, Any]) -> None:
    for app in scenario["applications"]:
        if app["app_id"] == PRODUCT_APP_ID:
            app["federated_credentials"][0]["subject"] = str(uuid.uuid4())


CASES = [
    pytest.param(no_consent, PRODUCT_APP_ID, "tenant.consent_missing", "tenant_consent_missing", "consent",
                 id="no-consent"),
    pytest.param(no_graph_permission, PRODUCT_APP_ID, "tenant.app_access_missing", "tenant_app_access_missing",
                 "graph_permission_or_ownership", id="no-graph-permission"),
    pytest.param(not_owner, PRODUCT_APP_ID, "tenant.app_access_missing", "tenant_app_access_missing",
                 "graph_permission_or_ownership", id="not-owner"),
    pytest.param(federation_for_another_identity, PRODUCT_APP_ID, "tenant.federation_mismatch",
                 "tenant_federation_mismatch", "federated_credential", id="federation-mismatch"),
    pytest.param(None, "home", "tenant.not_onboarded", "tenant_not_onboarded", "identity", id="home-identity"),
]


@pytest.mark.parametrize(("edit", "identity", "finding", "error_code", "missing"), CASES)
async def test_missing_onboarding_is_a_precise_finding_and_stops_the_rotation(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        edit: Edit | None, identity: str, finding: str, error_code: str, missing: str) -> None:
    setup(twin, monkeypatch, azurite, cc_ca, edit=edit, identity=identity)
    report = await validate(FABRIKAM.target)
    assert finding in report.codes, report.to_dict()
    assert "app.not_found_in_tenant" not in report.codes and "function.permission_missing" not in report.codes
    found = report.finding(finding)
    assert found.subject == OTHER_TENANT
    assert found.evidence["missing"] == missing and found.evidence["tenant_id"] == OTHER_TENANT
    text = json.dumps(found.to_dict())
    if identity != "home":
        consent = f"https://login.microsoftonline.com/{OTHER_TENANT}/adminconsent?client_id={PRODUCT_APP_ID}"
        if finding != "tenant.federation_mismatch":
            assert consent in text
            assert f"az login --tenant {OTHER_TENANT}" in text and f"az ad sp create --id {PRODUCT_APP_ID}" in text
            assert f"az ad app owner add --id {FABRIKAM.app_id}" in text
        else:
            assert "az ad app federated-credential create" in text and ISSUER in text
    else:
        assert "onboard-tenant.sh" in text and TENANT in found.detail

    # before any operation exists the rotation's error is the answer (HTTP 403 with this code, the CLI's exit)
    with pytest.raises(RemediatorError) as stopped:
        await rotate(FABRIKAM.target)
    assert stopped.value.code == error_code, stopped.value.to_dict()
    assert stopped.value.details["tenant_id"] == OTHER_TENANT
    assert_no_leak(str(stopped.value.to_dict()), *secrets_of_world())
    # nothing was created on the customer's app
    with twin.state.lock:
        assert [c.key_id for c in twin.state.applications[FABRIKAM.app_object_id].password_credentials] == \
            [FABRIKAM.key_id]
    # the other tenants are unaffected
    assert (await validate(NORTHWIND.target)).codes == (
        ["tenant.not_onboarded"] if identity == "home" else
        ["tenant.federation_mismatch"] if finding == "tenant.federation_mismatch" else ["secret.expiring_soon"])
    assert_no_leak(caplog, *secrets_of_world())


async def test_without_home_tenant_setting_a_foreign_app_is_still_not_found(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without HOME_TENANT_ID the product cannot tell 'in another tenant' from 'gone' for a home-identity target:
    it keeps the old finding (this is why the Bicep sets HOME_TENANT_ID)."""
    setup(twin, monkeypatch, azurite, cc_ca, identity="home", home_tenant=None)
    report = await validate(FABRIKAM.target)
    assert "app.not_found_in_tenant" in report.codes, report.to_dict()


async def test_the_health_sweep_names_the_unconsented_tenant_not_a_missing_app(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's fleet in small: the health timer over targets in three tenants, one of which never consented."""
    from shared.diagnosis.health import check_all_targets

    setup(twin, monkeypatch, azurite, cc_ca, edit=no_consent)
    async with AppContext.from_environment() as ctx:
        sweep = await check_all_targets(ctx)
    by_target = {r.target: r for r in sweep.results}
    assert by_target[TARGET].status == "healthy"
    assert (by_target[NORTHWIND.target].status, by_target[NORTHWIND.target].findings) == \
        ("degraded", ["secret.expiring_soon"])
    assert (by_target[FABRIKAM.target].status, by_target[FABRIKAM.target].findings) == \
        ("failing", ["tenant.consent_missing"])
    assert "app.not_found_in_tenant" not in json.dumps(sweep.to_dict())


# -- the twin's federated exchange, through azure-identity alone ------------------------------------------------


async def _exchange(assertion_audience: str | None, *, tenant: str = OTHER_TENANT) -> str:
    """A token for `tenant` as the product's app, the assertion being the MI's token for `assertion_audience`
    (None: a string the twin never issued). Returns "ok" or the AADSTS code."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity.aio import ClientAssertionCredential, ManagedIdentityCredential

    from shared.aadsts import parse_entra_error

    async with ManagedIdentityCredential() as mi:
        assertion = (await mi.get_token(f"{assertion_audience}/.default")).token if assertion_audience else "x.y.z"
        async with ClientAssertionCredential(tenant, PRODUCT_APP_ID, lambda: assertion) as credential:
            try:
                await credential.get_token("https://graph.microsoft.com/.default")
            except ClientAuthenticationError as exc:
                return f"AADSTS{parse_entra_error(str(exc)).code}"
    return "ok"


async def test_the_twin_checks_the_assertion_issuer_subject_and_audience(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, monkeypatch, azurite, cc_ca)
    assert await _exchange("api://AzureADTokenExchange") == "ok"
    assert await _exchange("https://management.azure.com") == "AADSTS70021"  # audience
    assert await _exchange(None) == "AADSTS50027"  # not a token the identity platform issued
    assert await _exchange("api://AzureADTokenExchange", tenant=TENANT) == "ok"  # the app's own tenant too

    def issuer_of_another_tenant(scenario: dict[str, Any]) -> None:
        for app in scenario["applications"]:
            if app["app_id"] == PRODUCT_APP_ID:
                app["federated_credentials"][0]["issuer"] = f"https://login.microsoftonline.com/{THIRD_TENANT}/v2.0"

    setup(twin, monkeypatch, azurite, cc_ca, edit=issuer_of_another_tenant)
    assert await _exchange("api://AzureADTokenExchange") == "AADSTS70021"  # issuer
    setup(twin, monkeypatch, azurite, cc_ca, edit=federation_for_another_identity)
    assert await _exchange("api://AzureADTokenExchange") == "AADSTS70021"  # subject

    def single_tenant(scenario: dict[str, Any]) -> None:
        for app in scenario["applications"]:
            if app["app_id"] == PRODUCT_APP_ID:
                app["sign_in_audience"] = "AzureADMyOrg"

    setup(twin, monkeypatch, azurite, cc_ca, edit=single_tenant)
    assert await _exchange("api://AzureADTokenExchange") == "AADSTS700016"  # not usable outside its own tenant


# -- break-glass: the CLI on an operator's machine (no managed identity) --------------------------------------

OPERATOR_APP_ID = "eeeeeeee-1111-4222-8333-444444444444"
OPERATOR_HOME_SP = "eeeeeeee-2222-4222-8333-444444444444"
OPERATOR_FABRIKAM_SP = "eeeeeeee-3333-4222-8333-444444444444"
OPERATOR_SECRET = "Op18Q~operator-secret-value-0123456789abc"


def operator_signed_in_to_both(scenario: dict[str, Any]) -> None:
    """A multi-tenant operator app (EnvironmentCredential) with its own foothold in the home tenant and fabrikam."""
    scenario["applications"].append({
        "object_id": "eeeeeeee-4444-4222-8333-444444444444", "app_id": OPERATOR_APP_ID, "tenant_id": TENANT,
        "display_name": "operator", "sign_in_audience":
        "AzureADMultipleOrgs", "password_credentials": [{"secret": OPERATOR_SECRET}],
        "service_principal": {"object_id": OPERATOR_HOME_SP},
    })
    scenario["principals"].append({"object_id": OPERATOR_FABRIKAM_SP, "tenant_id": OTHER_TENANT,
                                   "app_id": OPERATOR_APP_ID, "graph_app_roles": ["Application.ReadWrite.OwnedBy"]})
    for app in scenario["applications"]:
        if app["object_id"] == FABRIKAM.app_object_id:
            app["owners"].append(OPERATOR_FABRIKAM_SP)
    vault = scenario["vaults"][0]["resource_id"]
    scope = f"/subscriptions/{FABRIKAM.subscription}"
    scenario["role_assignments"] += [
        {"scope": vault, "role": "Key Vault Secrets Officer", "principal_id": OPERATOR_HOME_SP},
        {"scope": scope, "role": "Reader", "principal_id": OPERATOR_FABRIKAM_SP},
        {"scope": scope, "role": "Role Based Access Control Administrator", "principal_id": OPERATOR_FABRIKAM_SP},
    ]


async def test_break_glass_cli_reaches_the_other_tenant_as_the_signed_in_operator(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(twin, monkeypatch, azurite, cc_ca, edit=operator_signed_in_to_both)
    for key in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", OPERATOR_APP_ID)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", OPERATOR_SECRET)
    report = await validate(FABRIKAM.target)
    assert report.codes == ["secret.expiring_soon"], json.dumps(report.to_dict()["findings"])[:3000]
    fabrikam_tokens = [r for r in twin.request_log if r.service == "entra" and r.operation == "token"
                       and OTHER_TENANT in r.path]
    assert fabrikam_tokens and all(r.status == 200 for r in fabrikam_tokens)


# -- a managed identity target in another tenant (ARM only: the CycleCloud VM and its subscription) ------------

MI_TARGET = "hpc-northwind-mi"
MI_VM_PRINCIPAL = "00000002-aaaa-4bbb-8ccc-000000000009"
MI_VM_ID = (f"/subscriptions/{NORTHWIND.subscription}/resourceGroups/rg-cc"
            "/providers/Microsoft.Compute/virtualMachines/cyclecloud-mi")
MI_HOST = "cyclecloud-mi.northwind.example"


def northwind_vm(scenario: dict[str, Any]) -> None:
    scenario["virtual_machines"].append({"id": MI_VM_ID, "cyclecloud_host": MI_HOST,
                                         "identity": {"principal_id": MI_VM_PRINCIPAL, "tenant_id": THIRD_TENANT}})
    scenario["role_assignments"].append({"scope": f"/subscriptions/{NORTHWIND.subscription}", "role": "Contributor",
                                         "principal_id": MI_VM_PRINCIPAL})
    scenario["cyclecloud_servers"].append({
        "host": MI_HOST, "users": [{"name": CC_USER, "password": CC_PASSWORD}],
        "accounts": [account_record(tenant_id=THIRD_TENANT, subscription_id=NORTHWIND.subscription,
                                    managed_identity=True)]})


async def test_a_managed_identity_target_in_another_tenant_is_validated_there(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = setup(twin, monkeypatch, azurite, cc_ca, edit=northwind_vm)
    targets = json.loads(env["TARGETS"])
    targets.append({"name": MI_TARGET, "mode": "managed_identity", "tenant_id": THIRD_TENANT,
                    "subscription_ids": [NORTHWIND.subscription], "vm_resource_id": MI_VM_ID,
                    "identity": PRODUCT_APP_ID,
                    "cyclecloud": {"url": f"https://{MI_HOST}", "account": "azure", "user": CC_USER,
                                   "password_secret": CC_PASSWORD_SECRET,
                                   "ca_bundle": str(twin.cyclecloud_ca_path(MI_HOST))}})
    monkeypatch.setenv("TARGETS", json.dumps(targets))
    report = await validate(MI_TARGET)
    assert report.status.value == "healthy", json.dumps(report.to_dict()["findings"])[:3000]
    assert report.observations["principal_id"] == MI_VM_PRINCIPAL
