"""The managed identity endpoint answers as App Service does, and the SDK path the product uses retries its
500s as azure-identity does (azure-core's retry policy)."""

from __future__ import annotations

import time

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from shared.clients import ClientFactory
from tests.twin import Fault, Twin
from tests.world import World


def msi_calls(twin: Twin) -> list[int]:
    return [r.status for r in twin.request_log if r.service == "msi"]


def test_unknown_resource_is_a_vague_500_as_on_app_service(twin: Twin, world: World) -> None:
    twin.load(world.scenario())
    env = twin.environment()
    answer = requests.get(env["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01",
                                                            "resource": "api://not-an-app"},
                          headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]}, timeout=5)
    assert answer.status_code == 500
    body = answer.json()
    assert body["statusCode"] == 500 and body["correlationId"]
    assert body["message"] == "An unexpected error occured while fetching the AAD Token."


def test_azure_identity_retries_the_500_then_fails(twin: Twin, world: World) -> None:
    twin.load(world.scenario())
    started = time.monotonic()
    with pytest.raises(ClientAuthenticationError, match="unexpected error"):
        ManagedIdentityCredential().get_token("api://not-an-app/.default")
    assert len(msi_calls(twin)) > 1 and set(msi_calls(twin)) == {500}  # retried, never a different answer
    assert time.monotonic() - started < 30  # bounded


def test_wrong_identity_header_is_401_and_unknown_client_id_400(twin: Twin, world: World) -> None:
    twin.load(world.scenario())
    env = twin.environment()
    params = {"api-version": "2019-08-01", "resource": "https://management.azure.com"}
    wrong = requests.get(env["IDENTITY_ENDPOINT"], params=params, headers={"X-IDENTITY-HEADER": "x"}, timeout=5)
    assert wrong.status_code == 401
    unknown = requests.get(env["IDENTITY_ENDPOINT"], params={**params, "client_id": "0000"},
                           headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]}, timeout=5)
    assert unknown.status_code == 400 and unknown.json()["message"] == "Unable to load the proper Managed Identity."


async def test_product_credential_rides_out_a_transient_500(twin: Twin, clients: ClientFactory) -> None:
    twin.faults.add(Fault(service="msi", operation="token", status=500,
                          body={"statusCode": 500, "message": "An unexpected error occured while fetching the "
                                                              "AAD Token.", "correlationId": "x"}))
    token = await clients.credential.get_token("https://management.azure.com/.default")
    assert twin.tokens.lookup(token.token) is not None
    assert msi_calls(twin) == [500, 200]
