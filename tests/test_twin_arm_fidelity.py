"""ARM fidelity: api-versions outside each route's accepted list get Azure's answer, the Activity Log pages with
`nextLink`, accepts only Azure's `$filter` forms and prints 7 fractional digits; and the product's reader
follows the pages."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.mgmt.resource.subscriptions import SubscriptionClient

from shared.adapters.rbac import RbacAdapter
from shared.clients import ClientFactory
from shared.config import Settings
from tests.twin import Twin
from tests.twin.services.arm_versions import ACCEPTED
from tests.world import APP_ID, ARM_ENDPOINT, ARM_SCOPE, SP_OBJECT_ID, SUB_SCOPE, SUBSCRIPTION, VM_ID, World

EVENTS = f"{SUB_SCOPE}/providers/Microsoft.Insights/eventtypes/management/values"


def get(path: str, params: dict[str, str] | None = None) -> requests.Response:
    token = ManagedIdentityCredential().get_token(ARM_SCOPE).token
    return requests.get(f"{ARM_ENDPOINT}{path}" if path.startswith("/") else path, params=params,
                        headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.fixture
def loaded(twin: Twin, world: World) -> dict[str, Any]:
    scenario = world.scenario()
    twin.load(scenario)
    return scenario


# -- api-version ------------------------------------------------------------------------------------------------


def test_every_route_accepts_what_the_pinned_sdks_send() -> None:
    sent = {"listSubscriptions": "2022-12-01", "getSubscription": "2022-12-01",  # subscriptions 1.0.0
            "createRoleAssignment": "2022-04-01", "listRoleAssignments": "2022-04-01",  # authorization 4.0.0
            "getRoleDefinition": "2022-04-01", "listRoleDefinitions": "2022-04-01",
            "listPermissions": "2022-04-01", "listPolicyAssignments": "2023-04-01",  # shared/adapters/rbac.py
            "listActivityLog": "2015-04-01", "getVirtualMachine": "2026-04-01",  # compute 39.0.0
            "createRunCommand": "2026-04-01", "getRunCommand": "2026-04-01", "deleteRunCommand": "2026-04-01"}
    for operation, version in sent.items():
        assert version in ACCEPTED[operation].versions, operation


def test_subscriptions_refuse_an_unknown_api_version_with_invalid_api_version_parameter(loaded: Any) -> None:
    client = SubscriptionClient(ManagedIdentityCredential(), api_version="2099-01-01")
    with pytest.raises(HttpResponseError) as raised:
        client.subscriptions.get(SUBSCRIPTION)
    assert raised.value.status_code == 400
    assert raised.value.error is not None and raised.value.error.code == "InvalidApiVersionParameter"
    assert re.match(r"The api-version '2099-01-01' is invalid\. The supported versions are '2024-08-01,[^ ]*"
                    r"2022-12-01,[^ ]*'\.$", str(raised.value.error.message))


def test_authorization_types_answer_invalid_resource_type_404(loaded: Any) -> None:
    answer = get(f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleAssignments",
                 {"api-version": "2020-10-01-preview", "$filter": "atScope()"})
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "InvalidResourceType"
    assert error["message"].startswith("The resource type 'roleAssignments' could not be found in the namespace "
                                       "'Microsoft.Authorization' for api version '2020-10-01-preview'. The "
                                       "supported api-versions are '2022-04-01,")


def test_compute_answers_no_registered_provider_found_naming_the_vm_location(loaded: Any) -> None:
    answer = get(VM_ID, {"api-version": "2015-01-01"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "NoRegisteredProviderFound"
    assert error["message"].startswith("No registered resource provider found for location 'eastus' and API "
                                       "version '2015-01-01' for type 'virtualMachines'. The supported "
                                       "api-versions are '2026-04-01, ")


def test_a_missing_api_version_is_missing_api_version_parameter(loaded: Any) -> None:
    answer = get(SUB_SCOPE)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "MissingApiVersionParameter"


def test_a_lagging_cloud_narrows_a_route(twin: Twin, world: World) -> None:
    """A sovereign cloud behind public cloud: the SDK's default is not there yet."""
    scenario = world.scenario()
    scenario["arm_api_versions"] = {"getSubscription": ["2021-01-01", "2020-01-01"]}
    twin.load(scenario)
    with pytest.raises(HttpResponseError) as raised:
        SubscriptionClient(ManagedIdentityCredential()).subscriptions.get(SUBSCRIPTION)
    assert raised.value.error is not None and raised.value.error.code == "InvalidApiVersionParameter"
    assert "The supported versions are '2021-01-01,2020-01-01'." in str(raised.value.error.message)
    assert SubscriptionClient(ManagedIdentityCredential(), api_version="2021-01-01").subscriptions.get(SUBSCRIPTION)


def test_an_unknown_operation_in_arm_api_versions_is_refused(twin: Twin) -> None:
    with pytest.raises(ValueError, match="getSubscriptions"):
        twin.load({"arm_api_versions": {"getSubscriptions": ["2022-12-01"]}})


# -- Activity Log ---------------------------------------------------------------------------------------------


def failures(count: int, caller: str = APP_ID) -> list[dict[str, Any]]:
    return [{"subscription_id": SUBSCRIPTION, "caller": caller, "timestamp": f"now-{i + 1}h",
             "operation_name": f"Microsoft.Storage/storageAccounts/read{i}", "resource_id": SUB_SCOPE,
             "message": '{"error":{"code":"AuthorizationFailed","message":"denied ' + str(i) + '"}}'}
            for i in range(count)]


def window(twin: Twin) -> str:
    start = (twin.clock.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"eventTimestamp ge '{start}'"


def test_activity_log_pages_with_an_absolute_next_link(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["activity_log"] = failures(5)
    scenario["paging"] = {"activity_log_page_size": 2}
    twin.load(scenario)
    first = get(EVENTS, {"api-version": "2015-04-01", "$filter": window(twin)}).json()
    seen = [e["operationName"]["value"] for e in first["value"]]
    link = first["nextLink"]
    pages = 1
    while link:
        assert link.startswith(f"{ARM_ENDPOINT}{SUB_SCOPE}/providers/Microsoft.Insights/eventtypes/management/values?"
                               "api-version=2015-04-01&$filter=")
        assert "$skiptoken=" in link
        body = get(link).json()
        seen += [e["operationName"]["value"] for e in body["value"]]
        link = body.get("nextLink")
        pages += 1
    assert pages == 3
    assert seen == [f"Microsoft.Storage/storageAccounts/read{i}" for i in range(5)]  # newest first, each once


def test_activity_log_timestamps_have_seven_fractional_digits(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["activity_log"] = failures(1)
    twin.load(scenario)
    [event] = get(EVENTS, {"api-version": "2015-04-01", "$filter": window(twin)}).json()["value"]
    for field in ("eventTimestamp", "submissionTimestamp"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", event[field]), event[field]
    ticks = int(event["id"].rsplit("/ticks/", 1)[1])
    assert 630_000_000_000_000_000 < ticks < 700_000_000_000_000_000  # .NET ticks since year 1, as Azure prints


@pytest.mark.parametrize("bad", [
    "",  # the time window is required
    "caller eq 'x'",
    "eventTimestamp ge '2026-01-01T00:00:00Z' or caller eq 'x'",
    "eventTimestamp ge '2026-01-01T00:00:00Z' and operationName eq 'x'",
    "eventTimestamp ge '2026-01-01T00:00:00Z' and caller ne 'x'",
    "eventTimestamp ge '2026-01-01T00:00:00Z' and resourceGroupName eq 'a' and resourceProvider eq 'b'",
    "eventTimestamp ge 2026-01-01",
])
def test_activity_log_refuses_filter_forms_azure_does_not_allow(loaded: Any, bad: str) -> None:
    answer = get(EVENTS, {"api-version": "2015-04-01", "$filter": bad})
    assert answer.status_code == 400, bad
    assert answer.json()["error"]["code"] == "BadRequest"


def test_activity_log_allowed_filters_select(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["activity_log"] = [*failures(2), *failures(1, caller="someone@contoso.com")]
    scenario["activity_log"][-1]["resource_id"] = VM_ID
    twin.load(scenario)
    by_caller = get(EVENTS, {"api-version": "2015-04-01",
                             "$filter": f"{window(twin)} and caller eq '{APP_ID}' and status eq 'Failed'"})
    assert len(by_caller.json()["value"]) == 2
    by_group = get(EVENTS, {"api-version": "2015-04-01",
                            "$filter": f"{window(twin)} and resourceGroupName eq 'rg-cyclecloud'"})
    assert [e["caller"] for e in by_group.json()["value"]] == ["someone@contoso.com"]


async def test_product_reads_every_page_of_the_activity_log(twin: Twin, world: World, settings: Settings,
                                                            clients: ClientFactory) -> None:
    scenario = world.scenario()
    scenario["activity_log"] = failures(7)
    scenario["paging"] = {"activity_log_page_size": 2}
    twin.reset()
    twin.load(scenario)
    since = twin.clock.now() - timedelta(days=1)
    events = await RbacAdapter(clients).failed_operations(SUBSCRIPTION, [APP_ID, SP_OBJECT_ID], since)
    assert [e.message for e in events] == [f"denied {i}" for i in range(7)]
    reads = [r for r in twin.request_log if r.operation == "listActivityLog"]
    assert len(reads) == 4 and all(r.status == 200 for r in reads)


# -- shapes of the published examples (azure-rest-api-specs) ----------------------------------------------------

# Keys (with their casing) of the 200 bodies in the specs' examples; the twin may add fields, never miss or
# re-case one. Microsoft.Authorization stable/2022-04-01 examples/RoleAssignments_Get.json, GetRoleDefinitionById.json;
# Microsoft.Insights stable/2015-04-01 examples/GetActivityLogsFiltered.json.
ROLE_ASSIGNMENT_KEYS = {"id", "name", "type", "properties"}
ROLE_ASSIGNMENT_PROPERTIES = {"roleDefinitionId", "principalId", "principalType", "scope"}
ROLE_DEFINITION_PROPERTIES = {"roleName", "type", "description", "assignableScopes", "permissions"}
PERMISSION_KEYS = {"actions", "notActions", "dataActions", "notDataActions"}
EVENT_KEYS = {"authorization", "caller", "claims", "correlationId", "eventDataId", "eventName", "id", "level",
              "resourceGroupName", "resourceProviderName", "operationId", "operationName", "properties", "status",
              "subStatus", "eventTimestamp", "submissionTimestamp", "subscriptionId"}


def test_bodies_carry_every_field_of_the_published_examples(twin: Twin, world: World) -> None:
    scenario = world.scenario()
    scenario["activity_log"] = failures(1)
    twin.load(scenario)
    assignments = get(f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleAssignments",
                      {"api-version": "2022-04-01", "$filter": "atScope()"}).json()["value"]
    assert assignments
    for body in assignments:
        assert ROLE_ASSIGNMENT_KEYS <= set(body) and ROLE_ASSIGNMENT_PROPERTIES <= set(body["properties"])
        assert body["type"] == "Microsoft.Authorization/roleAssignments"
    one = get(assignments[0]["id"], {"api-version": "2022-04-01"}).json()
    assert one["id"] == assignments[0]["id"] and ROLE_ASSIGNMENT_PROPERTIES <= set(one["properties"])
    definition = get(f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/"
                     "b24988ac-6180-42a0-ab88-20f7382dd24c", {"api-version": "2022-04-01"}).json()
    assert ROLE_DEFINITION_PROPERTIES <= set(definition["properties"])
    assert definition["type"] == "Microsoft.Authorization/roleDefinitions"
    assert all(set(p) == PERMISSION_KEYS for p in definition["properties"]["permissions"])
    [event] = get(EVENTS, {"api-version": "2015-04-01", "$filter": window(twin)}).json()["value"]
    assert EVENT_KEYS <= set(event)
    for localizable in ("eventName", "operationName", "status", "subStatus", "resourceProviderName"):
        assert set(event[localizable]) == {"value", "localizedValue"}
