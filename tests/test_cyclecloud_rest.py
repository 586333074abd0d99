"""The CycleCloud adapter's `rest` transport against the twin's CycleCloud: real HTTPS through the proxy,
the server's own CA, Basic auth with CycleCloud's lockout, Key Vault for the password. (What both transports
promise is in test_cyclecloud_transports.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from shared.adapters.cyclecloud import (
    CheckStatus,
    CycleCloudClient,
    CycleCloudLockedOutError,
    CycleCloudLoginError,
    CycleCloudLoginPausedError,
    CycleCloudTlsError,
    CycleCloudUnreachableError,
    login_guard,
    open_cyclecloud,
)
from shared.context import AppContext
from shared.cyclecloud_probe import probe_target
from tests.cyclecloud_helpers import add_app_secret, cc_requests, cc_server, set_vault_password
from tests.leaks import assert_no_leak
from tests.twin import Twin
from tests.twin.faults import Fault
from tests.world import (
    CC_HOST,
    CC_PASSWORD,
    CC_PASSWORD_SECRET,
    CURRENT_SECRET,
    NEW_SECRET,
    TARGET,
    WRONG_SECRET,
    World,
)

ALL_SECRETS = (CURRENT_SECRET, CC_PASSWORD, NEW_SECRET, WRONG_SECRET)


async def _client(env_ready: object) -> AsyncIterator[tuple[AppContext, CycleCloudClient]]:
    async with AppContext.from_environment() as ctx:
        client = await open_cyclecloud(ctx, ctx.settings.target(TARGET))
        try:
            yield ctx, client
        finally:
            await client.close()


async def test_wrong_password_fails_once_and_never_retries(twin: Twin, product_env: dict[str, str],
                                                          log_text: pytest.LogCaptureFixture) -> None:
    set_vault_password(twin, "not-the-password")
    async for _, cc in _client(product_env):
        with pytest.raises(CycleCloudLoginError) as raised:
            await cc.read_account()
        assert type(raised.value) is CycleCloudLoginError
        assert "not retried" in str(raised.value) and CC_PASSWORD_SECRET in raised.value.fix
        with pytest.raises(CycleCloudLoginPausedError) as paused:  # within the minute: no request at all
            await cc.read_account()
        assert "at most one failed login" in str(paused.value)
    async for _, cc in _client(product_env):  # a new client for the same server and user is paused too
        result = await cc.probe()
        assert result.check("login").status is CheckStatus.FAILED and "minute" in result.check("login").detail
    assert [s for op, s in cc_requests(twin) if op == "getAccount"] == [401]
    user = cc_server(twin).users["remediator"]
    assert len(user.failures) == 1 and user.locked_until is None
    assert_no_leak([log_text, str(raised.value), str(paused.value)], *ALL_SECRETS, "not-the-password")


async def test_locked_out_user_is_reported_as_such(twin: Twin, cc: CycleCloudClient) -> None:
    from datetime import timedelta

    cc_server(twin).users["remediator"].locked_until = twin.state.now() + timedelta(minutes=5)
    with pytest.raises(CycleCloudLockedOutError) as raised:
        await cc.read_account()
    assert "locked" in raised.value.reason and "5 minutes" in raised.value.fix
    result = await cc.probe()
    assert result.check("login").status is CheckStatus.FAILED
    assert result.check("account").status is CheckStatus.SKIPPED and not result.ok


async def test_untrusted_certificate_fails_clearly_and_names_the_ca_setting(
        twin: Twin, world: World, monkeypatch: pytest.MonkeyPatch, log_text: pytest.LogCaptureFixture) -> None:
    twin.load(world.scenario())
    for key, value in world.env(ca_bundle=None).items():  # no CA: the system store (the twin's CA here)
        monkeypatch.setenv(key, value)
    async with AppContext.from_environment() as ctx:
        result = await probe_target(ctx, TARGET)
        assert (result.check("reachable").status, result.check("tls").status) == (CheckStatus.OK, CheckStatus.FAILED)
        assert "ca_bundle" in result.check("tls").fix and "system trust store" in result.check("tls").detail
        assert all(result.check(n).status is CheckStatus.SKIPPED for n in ("login", "account", "update_path"))
        client = await open_cyclecloud(ctx, ctx.settings.target(TARGET))
        with pytest.raises(CycleCloudTlsError):
            await client.read_account()
        await client.close()
    assert "getAccount" not in [op for op, _ in cc_requests(twin)]  # the password never went over the wire
    assert_no_leak([log_text, json.dumps(result.to_dict())], *ALL_SECRETS)


async def test_ca_from_a_key_vault_secret(twin: Twin, world: World, cc_ca: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = world.scenario()
    with open(cc_ca, encoding="utf-8") as file:
        scenario["vaults"][0]["secrets"]["cyclecloud-ca"] = [{"value": file.read()}]
    twin.load(scenario)
    target = world.target()
    target["cyclecloud"]["ca_bundle_secret"] = "cyclecloud-ca"
    monkeypatch.setenv("TARGETS", json.dumps([target]))
    monkeypatch.setenv("KEY_VAULT_URL", world.env()["KEY_VAULT_URL"])
    async with AppContext.from_environment() as ctx:
        result = await probe_target(ctx, TARGET)
    assert result.ok, result.to_dict()
    assert "cyclecloud-ca" in result.check("tls").detail


async def test_dropped_connections_and_5xx_are_retried_a_bounded_number_of_times(twin: Twin,
                                                                                cc: CycleCloudClient) -> None:
    twin.faults.add(Fault(service="cyclecloud", operation="getAccount", drop=True, times=2))
    assert (await cc.read_account()).secret_hint == CURRENT_SECRET[:3]
    twin.faults.add(Fault(service="cyclecloud", operation="updateAccount", status=503, retry_after=0.2, times=1))
    await cc.update_secret(add_app_secret(twin))
    assert cc_server(twin).accounts["azure"]["AzureRMApplicationSecret"] == NEW_SECRET
    twin.request_log.clear()
    twin.faults.add(Fault(service="cyclecloud", operation="getAccount", status=500, times=None))
    with pytest.raises(CycleCloudUnreachableError, match="kept failing"):
        await cc.read_account()
    assert [s for op, s in cc_requests(twin)] == [500, 500, 500, 500]  # one try plus three retries, then stop


async def test_persistent_drops_and_unreachable_host(twin: Twin, cc: CycleCloudClient) -> None:
    twin.faults.add(Fault(service="cyclecloud", operation="getAccount", drop=True, times=None))
    with pytest.raises(CycleCloudUnreachableError, match="4 attempts"):
        await cc.read_account()
    twin.faults.clear()
    twin.unreachable_hosts.add(CC_HOST)
    result = await cc.probe()
    assert result.check("reachable").status is CheckStatus.FAILED and "runcommand" in result.check("reachable").fix
    assert not result.ok


def _target_env(monkeypatch: pytest.MonkeyPatch, world: World, cc_ca: str, **cyclecloud: object) -> None:
    target = world.target(ca_bundle=cc_ca)
    target["cyclecloud"].update(cyclecloud)
    monkeypatch.setenv("TARGETS", json.dumps([target]))


async def test_probe_says_when_the_server_serves_a_different_update_method(
        twin: Twin, world: World, cc_ca: str, product_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _target_env(monkeypatch, world, cc_ca, supports_dry_run=True)
    cc_server(twin).credential_method = "POST"  # this server edits accounts with POST; the target says PUT
    async for _, cc in _client(product_env):
        result = await cc.probe()
    check = result.check("update_path")
    assert check.status is CheckStatus.FAILED
    assert "credential_method" in check.fix and "runcommand" in check.fix
    assert cc_server(twin).accounts["azure"]["AzureRMApplicationSecret"] == CURRENT_SECRET


async def test_probe_only_reads_unless_the_server_is_declared_to_honour_dry_runs(
        twin: Twin, world: World, cc_ca: str, product_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    server = cc_server(twin)
    server.ignores_dry_run = True  # a dry-run request would replace the record and lose the secret
    before = dict(server.accounts["azure"])
    async for _, cc in _client(product_env):
        result = await cc.probe()
    assert result.ok, result.to_dict()
    check = result.check("update_path")
    assert check.status is CheckStatus.SKIPPED and "supports_dry_run" in check.detail
    assert server.accounts["azure"] == before
    assert {op for op, _ in cc_requests(twin)} == {"home", "getAccount"}  # GET / and GET the account only
    assert {r.method for r in twin.request_log if r.service == "cyclecloud"} == {"GET"}

    # declared: the dry run is sent, and on an honest server it validates and changes nothing
    server.ignores_dry_run = False
    _target_env(monkeypatch, world, cc_ca, supports_dry_run=True)
    twin.request_log.clear()
    async for _, cc in _client(product_env):
        declared = await cc.probe()
    assert declared.check("update_path").status is CheckStatus.OK
    assert "validateAccount" in [op for op, _ in cc_requests(twin)]
    assert server.accounts["azure"] == before


def test_the_account_name_is_one_quoted_path_segment() -> None:
    from shared.adapters.cyclecloud.rest import RestTransport, account_segment
    from shared.config import CycleCloudConnection

    async def nothing() -> str | None:
        return None

    for account, segment in [("azure", "azure"), ("HPC account", "HPC%20account"), ("../admin", "..%2Fadmin"),
                             ("a?b#c", "a%3Fb%23c"), ("..", "%2E%2E"), (".", "%2E"), ("a.b", "a.b")]:
        assert account_segment(account) == segment
        transport = RestTransport("t", CycleCloudConnection(url="https://cc/ctx/", account=account),
                                  password=nothing, ca_pem=nothing)
        assert transport.account_url == f"https://cc/ctx/cloud/accounts/{segment}"


async def test_an_account_name_with_spaces_reaches_its_account(
        twin: Twin, world: World, cc_ca: str, product_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    server = cc_server(twin)
    server.accounts["HPC account"] = {**server.accounts.pop("azure"), "Name": "HPC account"}
    _target_env(monkeypatch, world, cc_ca, account="HPC account")
    async for _, cc in _client(product_env):
        assert (await cc.read_account()).secret_hint == CURRENT_SECRET[:3]
        await cc.update_secret(add_app_secret(twin))
    assert server.accounts["HPC account"]["AzureRMApplicationSecret"] == NEW_SECRET
    assert [r.path for r in twin.request_log if r.operation == "updateAccount"] == ["/cloud/accounts/HPC account"]


async def test_cli_probe_prints_the_checklist(twin: Twin, product_env: dict[str, str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from shared.cli import main

    code = await asyncio.to_thread(main, ["cyclecloud", "probe", TARGET])
    out = capsys.readouterr()
    assert code == 0, out
    assert "login works" in out.out and "All checks passed." in out.out
    login_guard.reset()
    set_vault_password(twin, "not-the-password")
    code = await asyncio.to_thread(main, ["cyclecloud", "probe", TARGET])
    failed = capsys.readouterr()
    assert code == 1
    assert "✘ login works" in failed.out and "fix: Put the CycleCloud user's current password" in failed.out
    assert_no_leak([out.out, out.err, failed.out, failed.err], *ALL_SECRETS, "not-the-password")
