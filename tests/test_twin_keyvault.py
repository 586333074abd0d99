"""Conformance: azure-keyvault-secrets (sync and aio, default constructors, the vault's real host name) against
the twin's Key Vault, through the proxy: challenge auth, versions, tags, soft delete, RBAC, errors."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets.aio import SecretClient as AsyncSecretClient

from tests.twin import Fault, Twin
from tests.world import (
    APP_ID,
    CURRENT_SECRET,
    FUNCTION_OBJECT_ID,
    KEY_ID,
    OTHER_TENANT,
    SECRET_NAME,
    TENANT,
    VAULT_NAME,
    VAULT_RESOURCE_ID,
    VAULT_URL,
    World,
)


def load(twin: Twin, *, vault_role: str | None = "Key Vault Secrets Officer", **vault: Any) -> None:
    twin.reset()
    scenario = World().scenario()
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"] if ra["scope"] != VAULT_RESOURCE_ID]
    if vault_role:
        scenario["role_assignments"].append({"scope": VAULT_RESOURCE_ID, "role": vault_role,
                                             "principal_id": FUNCTION_OBJECT_ID})
    scenario["vaults"][0].update(vault)
    twin.load(scenario)


def client() -> SecretClient:
    # a fresh challenge cache key is not possible (it is process-wide per vault); the twin answers either way
    return SecretClient(VAULT_URL, ManagedIdentityCredential())


def test_challenge_then_get_latest_secret_with_values_and_absolute_ids(twin: Twin) -> None:
    load(twin)
    with client() as kv:
        secret = kv.get_secret(SECRET_NAME)
    assert secret.value == CURRENT_SECRET
    assert secret.name == SECRET_NAME
    assert (secret.id or "").startswith(f"{VAULT_URL}/secrets/{SECRET_NAME}/")
    assert len(secret.properties.version or "") == 32
    assert secret.properties.vault_url == VAULT_URL
    assert secret.properties.tags == {"keyId": KEY_ID, "appId": APP_ID}
    assert secret.properties.expires_on is not None
    assert timedelta(days=199) < secret.properties.expires_on - datetime.now(UTC) <= timedelta(days=200)
    assert secret.properties.enabled is True
    assert secret.properties.recovery_level == "Recoverable+Purgeable"
    kv_log = [r for r in twin.request_log if r.service == "keyvault"]
    assert kv_log[-1].operation == "getSecret" and kv_log[-1].status == 200
    assert kv_log[-1].caller == FUNCTION_OBJECT_ID


def test_first_request_gets_the_real_challenge(twin: Twin) -> None:
    load(twin)
    import http.client
    import ssl

    # What the SDK's first, token-less request sees (the SDK's own challenge cache hides it from later tests).
    ctx = ssl.create_default_context(cafile=str(twin.ca_path))
    conn = http.client.HTTPSConnection("127.0.0.1", twin.proxy_port, context=ctx, timeout=10)
    conn.set_tunnel(f"{VAULT_NAME}.vault.azure.net", 443)
    conn.request("PUT", f"/secrets/{SECRET_NAME}?api-version=7.5", body=b"",
                 headers={"Content-Length": "0", "Host": f"{VAULT_NAME}.vault.azure.net"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 401
    assert response.getheader("WWW-Authenticate") == (
        f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.net"')
    assert response.getheader("Content-Type") == "application/json; charset=utf-8"
    assert b"AKV10000: Request is missing a Bearer or PoP token." in body


def test_set_versions_update_and_get_by_version(twin: Twin) -> None:
    load(twin)
    expires = (datetime.now(UTC) + timedelta(days=90)).replace(microsecond=0)
    with client() as kv:
        first = kv.get_secret(SECRET_NAME)
        new = kv.set_secret(SECRET_NAME, "new-value-1234567890", tags={"keyId": "k2", "operationId": "op"},
                            expires_on=expires, content_type="text/plain")
        assert new.value == "new-value-1234567890" and new.properties.expires_on == expires
        assert new.properties.content_type == "text/plain"
        assert isinstance(new.properties.created_on, datetime)
        assert kv.get_secret(SECRET_NAME).value == "new-value-1234567890"
        assert kv.get_secret(SECRET_NAME, first.properties.version).value == CURRENT_SECRET
        versions = list(kv.list_properties_of_secret_versions(SECRET_NAME))
        assert {v.version for v in versions} == {first.properties.version, new.properties.version}
        assert all(v.name == SECRET_NAME for v in versions)
        updated = kv.update_secret_properties(SECRET_NAME, first.properties.version, enabled=False,
                                              tags={"state": "retired"})
        assert updated.enabled is False and updated.tags == {"state": "retired"}
        with pytest.raises(HttpResponseError) as raised:
            kv.get_secret(SECRET_NAME, first.properties.version)
        assert raised.value.status_code == 403
        assert raised.value.error is not None and raised.value.error.code == "Forbidden"
        assert raised.value.error.message == "Operation get is not allowed on a disabled secret."
        assert raised.value.error.innererror == {"code": "SecretDisabled"}
        names = [p.name or "" for p in kv.list_properties_of_secrets()]
        assert sorted(names) == sorted([SECRET_NAME, "cyclecloud-admin-password"])


def test_missing_secret_and_version_are_secret_not_found(twin: Twin) -> None:
    load(twin)
    with client() as kv:
        with pytest.raises(ResourceNotFoundError) as raised:
            kv.get_secret("no-such-secret")
        assert raised.value.error is not None and raised.value.error.code == "SecretNotFound"
        assert "A secret with (name/id) no-such-secret was not found in this key vault." in str(raised.value)
        with pytest.raises(ResourceNotFoundError):
            kv.get_secret(SECRET_NAME, "0" * 32)


def test_rbac_denial_is_forbidden_by_rbac_with_the_real_layout(twin: Twin) -> None:
    load(twin, vault_role="Key Vault Secrets User")  # may read, may not write
    with client() as kv:
        assert kv.get_secret(SECRET_NAME).value == CURRENT_SECRET
        with pytest.raises(HttpResponseError) as raised:
            kv.set_secret(SECRET_NAME, "x-value-123456")
    assert raised.value.status_code == 403
    error = raised.value.error
    assert error is not None and error.code == "Forbidden" and error.innererror == {"code": "ForbiddenByRbac"}
    lines = (error.message or "").split("\r\n")
    assert lines[0] == "Caller is not authorized to perform action on resource."
    assert f"Caller: appid=bbbbbbbb-1111-4222-8333-444444444444;oid={FUNCTION_OBJECT_ID};" \
           f"iss=https://sts.windows.net/{TENANT}/" in lines
    assert "Action: 'Microsoft.KeyVault/vaults/secrets/setSecret/action'" in lines
    assert f"Resource: '{VAULT_RESOURCE_ID.lower()}/secrets/{SECRET_NAME}'" in lines
    assert "Assignment: (not found)" in lines
    assert "DecisionReason: 'DeniedWithNoValidRBAC' " in lines
    assert f"Vault: {VAULT_NAME};location=eastus" in lines

    load(twin, vault_role=None)
    with client() as kv, pytest.raises(HttpResponseError) as raised:
        kv.get_secret(SECRET_NAME)
    assert raised.value.status_code == 403 and "getSecret/action" in str(raised.value)


def test_soft_delete_conflict_recover_and_purge(twin: Twin) -> None:
    load(twin)
    with client() as kv:
        deleted = kv.begin_delete_secret(SECRET_NAME, _polling_interval=0.1).result()
        assert deleted.recovery_id == f"{VAULT_URL}/deletedsecrets/{SECRET_NAME}"
        assert deleted.deleted_date is not None and deleted.scheduled_purge_date is not None
        with pytest.raises(ResourceNotFoundError):
            kv.get_secret(SECRET_NAME)
        with pytest.raises(ResourceExistsError) as raised:
            kv.set_secret(SECRET_NAME, "reuse-the-name-123")
        assert raised.value.status_code == 409
        assert raised.value.error is not None and raised.value.error.code == "Conflict"
        assert raised.value.error.innererror == {"code": "ObjectIsDeletedButRecoverable"}
        assert "deleted but recoverable state" in (raised.value.error.message or "")
        assert [d.name for d in kv.list_deleted_secrets()] == [SECRET_NAME]
        kv.begin_recover_deleted_secret(SECRET_NAME, _polling_interval=0.1).result()
        assert kv.get_secret(SECRET_NAME).value == CURRENT_SECRET
        kv.begin_delete_secret(SECRET_NAME, _polling_interval=0.1).result()
        kv.purge_deleted_secret(SECRET_NAME)
        with pytest.raises(ResourceNotFoundError) as raised_deleted:
            kv.get_deleted_secret(SECRET_NAME)
        assert "Deleted Secret not found" in str(raised_deleted.value)
        assert kv.set_secret(SECRET_NAME, "fresh-start-123456").value == "fresh-start-123456"


def test_paging_follows_next_link(twin: Twin) -> None:
    load(twin, secrets={f"s-{i}": [{"value": f"value-{i}-123456"}] for i in range(30)})
    with client() as kv:
        names = [p.name or "" for p in kv.list_properties_of_secrets(max_page_size=7)]
    assert sorted(names) == sorted(f"s-{i}" for i in range(30))
    assert sum(1 for r in twin.request_log if r.operation == "listSecrets" and r.status == 200) == 5


def test_throttling_is_retried_after_retry_after(twin: Twin) -> None:
    load(twin)
    twin.faults.add(Fault(service="keyvault", operation="getSecret", status=429, retry_after=1,
                          body={"error": {"code": "Throttled", "message": "Request was not processed because too "
                                                                          "many requests were received."}}))
    started = time.monotonic()
    with client() as kv:
        assert kv.get_secret(SECRET_NAME).value == CURRENT_SECRET
    assert time.monotonic() - started >= 0.9
    assert [r.status for r in twin.request_log if r.operation == "getSecret"][-2:] == [429, 200]


def test_vault_in_another_tenant_challenges_for_that_tenant(twin: Twin) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    scenario = World().scenario()
    scenario["vaults"][0]["tenant_id"] = OTHER_TENANT
    twin.load(scenario)
    # the challenge names the vault's tenant: a single-tenant credential refuses to ask it for a token
    refused = f"not configured to acquire tokens for tenant {OTHER_TENANT}"
    with SecretClient(VAULT_URL, ClientSecretCredential(TENANT, APP_ID, CURRENT_SECRET)) as kv, \
            pytest.raises(ClientAuthenticationError, match=refused):
        kv.get_secret(SECRET_NAME)
    # a managed identity token is always from its own tenant: the vault refuses the issuer
    with client() as kv, pytest.raises(ClientAuthenticationError) as raised:
        kv.get_secret(SECRET_NAME)
    assert raised.value.status_code == 401 and "AKV10032: Invalid issuer" in str(raised.value)


async def test_async_client_round_trip(twin: Twin) -> None:
    load(twin)
    async with AsyncManagedIdentityCredential() as credential, AsyncSecretClient(VAULT_URL, credential) as kv:
        stored = await kv.set_secret("async-secret", "async-value-123456", tags={"a": "b"})
        fetched = await kv.get_secret("async-secret")
        assert fetched.value == "async-value-123456" and fetched.properties.tags == {"a": "b"}
        assert fetched.properties.version == stored.properties.version
        versions = [v.version async for v in kv.list_properties_of_secret_versions("async-secret")]
        assert versions == [stored.properties.version]
        with pytest.raises(ResourceNotFoundError):
            await kv.get_secret("absent")


def test_asynchronous_soft_delete_is_waited_out_by_the_sdk_poller(twin: Twin) -> None:
    scenario_delay = 1.5
    load(twin)
    twin.state.switches.secret_delete_seconds = scenario_delay
    with client() as kv:
        started = time.monotonic()
        poller = kv.begin_delete_secret(SECRET_NAME)
        with pytest.raises(ResourceNotFoundError, match="Deleted Secret not found"):
            kv.get_deleted_secret(SECRET_NAME)  # still being deleted
        with pytest.raises(ResourceExistsError) as raised:
            kv.purge_deleted_secret(SECRET_NAME)
        assert raised.value.status_code == 409
        assert raised.value.message is not None and "Secret is currently being deleted." in raised.value.message
        with pytest.raises(ResourceExistsError):
            kv.set_secret(SECRET_NAME, "too soon")
        poller.wait()  # GETs the deleted secret until it exists (result() alone does not wait)
        deleted = poller.result()
        assert time.monotonic() - started >= scenario_delay * 0.9
        assert deleted.name == SECRET_NAME and deleted.recovery_id
        assert kv.get_deleted_secret(SECRET_NAME).name == SECRET_NAME
        kv.purge_deleted_secret(SECRET_NAME)
    polls = [r.status for r in twin.request_log if r.operation == "getDeletedSecret"]
    assert 404 in polls and polls[-1] == 200


def test_asynchronous_soft_delete_switch_loads_from_the_scenario(twin: Twin) -> None:
    twin.reset()
    scenario = World().scenario()
    scenario["propagation"] = {"secret_delete_seconds": 30}
    twin.load(scenario)
    assert twin.state.switches.secret_delete_seconds == 30


@pytest.mark.parametrize("maxresults", ["0", "26", "-1"])
def test_out_of_range_maxresults_is_refused(twin: Twin, maxresults: str) -> None:
    import requests

    load(twin)
    token = ManagedIdentityCredential().get_token("https://vault.azure.net/.default").token
    answer = requests.get(f"{VAULT_URL}/secrets", params={"api-version": "2025-07-01", "maxresults": maxresults},
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "BadParameter"
    assert "between 1 and 25" in answer.json()["error"]["message"]
