"""The product's Graph and Key Vault adapters, through the ClientFactory's real SDK clients against the twin:
domain values, domain errors that say what to grant, and no secret value in any log line or message."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.identity import ClientSecretCredential

from shared.adapters.graph import GraphAdapter, NewSecret
from shared.adapters.vault import StoredSecret, VaultAdapter
from shared.clients import ClientFactory
from shared.errors import AccessDeniedError, ConflictError, NotFoundError, PolicyDeniedError, ServiceError
from shared.redaction import scrub
from tests.leaks import assert_no_leak
from tests.twin import Fault, Twin
from tests.world import (
    APP_ID,
    APP_OBJECT_ID,
    ARM_SCOPE,
    CC_PASSWORD,
    CURRENT_SECRET,
    FUNCTION_OBJECT_ID,
    KEY_ID,
    SECRET_NAME,
    SP_OBJECT_ID,
    TENANT,
    VAULT_NAME,
    VAULT_RESOURCE_ID,
)


@pytest.fixture
def graph(clients: ClientFactory) -> GraphAdapter:
    return GraphAdapter(clients)


@pytest.fixture
def vault(clients: ClientFactory) -> VaultAdapter:
    return VaultAdapter(clients)


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def app(twin: Twin) -> Any:
    return twin.state.applications[APP_OBJECT_ID]


# ---------------------------------------------------------------------------------------------------------
# Graph


async def test_get_application_returns_domain_values(twin: Twin, graph: GraphAdapter,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.twin.services.graph import GraphService

    selects: list[str | None] = []
    original = GraphService._select

    def recording(request: Any, entity: dict[str, Any]) -> Any:
        selects.append(request.query.get("$select"))
        return original(request, entity)

    monkeypatch.setattr(GraphService, "_select", staticmethod(recording))
    registration = await graph.get_application(APP_ID)
    assert (registration.object_id, registration.app_id, registration.display_name) == (
        APP_OBJECT_ID, APP_ID, "cyclecloud-sp")
    [cred] = registration.credentials
    assert (cred.key_id, cred.hint, cred.display_name) == (KEY_ID, CURRENT_SECRET[:3], "initial")
    assert cred.end is not None and timedelta(days=199) < cred.end - datetime.now(UTC) <= timedelta(days=200)
    assert registration.credential(KEY_ID.upper()) == cred
    same = await graph.get_application_by_object_id(APP_OBJECT_ID)
    assert same == registration
    assert selects == ["id,appId,displayName,passwordCredentials"] * 2  # minimal $select, parsed fast


async def test_add_password_returns_a_working_secret_that_never_reaches_logs(
        twin: Twin, graph: GraphAdapter, caplog: pytest.LogCaptureFixture) -> None:
    end = datetime.now(UTC) + timedelta(days=90)
    new = await graph.add_password(APP_OBJECT_ID, "ccr:op-1", end)
    assert isinstance(new, NewSecret) and len(new.value) == 40
    assert new.credential.hint == new.value[:3] and new.credential.display_name == "ccr:op-1"
    assert new.credential.end is not None and abs((new.credential.end - end).total_seconds()) < 1
    assert_no_leak(repr(new), new.value)
    assert scrub(f"x {new.value} y") == "x *** y"  # registered for redaction
    token = ClientSecretCredential(TENANT, APP_ID, new.value).get_token(ARM_SCOPE)
    assert twin.tokens.lookup(token.token) is not None
    assert new.credential.key_id in {c.key_id for c in app(twin).password_credentials}
    assert_no_leak(caplog, new.value, CURRENT_SECRET)


async def test_remove_password_true_then_already_gone(twin: Twin, graph: GraphAdapter) -> None:
    assert await graph.remove_password(APP_OBJECT_ID, KEY_ID) is True
    assert app(twin).password_credentials == []
    assert await graph.remove_password(APP_OBJECT_ID, KEY_ID) is False


async def test_remove_password_of_a_missing_app_is_not_found(twin: Twin, graph: GraphAdapter) -> None:
    with pytest.raises(NotFoundError) as raised:
        await graph.remove_password("99999999-0000-4000-8000-000000000000", KEY_ID)
    assert raised.value.code == "application_not_found"


async def test_get_service_principal(twin: Twin, graph: GraphAdapter) -> None:
    sp = await graph.get_service_principal(APP_ID)
    assert (sp.object_id, sp.app_id) == (SP_OBJECT_ID, APP_ID)
    with pytest.raises(NotFoundError):
        await graph.get_service_principal("99999999-0000-4000-8000-000000000000")


async def test_unknown_app_is_not_found(twin: Twin, graph: GraphAdapter) -> None:
    with pytest.raises(NotFoundError) as raised:
        await graph.get_application("99999999-0000-4000-8000-000000000000")
    assert raised.value.code == "application_not_found" and raised.value.status == 502
    assert "Request_ResourceNotFound" in raised.value.reason


async def test_not_an_owner_is_access_denied_naming_the_permission_and_ownership(
        twin: Twin, graph: GraphAdapter) -> None:
    app(twin).owners.clear()
    with pytest.raises(AccessDeniedError) as raised:
        await graph.add_password(APP_OBJECT_ID, "x", datetime.now(UTC) + timedelta(days=30))
    error = raised.value
    assert "Application.ReadWrite.OwnedBy" in error.fix and "owner" in error.fix
    assert error.details["permission"] == "Application.ReadWrite.OwnedBy"
    assert "Authorization_RequestDenied" in error.reason
    assert len(app(twin).password_credentials) == 1


async def test_lifetime_policy_denial_carries_the_maximum_when_readable(twin: Twin, graph: GraphAdapter) -> None:
    app(twin).max_password_lifetime_days = 90
    twin.state.principals[FUNCTION_OBJECT_ID].graph_app_roles.add("Policy.Read.ApplicationConfiguration")
    with pytest.raises(PolicyDeniedError) as raised:
        await graph.add_password(APP_OBJECT_ID, "x", datetime.now(UTC) + timedelta(days=365))
    assert raised.value.code == "credential_lifetime_policy"
    assert raised.value.details["max_lifetime_days"] == 90
    assert raised.value.details["graph_code"] == "CredentialInvalidLifetimeAsPerAppPolicy"
    assert raised.value.details["policy_id"]
    assert "90" in raised.value.fix
    policy = await graph.get_password_policy(APP_OBJECT_ID)
    assert (policy.max_lifetime_days, policy.password_addition_blocked) == (90, False)


async def test_lifetime_policy_denial_without_policy_read_permission(twin: Twin, graph: GraphAdapter) -> None:
    app(twin).max_password_lifetime_days = 30
    with pytest.raises(PolicyDeniedError) as raised:
        await graph.add_password(APP_OBJECT_ID, "x", datetime.now(UTC) + timedelta(days=60))
    assert raised.value.details["max_lifetime_days"] is None
    assert "Policy.Read.ApplicationConfiguration" in raised.value.fix
    with pytest.raises(AccessDeniedError) as denied:
        await graph.get_password_policy(APP_OBJECT_ID)
    assert denied.value.details["permission"] == "Policy.Read.ApplicationConfiguration"


async def test_blocked_password_addition_is_policy_denied(twin: Twin, graph: GraphAdapter) -> None:
    app(twin).password_addition_blocked = True
    with pytest.raises(PolicyDeniedError) as raised:
        await graph.add_password(APP_OBJECT_ID, "x", datetime.now(UTC) + timedelta(days=30))
    assert raised.value.code == "password_addition_blocked"


async def test_graph_throttling_is_retried(twin: Twin, graph: GraphAdapter) -> None:
    twin.faults.add(Fault(service="graph", operation="addPassword", status=429, retry_after=1))
    new = await graph.add_password(APP_OBJECT_ID, "x", datetime.now(UTC) + timedelta(days=30))
    assert new.value
    assert [r.status for r in twin.request_log if r.operation == "addPassword"] == [429, 200]


async def test_graph_outage_after_retries_is_service_error(twin: Twin, graph: GraphAdapter) -> None:
    twin.faults.add(Fault(service="graph", operation="getApplication", status=503, retry_after=1, times=None))
    with pytest.raises(ServiceError) as raised:
        await graph.get_application(APP_ID)
    assert raised.value.details["status"] == 503
    assert 2 <= sum(1 for r in twin.request_log if r.operation == "getApplication") <= 5


async def test_graph_dropped_connection_is_service_error(twin: Twin, graph: GraphAdapter) -> None:
    twin.faults.add(Fault(service="graph", operation="getApplication", drop=True, times=None))
    with pytest.raises(ServiceError) as raised:
        await graph.get_application(APP_ID)
    assert "could not be reached" in raised.value.message


# ---------------------------------------------------------------------------------------------------------
# Key Vault


async def test_vault_round_trip_with_tags_versions_and_properties(
        twin: Twin, vault: VaultAdapter, caplog: pytest.LogCaptureFixture) -> None:
    current = await vault.get_secret(SECRET_NAME)
    assert isinstance(current, StoredSecret) and current.value == CURRENT_SECRET
    assert_no_leak(repr(current), CURRENT_SECRET)
    assert current.properties.tags == {"keyId": KEY_ID, "appId": APP_ID} and current.properties.enabled

    new_value = "Xy71Q~new-secret-value-for-the-adapter-test"
    expires = (datetime.now(UTC) + timedelta(days=90)).replace(microsecond=0)
    info = await vault.set_secret(SECRET_NAME, new_value, tags={"keyId": "k2", "state": "pending"},
                                  expires_on=expires, content_type="client-secret")
    assert info.name == SECRET_NAME and info.expires_on == expires and info.tags["state"] == "pending"
    latest = await vault.get_secret(SECRET_NAME)
    assert latest.value == new_value and latest.properties.version == info.version
    versions = await vault.list_versions(SECRET_NAME)
    assert [v.version for v in versions] == [current.properties.version, info.version]
    updated = await vault.update_properties(SECRET_NAME, info.version, tags={"keyId": "k2", "state": "committed"})
    assert updated.tags == {"keyId": "k2", "state": "committed"}
    old = await vault.update_properties(SECRET_NAME, current.properties.version, enabled=False)
    assert old.enabled is False
    with pytest.raises(ConflictError) as disabled:
        await vault.get_secret(SECRET_NAME, current.properties.version)
    assert disabled.value.code == "secret_disabled"
    assert_no_leak([caplog, disabled.value], new_value, CURRENT_SECRET, CC_PASSWORD)


async def test_missing_secret_is_secret_not_found(twin: Twin, vault: VaultAdapter) -> None:
    with pytest.raises(NotFoundError) as raised:
        await vault.get_secret("no-such-secret")
    assert raised.value.code == "secret_not_found" and VAULT_NAME in raised.value.message
    assert "SecretNotFound" in raised.value.reason


async def test_vault_rbac_denial_names_the_role_and_vault(twin: Twin, vault: VaultAdapter,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    twin.state.role_assignments = {k: ra for k, ra in twin.state.role_assignments.items()
                                   if ra.scope != VAULT_RESOURCE_ID}
    with pytest.raises(AccessDeniedError) as raised:
        await vault.set_secret(SECRET_NAME, "Zz91Q~a-value-that-must-not-leak-anywhere")
    error = raised.value
    assert "Key Vault Secrets Officer" in error.fix and VAULT_NAME in error.fix
    assert error.details["role"] == "Key Vault Secrets Officer"
    assert "ForbiddenByRbac" in error.reason
    assert_no_leak([caplog, error], "Zz91Q~a-value-that-must-not-leak-anywhere")


async def test_soft_deleted_name_is_a_conflict_explaining_recover_and_purge(twin: Twin, vault: VaultAdapter) -> None:
    await vault.delete_secret(SECRET_NAME)
    with pytest.raises(NotFoundError):
        await vault.get_secret(SECRET_NAME)
    with pytest.raises(ConflictError) as raised:
        await vault.set_secret(SECRET_NAME, "Qq11Q~another-value-123456")
    assert raised.value.code == "secret_deleted_recoverable"
    assert "recover" in raised.value.fix and "purge" in raised.value.fix
    recovered = await vault.recover_deleted_secret(SECRET_NAME)
    assert recovered.name == SECRET_NAME
    assert (await vault.get_secret(SECRET_NAME)).value == CURRENT_SECRET


async def test_vault_throttling_is_retried_and_outage_is_service_error(twin: Twin, vault: VaultAdapter) -> None:
    twin.faults.add(Fault(service="keyvault", operation="getSecret", status=429, retry_after=1))
    assert (await vault.get_secret(SECRET_NAME)).value == CURRENT_SECRET
    twin.faults.add(Fault(service="keyvault", operation="listSecretVersions", status=503, retry_after=0,
                          times=None))
    with pytest.raises(ServiceError) as raised:
        await vault.list_versions(SECRET_NAME)
    assert raised.value.details["status"] == 503


async def test_graph_adapter_uses_the_configured_clouds_graph_host(
        twin: Twin, product_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.config import load_settings

    monkeypatch.setenv("AZURE_CLOUD", "AzureUSGovernment")
    monkeypatch.setenv("KEY_VAULT_URL", f"https://{VAULT_NAME}.vault.usgovcloudapi.net")
    async with ClientFactory(load_settings()) as factory:
        registration = await GraphAdapter(factory).get_application(APP_ID)
    assert registration.object_id == APP_OBJECT_ID
    assert {r.host for r in twin.request_log if r.service == "graph"} == {"graph.microsoft.us"}
