"""What the CycleCloud adapter promises over both transports, each test run once per transport: `rest` (HTTPS to
the server, with its own CA and Basic auth) and `runcommand` (ARM managed Run Command on the CycleCloud VM,
through the twin's ARM). What only one transport does is in test_cyclecloud_rest.py and
test_cyclecloud_runcommand.py."""

from __future__ import annotations

import json

import pytest

from shared.adapters.cyclecloud import (
    CheckStatus,
    CycleCloudAccountMissingError,
    CycleCloudClient,
    CycleCloudReadBackMismatchError,
    CycleCloudUpdateRejectedError,
)
from tests.cyclecloud_helpers import add_app_secret, cc_requests, cc_server
from tests.leaks import assert_no_leak
from tests.twin import Twin
from tests.world import APP_ID, CC_PASSWORD, CURRENT_SECRET, NEW_SECRET, TENANT, VM_ID, WRONG_SECRET, World

ALL_SECRETS = (CURRENT_SECRET, CC_PASSWORD, NEW_SECRET, WRONG_SECRET)


@pytest.fixture(params=["rest", "runcommand"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def world(transport: str) -> World:
    return World(transport=transport)


async def test_happy_path_probe_read_update_verify(twin: Twin, transport: str, cc: CycleCloudClient,
                                                   log_text: pytest.LogCaptureFixture) -> None:
    result = await cc.probe()
    assert result.ok, result.to_dict()
    assert result.transport == transport
    assert [c.name for c in result.checks] == ["reachable", "tls", "login", "account", "update_path"]
    if transport == "runcommand":  # no TLS of its own: ARM's
        assert result.check("tls").status is CheckStatus.SKIPPED
    assert cc_server(twin).accounts["azure"]["AzureRMApplicationSecret"] == CURRENT_SECRET  # probe changed nothing

    account = await cc.read_account()
    assert (account.app_id, account.tenant_id, account.secret_hint) == (APP_ID, TENANT, CURRENT_SECRET[:3])
    assert_no_leak(repr(account), CURRENT_SECRET)

    before = dict(cc_server(twin).accounts["azure"])
    await cc.update_secret(add_app_secret(twin))
    after = cc_server(twin).accounts["azure"]
    assert after["AzureRMApplicationSecret"] == NEW_SECRET
    assert {k: v for k, v in after.items() if k != "AzureRMApplicationSecret"} == {
        k: v for k, v in before.items() if k != "AzureRMApplicationSecret"}  # nothing else changed

    verified = await cc.verify(app_id=APP_ID, tenant_id=TENANT, secret_hint=NEW_SECRET[:3])
    assert verified.secret_hint == NEW_SECRET[:3] == "Nw7"
    if transport == "runcommand":
        assert cc_requests(twin) == []  # no network path to CycleCloud was needed
        assert "createRunCommand" in [r.operation for r in twin.request_log if r.service == "arm"]
        vm = twin.state.vm(VM_ID)
        assert vm is not None
        assert_no_leak(json.dumps(vm.run_commands, default=str), *ALL_SECRETS)  # what ARM keeps
    assert_no_leak([log_text, json.dumps(result.to_dict())], *ALL_SECRETS)


async def test_account_missing(twin: Twin, cc: CycleCloudClient) -> None:
    del cc_server(twin).accounts["azure"]
    with pytest.raises(CycleCloudAccountMissingError) as raised:
        await cc.read_account()
    assert "cyclecloud.account" in raised.value.fix
    result = await cc.probe()
    assert result.check("login").status is CheckStatus.OK
    assert result.check("account").status is CheckStatus.FAILED
    assert result.check("update_path").status is CheckStatus.SKIPPED


async def test_update_rejected_because_the_secret_is_invalid(twin: Twin, cc: CycleCloudClient,
                                                             log_text: pytest.LogCaptureFixture) -> None:
    with pytest.raises(CycleCloudUpdateRejectedError) as raised:
        await cc.update_secret(WRONG_SECRET)
    assert "Invalid Azure credentials provided: AADSTS7000215" in raised.value.reason
    assert cc_server(twin).accounts["azure"]["AzureRMApplicationSecret"] == CURRENT_SECRET
    assert_no_leak([log_text, str(raised.value), json.dumps(raised.value.to_dict())], *ALL_SECRETS)


async def test_read_back_mismatch(twin: Twin, cc: CycleCloudClient) -> None:
    cc_server(twin).accounts["azure"]["AzureRMTenantId"] = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(CycleCloudReadBackMismatchError, match="tenant id"):
        await cc.verify(app_id=APP_ID, tenant_id=TENANT)
    cc_server(twin).accounts["azure"]["AzureRMTenantId"] = TENANT

    await cc.update_secret(add_app_secret(twin))
    cc_server(twin).accounts["azure"]["AzureRMApplicationId"] = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(CycleCloudReadBackMismatchError) as raised:
        await cc.verify(app_id=APP_ID, tenant_id=TENANT)
    assert "application id is '00000000-0000-4000-8000-000000000000'" in raised.value.reason
    with pytest.raises(CycleCloudReadBackMismatchError, match="hint"):
        cc_server(twin).accounts["azure"]["AzureRMApplicationId"] = APP_ID
        await cc.verify(app_id=APP_ID, tenant_id=TENANT, secret_hint=CURRENT_SECRET[:3])
