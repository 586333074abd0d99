"""Conformance: the unmodified msgraph-sdk (default GraphServiceClient constructor, and the ClientFactory's
client) against the twin's Microsoft Graph, through the proxy with Graph's real host name."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.identity import ClientSecretCredential
from azure.identity.aio import ManagedIdentityCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
    RemovePasswordPostRequestBody,
)
from msgraph.generated.applications_with_app_id.applications_with_app_id_request_builder import (
    ApplicationsWithAppIdRequestBuilder,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph.graph_service_client import GraphServiceClient

from tests.leaks import assert_no_leak
from tests.twin import Fault, Twin
from tests.twin.control import snapshot
from tests.world import (
    APP_ID,
    APP_OBJECT_ID,
    ARM_SCOPE,
    CURRENT_SECRET,
    FUNCTION_OBJECT_ID,
    KEY_ID,
    SP_OBJECT_ID,
    TENANT,
    World,
)

NOT_FOUND = re.compile(r"^Resource '[^']+' does not exist or one of its queried reference-property objects are "
                       r"not present\.$")


@pytest.fixture
async def graph(twin: Twin) -> AsyncIterator[GraphServiceClient]:
    """Graph's documented default construction: a credential, nothing else."""
    credential = ManagedIdentityCredential()
    yield GraphServiceClient(credentials=credential)
    await credential.close()


def load(twin: Twin, **changes: Any) -> dict[str, Any]:
    scenario = World().scenario()
    app = scenario["applications"][0]
    function = scenario["principals"][0]
    for key, value in changes.items():
        if key == "graph_app_roles":
            function["graph_app_roles"] = value
        elif key == "owners":
            app["owners"] = value
        else:
            app[key] = value
    twin.load(scenario)
    return scenario


def select(*fields: str) -> RequestConfiguration[Any]:
    query = ApplicationsWithAppIdRequestBuilder.ApplicationsWithAppIdRequestBuilderGetQueryParameters(
        select=list(fields)
    )
    return RequestConfiguration(query_parameters=query)


def add_body(display_name: str = "rotation", end: datetime | None = None) -> AddPasswordPostRequestBody:
    return AddPasswordPostRequestBody(password_credential=PasswordCredential(display_name=display_name,
                                                                             end_date_time=end))


# ---------------------------------------------------------------------------------------------------------
# reads


async def test_get_application_by_app_id_honours_select(twin: Twin, graph: GraphServiceClient) -> None:
    load(twin)
    app = await graph.applications_with_app_id(APP_ID).get(
        request_configuration=select("id", "appId", "passwordCredentials"))
    assert app is not None
    assert (app.id, app.app_id) == (APP_OBJECT_ID, APP_ID)
    assert app.display_name is None  # not selected, not sent
    [cred] = app.password_credentials or []
    assert str(cred.key_id) == KEY_ID and cred.hint == CURRENT_SECRET[:3] and cred.secret_text is None
    assert cred.display_name == "initial"
    assert cred.end_date_time is not None
    assert timedelta(days=199) < cred.end_date_time - datetime.now(UTC) <= timedelta(days=200)
    log = [r for r in twin.request_log if r.service == "graph"]
    assert log[-1].operation == "getApplication" and log[-1].status == 200
    assert "applications(appId='" in log[-1].path


async def test_get_by_object_id_filter_and_service_principal(twin: Twin, graph: GraphServiceClient) -> None:
    load(twin)
    app = await graph.applications.by_application_id(APP_OBJECT_ID).get()
    assert app is not None and app.app_id == APP_ID and app.display_name == "cyclecloud-sp"

    query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(filter=f"appId eq '{APP_ID}'")
    listed = await graph.applications.get(request_configuration=RequestConfiguration(query_parameters=query))
    assert listed is not None and [a.id for a in listed.value or []] == [APP_OBJECT_ID]

    sp = await graph.service_principals_with_app_id(APP_ID).get()
    assert sp is not None and (sp.id, sp.app_id) == (SP_OBJECT_ID, APP_ID)


async def test_unknown_app_is_request_resource_not_found(twin: Twin, graph: GraphServiceClient) -> None:
    load(twin)
    missing = str(uuid.uuid4())
    with pytest.raises(ODataError) as raised:
        await graph.applications_with_app_id(missing).get()
    assert raised.value.response_status_code == 404
    assert raised.value.error is not None and raised.value.error.code == "Request_ResourceNotFound"
    assert NOT_FOUND.match(raised.value.error.message or "")
    assert missing in (raised.value.error.message or "")
    inner = raised.value.error.inner_error
    assert inner is not None and inner.request_id and inner.date is not None
    with pytest.raises(ODataError) as raised:
        await graph.service_principals_with_app_id(missing).get()
    assert raised.value.response_status_code == 404


@pytest.mark.parametrize(("roles", "owners", "readable", "writable"), [
    ([], [FUNCTION_OBJECT_ID], False, False),
    (["Application.ReadWrite.OwnedBy"], [], False, False),  # OwnedBy but not an owner
    (["Application.Read.All"], [], True, False),
    (["Application.ReadWrite.All"], [], True, True),
    (["Application.ReadWrite.OwnedBy"], [FUNCTION_OBJECT_ID], True, True),
])
async def test_permissions_are_enforced_with_graphs_403(twin: Twin, graph: GraphServiceClient, roles: list[str],
                                                        owners: list[str], readable: bool, writable: bool) -> None:
    load(twin, graph_app_roles=roles, owners=owners)
    try:
        await graph.applications_with_app_id(APP_ID).get()
        read_ok = True
    except ODataError as exc:
        assert exc.response_status_code == 403 and exc.error is not None
        assert exc.error.code == "Authorization_RequestDenied"
        assert exc.error.message == "Insufficient privileges to complete the operation."
        read_ok = False
    try:
        await graph.applications.by_application_id(APP_OBJECT_ID).add_password.post(add_body())
        write_ok = True
    except ODataError as exc:
        assert exc.response_status_code == 403 and exc.error is not None
        assert exc.error.code == "Authorization_RequestDenied"
        write_ok = False
    assert (read_ok, write_ok) == (readable, writable)


async def test_wrong_audience_token_is_invalid_authentication_token(twin: Twin) -> None:
    load(twin)
    async with ManagedIdentityCredential() as credential:
        client = GraphServiceClient(credentials=credential, scopes=[ARM_SCOPE])
        with pytest.raises(ODataError) as raised:
            await client.applications_with_app_id(APP_ID).get()
    assert raised.value.response_status_code == 401
    assert raised.value.error is not None and raised.value.error.code == "InvalidAuthenticationToken"


# ---------------------------------------------------------------------------------------------------------
# addPassword / removePassword


async def test_add_password_returns_the_secret_once_and_it_gets_a_token(twin: Twin,
                                                                        graph: GraphServiceClient) -> None:
    load(twin)
    before = datetime.now(UTC)
    created = await graph.applications.by_application_id(APP_OBJECT_ID).add_password.post(add_body("op-1"))
    assert created is not None and created.secret_text is not None
    secret = created.secret_text
    assert len(secret) == 40 and created.hint == secret[:3] and created.display_name == "op-1"
    assert created.custom_key_identifier is None
    assert created.start_date_time is not None and created.end_date_time is not None
    assert abs((created.start_date_time - before).total_seconds()) < 60
    assert timedelta(days=729) < created.end_date_time - created.start_date_time < timedelta(days=732)

    # the secret value is never listed again, and the twin does not keep it
    app = await graph.applications_with_app_id(APP_ID).get(request_configuration=select("id", "passwordCredentials"))
    assert app is not None
    listed = {str(c.key_id): c for c in app.password_credentials or []}
    assert set(listed) == {KEY_ID, str(created.key_id)}
    assert all(c.secret_text is None for c in listed.values())
    assert_no_leak([json.dumps(snapshot(twin)), repr(twin.state.applications)], secret)

    # and it works at the token endpoint
    token = ClientSecretCredential(TENANT, APP_ID, secret).get_token(ARM_SCOPE)
    info = twin.tokens.lookup(token.token)
    assert info is not None and info.app_id == APP_ID and info.object_id == SP_OBJECT_ID


async def test_add_password_with_explicit_end_and_by_app_id_path(twin: Twin, graph: GraphServiceClient) -> None:
    load(twin)
    end = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    builder = graph.applications.by_application_id(APP_OBJECT_ID).add_password.with_url(
        f"https://graph.microsoft.com/v1.0/applications(appId='{APP_ID}')/addPassword")
    created = await builder.post(add_body("by-app-id", end))
    assert created is not None and created.end_date_time == end
    assert twin.request_log[-1].path == f"/v1.0/applications(appId='{APP_ID}')/addPassword"


async def test_remove_password_by_key_id_and_unknown_key(twin: Twin, graph: GraphServiceClient) -> None:
    load(twin)
    items = graph.applications.by_application_id(APP_OBJECT_ID)
    await items.remove_password.post(RemovePasswordPostRequestBody(key_id=uuid.UUID(KEY_ID)))
    assert twin.request_log[-1].status == 204
    assert twin.state.applications[APP_OBJECT_ID].password_credentials == []
    with pytest.raises(ODataError) as raised:
        await items.remove_password.post(RemovePasswordPostRequestBody(key_id=uuid.UUID(KEY_ID)))
    assert raised.value.response_status_code == 404
    assert raised.value.error is not None and raised.value.error.code == "Request_ResourceNotFound"
    # the removed secret no longer gets a token
    from azure.core.exceptions import ClientAuthenticationError

    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        ClientSecretCredential(TENANT, APP_ID, CURRENT_SECRET).get_token(ARM_SCOPE)


async def test_throttled_add_password_is_retried_after_retry_after(twin: Twin, graph: GraphServiceClient) -> None:
    load(twin)
    twin.faults.add(Fault(service="graph", operation="addPassword", status=429, retry_after=1,
                          body={"error": {"code": "TooManyRequests", "message": "Too many requests."}}))
    started = time.monotonic()
    created = await graph.applications.by_application_id(APP_OBJECT_ID).add_password.post(add_body())
    assert created is not None and created.secret_text
    assert time.monotonic() - started >= 0.9
    attempts = [r.status for r in twin.request_log if r.operation == "addPassword"]
    assert attempts == [429, 200]
    assert len(twin.state.applications[APP_OBJECT_ID].password_credentials) == 2


# ---------------------------------------------------------------------------------------------------------
# app management policy


async def test_lifetime_policy_refuses_long_secrets_like_graph(twin: Twin, graph: GraphServiceClient) -> None:
    load(twin, max_password_lifetime_days=90)
    items = graph.applications.by_application_id(APP_OBJECT_ID)
    with pytest.raises(ODataError) as raised:
        await items.add_password.post(add_body())  # Graph's default: two years
    assert raised.value.response_status_code == 400
    assert raised.value.error is not None
    assert raised.value.error.code == "CredentialInvalidLifetimeAsPerAppPolicy"
    assert re.match(r"Credential lifetime exceeds the max value allowed as per assigned policy '[0-9a-f-]{36}'\.$",
                    raised.value.error.message or "")
    ok = await items.add_password.post(add_body(end=datetime.now(UTC) + timedelta(days=89)))
    assert ok is not None and ok.secret_text


async def test_blocked_password_addition(twin: Twin, graph: GraphServiceClient) -> None:
    load(twin, password_addition_blocked=True)
    with pytest.raises(ODataError) as raised:
        await graph.applications.by_application_id(APP_OBJECT_ID).add_password.post(add_body())
    assert raised.value.response_status_code == 400
    assert raised.value.error is not None and raised.value.error.code == "CredentialTypeNotAllowedAsPerAppPolicy"


async def test_policy_is_readable_with_policy_read_permission_only(twin: Twin, graph: GraphServiceClient) -> None:
    load(twin, max_password_lifetime_days=90)
    with pytest.raises(ODataError) as raised:
        await graph.applications.by_application_id(APP_OBJECT_ID).app_management_policies.get()
    assert raised.value.response_status_code == 403

    twin.state.principals[FUNCTION_OBJECT_ID].graph_app_roles.add("Policy.Read.ApplicationConfiguration")
    policies = await graph.applications.by_application_id(APP_OBJECT_ID).app_management_policies.get()
    assert policies is not None
    [policy] = policies.value or []
    assert policy.is_enabled is True and policy.restrictions is not None
    [restriction] = policy.restrictions.password_credentials or []
    assert restriction.max_lifetime == timedelta(days=90)
    default = await graph.policies.default_app_management_policy.get()
    assert default is not None and default.is_enabled is False


async def test_client_factory_graph_client_speaks_the_same_wire(twin: Twin, settings: Any) -> None:
    from shared.clients import ClientFactory

    async with ClientFactory(settings) as factory:
        client = factory.graph()
        app = await client.applications_with_app_id(APP_ID).get(request_configuration=select("id", "appId"))
        assert app is not None and (app.id, app.app_id) == (APP_OBJECT_ID, APP_ID)
        created = await client.applications.by_application_id(APP_OBJECT_ID).add_password.post(add_body("factory"))
        assert created is not None and created.hint == (created.secret_text or "")[:3]
    log = [r for r in twin.request_log if r.service == "graph"]
    assert [(r.operation, r.status, r.caller) for r in log] == [
        ("getApplication", 200, FUNCTION_OBJECT_ID), ("addPassword", 200, FUNCTION_OBJECT_ID)]


async def test_lifetime_refusal_carries_graphs_details_and_inner_error_date(twin: Twin,
                                                                             graph: GraphServiceClient) -> None:
    """The raw body as Graph sends it (OfficeDev/microsoft-365-agents-toolkit#10998), and kiota still parses it."""
    import requests

    load(twin, max_password_lifetime_days=90)
    from azure.identity import ManagedIdentityCredential as SyncManagedIdentityCredential

    bearer = SyncManagedIdentityCredential().get_token("https://graph.microsoft.com/.default").token
    raw = requests.post(f"https://graph.microsoft.com/v1.0/applications/{APP_OBJECT_ID}/addPassword",
                        json={"passwordCredential": {"displayName": "x"}},
                        headers={"Authorization": f"Bearer {bearer}"}, timeout=10)
    assert raw.status_code == 400
    error = raw.json()["error"]
    assert list(error) == ["code", "message", "details", "innerError"]
    assert error["details"] == [{"code": "InvalidKeyEndDate", "message": error["message"], "target": "EndDate"}]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", error["innerError"]["date"])  # no fraction, no Z
    with pytest.raises(ODataError) as raised:  # the SDK reads that shape (details and the zone-less date)
        await graph.applications.by_application_id(APP_OBJECT_ID).add_password.post(add_body())
    assert raised.value.error is not None and raised.value.error.details
    assert raised.value.error.details[0].code == "InvalidKeyEndDate"


async def test_tenant_default_policy_can_be_enabled_and_applies_without_an_assigned_policy(
        twin: Twin, graph: GraphServiceClient) -> None:
    scenario = World().scenario()
    scenario["tenants"][0]["default_app_management_policy"] = {"enabled": True, "max_password_lifetime_days": 30}
    scenario["principals"][0]["graph_app_roles"].append("Policy.Read.ApplicationConfiguration")
    twin.load(scenario)
    default = await graph.policies.default_app_management_policy.get()
    assert default is not None and default.is_enabled is True
    assert default.id == "00000000-0000-0000-0000-000000000000"
    assert default.application_restrictions is not None
    [restriction] = default.application_restrictions.password_credentials or []
    assert restriction.max_lifetime == timedelta(days=30)
    assigned = await graph.applications.by_application_id(APP_OBJECT_ID).app_management_policies.get()
    assert assigned is not None and not assigned.value  # nothing assigned to the app itself
    with pytest.raises(ODataError) as raised:
        await graph.applications.by_application_id(APP_OBJECT_ID).add_password.post(add_body())
    assert raised.value.error is not None and raised.value.error.code == "CredentialInvalidLifetimeAsPerAppPolicy"
    assert "'00000000-0000-0000-0000-000000000000'" in (raised.value.error.message or "")
    ok = await graph.applications.by_application_id(APP_OBJECT_ID).add_password.post(
        add_body(end=datetime.now(UTC) + timedelta(days=29)))
    assert ok is not None and ok.secret_text
    # an app's own policy overrides the tenant default
    twin.state.applications[APP_OBJECT_ID].max_password_lifetime_days = 365
    longer = await graph.applications.by_application_id(APP_OBJECT_ID).add_password.post(
        add_body(end=datetime.now(UTC) + timedelta(days=200)))
    assert longer is not None
