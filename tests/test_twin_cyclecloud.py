"""Conformance of the twin's CycleCloud: own CA, Basic auth, lockout, masked account, update validated against
the twin's Entra ID, dry run, context path, and the Run Command executor's `account show/edit` semantics."""

from __future__ import annotations

import requests

from tests.leaks import assert_no_leak
from tests.twin import Twin
from tests.twin.faults import Fault
from tests.world import APP_ID, CC_HOST, CC_PASSWORD, CC_USER, CURRENT_SECRET, SUBSCRIPTION, VM_ID, World

URL = f"https://{CC_HOST}/cloud/accounts/azure"


def _get(cc_ca: str, password: str = CC_PASSWORD, url: str = URL) -> requests.Response:
    return requests.get(url, auth=(CC_USER, password), verify=cc_ca, timeout=10)


def test_server_uses_its_own_ca_not_the_twin_ca(twin: Twin, world: World, cc_ca: str) -> None:
    twin.load(world.scenario())
    assert _get(cc_ca).status_code == 200
    try:
        requests.get(URL, auth=(CC_USER, CC_PASSWORD), timeout=10)  # REQUESTS_CA_BUNDLE = the twin's CA
    except requests.exceptions.SSLError:
        pass
    else:
        raise AssertionError("the twin's CA must not verify CycleCloud's certificate")


def test_account_is_masked_to_its_hint(twin: Twin, world: World, cc_ca: str) -> None:
    twin.load(world.scenario())
    body = _get(cc_ca).json()
    assert body["AzureRMApplicationSecret"] == CURRENT_SECRET[:3] + "********"
    assert_no_leak(_get(cc_ca).text, CURRENT_SECRET)
    assert body["AzureRMApplicationId"] == APP_ID and body["AzureRMSubscriptionId"] == SUBSCRIPTION


def test_five_failed_logins_in_a_minute_lock_the_user_for_five_minutes(twin: Twin, world: World, cc_ca: str) -> None:
    twin.load(world.scenario())
    for _ in range(5):
        assert _get(cc_ca, "wrong").status_code == 401
    locked = _get(cc_ca)  # even the right password
    assert locked.status_code == 403 and "locked" in locked.json()["message"]
    twin.clock.advance(301)
    assert _get(cc_ca).status_code == 200


def test_failures_spread_over_more_than_a_minute_do_not_lock(twin: Twin, world: World, cc_ca: str) -> None:
    twin.load(world.scenario())
    for _ in range(6):
        assert _get(cc_ca, "wrong").status_code == 401
        twin.clock.advance(15)
    assert _get(cc_ca).status_code == 200


def test_missing_account_is_404(twin: Twin, world: World, cc_ca: str) -> None:
    twin.load(world.scenario())
    answer = _get(cc_ca, url=f"https://{CC_HOST}/cloud/accounts/other")
    assert answer.status_code == 404 and "Account not found" in answer.json()["message"]


def test_update_validates_against_entra_and_rejects_a_bad_secret(twin: Twin, world: World, cc_ca: str) -> None:
    twin.load(world.scenario())
    record = _get(cc_ca).json()
    record["AzureRMApplicationSecret"] = "Xyz-not-a-real-secret"
    answer = requests.put(URL, json=record, auth=(CC_USER, CC_PASSWORD), verify=cc_ca, timeout=10)
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert message.startswith("Invalid Azure credentials provided: AADSTS7000215")
    assert_no_leak(message, "Xyz-not-a-real-secret")
    server = twin.state.cyclecloud_servers[CC_HOST]
    assert server.accounts["azure"]["AzureRMApplicationSecret"] == CURRENT_SECRET  # unchanged


def test_update_rejects_the_masked_value_and_a_missing_role(twin: Twin, world: World, cc_ca: str) -> None:
    scenario = world.scenario()
    scenario["role_assignments"] = scenario["role_assignments"][1:]  # the SP's Contributor is gone
    twin.load(scenario)
    record = _get(cc_ca).json()
    masked = requests.put(URL, json=record, auth=(CC_USER, CC_PASSWORD), verify=cc_ca, timeout=10)
    assert masked.status_code == 400 and "masked" in masked.json()["message"]
    record["AzureRMApplicationSecret"] = CURRENT_SECRET
    denied = requests.put(URL, json=record, auth=(CC_USER, CC_PASSWORD), verify=cc_ca, timeout=10)
    assert denied.status_code == 400
    assert "does not have authorization to perform action 'Microsoft.Storage/storageAccounts/read'" in (
        denied.json()["message"])


def test_dry_run_changes_nothing_and_context_path_is_honoured(twin: Twin, world: World, cc_ca: str) -> None:
    scenario = world.scenario()
    scenario["cyclecloud_servers"][0]["context_path"] = "/cyclecloud"
    twin.load(scenario)
    assert _get(cc_ca).status_code == 404  # no route without the context path
    url = f"https://{CC_HOST}/cyclecloud/cloud/accounts/azure"
    record = _get(cc_ca, url=url).json()
    record.pop("AzureRMApplicationSecret")
    record["Location"] = "westeurope"
    answer = requests.put(url, params={"dry_run": "true"}, json=record, auth=(CC_USER, CC_PASSWORD), verify=cc_ca,
                          timeout=10)
    assert answer.status_code == 200 and answer.json()["dryRun"] is True
    assert twin.state.cyclecloud_servers[CC_HOST].accounts["azure"]["Location"] == "eastus"
    assert [r.operation for r in twin.request_log if r.service == "cyclecloud"] == [
        "unknown", "getAccount", "validateAccount"]


def test_faults_apply_to_cyclecloud_operations(twin: Twin, world: World, cc_ca: str) -> None:
    twin.load(world.scenario())
    twin.faults.add(Fault(service="cyclecloud", operation="getAccount", status=503))
    assert _get(cc_ca).status_code == 503
    assert _get(cc_ca).status_code == 200


def test_run_command_executor_applies_account_edit(twin: Twin, world: World) -> None:
    from shared.adapters.cyclecloud.runcommand import edit_script, show_script

    twin.load(world.scenario())
    vm = twin.state.vm(VM_ID)
    assert vm is not None
    code, out, err = twin.run_command_executor(vm, show_script(), {"CC_ACCOUNT": "azure"}, {})
    assert code == 0 and '"AzureRMApplicationSecret": "Abc********"' in out
    code, out, err = twin.run_command_executor(vm, edit_script(), {"CC_ACCOUNT": "azure"},
                                               {"CC_NEW_SECRET": "wrong-secret-value"})
    assert code == 5 and "AADSTS7000215" in err
    assert_no_leak([out, err], "wrong-secret-value")
    code, out, err = twin.run_command_executor(vm, show_script(), {"CC_ACCOUNT": "nope"}, {})
    assert code == 3 and "account-missing" in out
    leaky = [*edit_script(), "echo wrong-secret-value"]
    code, _, err = twin.run_command_executor(vm, leaky, {"CC_ACCOUNT": "azure"},
                                             {"CC_NEW_SECRET": "wrong-secret-value"})
    assert code == 90  # the twin refuses a script that carries the protected value


# -- misbehaving servers (switches the rotation and probe tests rely on) -------------------------------------


def _server_switch(twin: Twin, world: World, **switches: bool) -> None:
    scenario = world.scenario()
    scenario["cyclecloud_servers"][0].update(switches)
    twin.load(scenario)


def test_masks_secret_fully_shows_no_hint(twin: Twin, world: World, cc_ca: str) -> None:
    _server_switch(twin, world, masks_secret_fully=True)
    record = _get(cc_ca).json()
    assert set(record["AzureRMApplicationSecret"]) == {"*"} and len(record["AzureRMApplicationSecret"]) >= 8
    record["AzureRMApplicationSecret"] = CURRENT_SECRET
    answer = requests.put(URL, json=record, auth=(CC_USER, CC_PASSWORD), verify=cc_ca, timeout=10)
    assert answer.status_code == 200 and set(answer.json()["AzureRMApplicationSecret"]) == {"*"}
    assert_no_leak(answer.text, CURRENT_SECRET[:3])  # not even the hint


def test_ignores_updates_answers_200_and_applies_nothing(twin: Twin, world: World, cc_ca: str) -> None:
    _server_switch(twin, world, ignores_updates=True)
    record = _get(cc_ca).json()
    record["AzureRMApplicationSecret"] = CURRENT_SECRET
    record["Location"] = "westeurope"
    answer = requests.put(URL, json=record, auth=(CC_USER, CC_PASSWORD), verify=cc_ca, timeout=10)
    assert answer.status_code == 200 and answer.json()["Location"] == "westeurope"
    assert twin.state.cyclecloud_servers[CC_HOST].accounts["azure"]["Location"] == "eastus"
    assert _get(cc_ca).json()["Location"] == "eastus"


def test_ignores_dry_run_applies_the_body_as_a_real_update(twin: Twin, world: World, cc_ca: str) -> None:
    _server_switch(twin, world, ignores_dry_run=True)
    record = _get(cc_ca).json()
    record.pop("AzureRMApplicationSecret")
    answer = requests.put(URL, params={"dry_run": "true"}, json=record, auth=(CC_USER, CC_PASSWORD), verify=cc_ca,
                          timeout=10)
    assert answer.status_code == 200 and "dryRun" not in answer.json()
    assert twin.state.cyclecloud_servers[CC_HOST].accounts["azure"]["AzureRMApplicationSecret"] == ""  # lost
    assert [r.operation for r in twin.request_log if r.service == "cyclecloud"] == ["getAccount", "updateAccount"]


def test_run_command_honours_the_server_switches(twin: Twin, world: World) -> None:
    from shared.adapters.cyclecloud.runcommand import edit_script, show_script

    _server_switch(twin, world, masks_secret_fully=True, ignores_updates=True, validates_on_save=False)
    vm = twin.state.vm(VM_ID)
    assert vm is not None
    code, out, _ = twin.run_command_executor(vm, show_script(), {"CC_ACCOUNT": "azure"}, {})
    assert code == 0 and '"AzureRMApplicationSecret": "***********"' in out
    server = twin.state.cyclecloud_servers[CC_HOST]
    code, out, _ = twin.run_command_executor(vm, edit_script(), {"CC_ACCOUNT": "azure"},
                                             {"CC_NEW_SECRET": "Xyz8Q~some-other-secret-value"})
    assert code == 0 and "CCR-RESULT edited" in out
    assert_no_leak(out, "Xyz")
    assert server.accounts["azure"]["AzureRMApplicationSecret"] == CURRENT_SECRET  # unchanged: nothing applied
