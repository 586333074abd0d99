"""Conformance: azure-identity (sync and async, unmodified) against the twin's Entra ID and the App Service
managed identity endpoint, through the proxy with Azure's real host names."""

from __future__ import annotations

import re

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential

from tests.leaks import assert_no_leak
from tests.twin import Twin
from tests.world import APP_ID, ARM_SCOPE, CURRENT_SECRET, KEY_ID, OTHER_TENANT, TENANT, World

EVIDENCE = re.compile(r"Trace ID: [0-9a-f-]{36}.*Correlation ID: [0-9a-f-]{36}.*Timestamp: \d{4}-\d\d-\d\d", re.S)


def test_client_secret_credential_gets_a_token_and_the_twin_knows_who_asked(twin: Twin, world: World) -> None:
    twin.load(world.scenario())
    token = ClientSecretCredential(TENANT, APP_ID, CURRENT_SECRET).get_token(ARM_SCOPE)
    info = twin.tokens.lookup(token.token)
    assert info is not None
    assert (info.tenant_id, info.app_id, info.audience) == (TENANT, APP_ID, "https://management.azure.com")
    assert token.expires_on > 0
    ops = [(r.service, r.operation) for r in twin.request_log]
    assert ("entra", "openidConfiguration") in ops and ("entra", "token") in ops


def test_expired_secret_raises_aadsts7000222_with_trace_and_correlation_ids(twin: Twin) -> None:
    twin.load(World(secret_end="now-1d").scenario())
    with pytest.raises(ClientAuthenticationError) as raised:
        ClientSecretCredential(TENANT, APP_ID, CURRENT_SECRET).get_token(ARM_SCOPE)
    message = str(raised.value)
    assert "AADSTS7000222" in message and "are expired" in message
    assert EVIDENCE.search(message)
    assert_no_leak(message, CURRENT_SECRET)


@pytest.mark.parametrize(
    ("secret", "tenant", "app_id", "code"),
    [
        ("wrong-secret-value", TENANT, APP_ID, "AADSTS7000215"),
        (KEY_ID, TENANT, APP_ID, "AADSTS7000215"),  # the secret ID pasted instead of the value
        (CURRENT_SECRET + " ", TENANT, APP_ID, "AADSTS7000215"),  # trailing whitespace
        (CURRENT_SECRET, OTHER_TENANT, APP_ID, "AADSTS700016"),  # app not in that tenant
        # sync MSAL reads the tenant's OpenID document first; Entra's 400 there becomes this message
        (CURRENT_SECRET, "99999999-9999-4999-8999-999999999999", APP_ID, "Unable to get authority configuration"),
    ],
)
def test_token_errors_carry_the_right_aadsts_code(twin: Twin, world: World, secret: str, tenant: str, app_id: str,
                                                  code: str) -> None:
    twin.load(world.scenario())
    with pytest.raises(ClientAuthenticationError) as raised:
        ClientSecretCredential(tenant, app_id, secret).get_token(ARM_SCOPE)
    assert code in str(raised.value)


async def test_async_client_secret_credential_reports_aadsts7000222(twin: Twin) -> None:
    twin.load(World(secret_end="now-1d").scenario())
    async with AsyncClientSecretCredential(TENANT, APP_ID, CURRENT_SECRET) as cred:
        with pytest.raises(ClientAuthenticationError) as raised:
            await cred.get_token(ARM_SCOPE)
    assert "AADSTS7000222" in str(raised.value)
    assert EVIDENCE.search(str(raised.value))


async def test_async_credential_reports_aadsts90002_for_an_unknown_tenant(twin: Twin, world: World) -> None:
    twin.load(world.scenario())
    async with AsyncClientSecretCredential("99999999-9999-4999-8999-999999999999", APP_ID, CURRENT_SECRET) as cred:
        with pytest.raises(ClientAuthenticationError, match="AADSTS90002"):
            await cred.get_token(ARM_SCOPE)


def test_new_secret_is_refused_during_propagation_then_accepted(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["propagation"] = {"new_secret_seconds": 60}
    scenario["applications"][0]["password_credentials"][0]["created"] = "now"
    twin.load(scenario)
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        ClientSecretCredential(TENANT, APP_ID, CURRENT_SECRET).get_token(ARM_SCOPE)
    twin.clock.advance(61)
    assert ClientSecretCredential(TENANT, APP_ID, CURRENT_SECRET).get_token(ARM_SCOPE).token


def test_managed_identity_credential_sync_and_async(twin: Twin, world: World) -> None:
    twin.load(world.scenario())
    token = ManagedIdentityCredential().get_token("https://vault.azure.net/.default")
    info = twin.tokens.lookup(token.token)
    assert info is not None and info.audience == "https://vault.azure.net"

    async def run() -> str:
        async with AsyncManagedIdentityCredential() as cred:
            return str((await cred.get_token(ARM_SCOPE)).token)

    import asyncio

    assert twin.tokens.lookup(asyncio.run(run())) is not None


def test_managed_identity_off_is_reported(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["principals"][0]["function_identity"] = False
    twin.load(scenario)
    from azure.identity import CredentialUnavailableError

    with pytest.raises((CredentialUnavailableError, ClientAuthenticationError), match="managed identity"):
        ManagedIdentityCredential().get_token(ARM_SCOPE)
