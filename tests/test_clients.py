"""The client factory: one place, lazy, reused, bounded retries and timeouts, the right credential."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

from shared.clients import SDK_RETRY, ClientFactory
from shared.config import Settings, load_settings
from shared.errors import ConfigError
from shared.single_flight import SingleFlightCredential
from tests.twin import Twin
from tests.world import APP_ID, CC_HOST, CURRENT_SECRET, SUBSCRIPTION, TENANT, World


@pytest.fixture
def world_settings() -> Settings:
    return load_settings(World().env())


async def test_clients_are_lazy_reused_and_bounded(world_settings: Settings, twin: Twin) -> None:
    async with ClientFactory(world_settings) as clients:
        assert clients._cache == {}  # nothing is built (or connects) until first use
        vault = clients.vault()
        assert clients.vault() is vault
        assert clients.authorization(SUBSCRIPTION) is clients.authorization(SUBSCRIPTION)
        assert clients.compute(SUBSCRIPTION) is clients.compute(SUBSCRIPTION)
        assert clients.subscriptions() is clients.subscriptions()
        assert clients.graph() is clients.graph()
        retry = vault._client._config.retry_policy
        assert retry.total_retries == SDK_RETRY["retry_total"]
        assert vault._client._config.retry_policy.backoff_max == SDK_RETRY["retry_backoff_max"]
        assert twin.request_log == []  # still nothing sent
    assert clients._cache == {}


async def test_credential_is_managed_identity_in_azure_and_developer_chain_elsewhere(
        world_settings: Settings, twin: Twin, monkeypatch: pytest.MonkeyPatch) -> None:
    async with ClientFactory(world_settings) as clients:
        assert isinstance(clients.credential, SingleFlightCredential)  # concurrent callers share a request
        assert isinstance(clients.credential.inner, ManagedIdentityCredential)
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    async with ClientFactory(world_settings) as clients:
        assert isinstance(clients.credential, SingleFlightCredential)
        assert isinstance(clients.credential.inner, DefaultAzureCredential)


async def test_user_assigned_identity_is_used_when_azure_client_id_is_set(twin: Twin) -> None:
    scenario = World().scenario()
    scenario["principals"][0].update({"function_identity": False, "user_assigned": True})
    twin.load(scenario)
    env = World().env()
    env["AZURE_CLIENT_ID"] = scenario["principals"][0]["app_id"]
    async with ClientFactory(load_settings(env)) as clients:
        token = await clients.credential.get_token("https://management.azure.com/.default")
    info = twin.tokens.lookup(token.token)
    assert info is not None and info.object_id == scenario["principals"][0]["object_id"]


async def test_blob_service_without_storage_settings_is_a_config_error(world_settings: Settings) -> None:
    async with ClientFactory(world_settings) as clients:
        with pytest.raises(ConfigError, match="AzureWebJobsStorage"):
            clients.blob_service()


async def test_concurrent_callers_of_the_products_identity_share_one_token_request(
        world_settings: Settings, twin: Twin) -> None:
    # validate's checks start together on a cold process: two ARM checks asking at once used to cost two token
    # requests (a flaky count in test_first_call under load)
    twin.load(World().scenario())
    async with ClientFactory(world_settings) as clients:
        tokens = await asyncio.gather(*(clients.credential.get_token("https://management.azure.com/.default")
                                        for _ in range(5)))
    assert len({t.token for t in tokens}) == 1
    assert sum(1 for r in twin.request_log if r.service == "msi") == 1


async def test_clients_built_per_target_reuse_the_factorys_connections(world_settings: Settings, twin: Twin) -> None:
    """A health sweep builds a credential from each target's secret and an ARM client for it, and closes both
    after the target: the next target's still reach Entra ID and ARM over the connections already open."""
    from shared.adapters.rbac import RbacAdapter

    twin.load(World().scenario())
    async with ClientFactory(world_settings) as clients:
        for _ in range(3):
            credential = clients.secret_credential(TENANT, APP_ID, CURRENT_SECRET)
            try:
                await credential.get_token(clients.cloud.arm_scope)
                await RbacAdapter(clients).permissions(SUBSCRIPTION, credential)
            finally:
                await credential.close()
        await RbacAdapter(clients).list_assignments(f"/subscriptions/{SUBSCRIPTION}")  # a cached client: same pool
    assert sum(1 for r in twin.request_log if r.service == "entra") == 3
    assert twin.tunnels.count("login.microsoftonline.com") == 1, twin.tunnels
    assert twin.tunnels.count("management.azure.com") == 1, twin.tunnels


async def test_the_shared_session_takes_each_hosts_proxy_from_the_environment(
        world_settings: Settings, twin: Twin, monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp's trust_env is off for the shared session: the proxy (and NO_PROXY) is applied per host instead."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,.internal.example")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost,.internal.example")
    async with ClientFactory(world_settings) as clients:
        transport = clients._shared_transport()
        proxy, _ = transport._proxy_for("https://management.azure.com/subscriptions?api-version=1")
        assert str(proxy).rstrip("/") == f"http://127.0.0.1:{twin.proxy_port}"
        assert transport._proxy_for("https://vault.internal.example/secrets/x") == (None, None)


async def test_the_targets_of_one_cyclecloud_server_reuse_one_connection(twin: Twin, cc_ca: str) -> None:
    """Each target's CycleCloud client (a `requests` session of its own, closed after the target) sends through the
    factory's pool: the next target's requests reuse the TLS connection the previous one opened."""
    from shared.adapters.cyclecloud import open_cyclecloud
    from shared.context import AppContext

    twin.load(World().scenario())
    settings = load_settings(World().env(ca_bundle=cc_ca))
    async with AppContext(settings, ClientFactory(settings)) as ctx:
        for _ in range(3):
            client = await open_cyclecloud(ctx, settings.targets[0])
            try:
                assert (await client.read_account()).app_id == APP_ID
            finally:
                await client.close()
    assert sum(1 for r in twin.request_log if r.service == "cyclecloud") == 3
    assert twin.tunnels.count(CC_HOST) == 1, twin.tunnels


async def test_storage_calls_ignore_a_netrc(
        twin: Twin, azurite: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The blob and queue clients do without aiohttp's trust_env (the proxy is applied per host instead): no proxy
    or .netrc lookup in a worker thread on every request (a third of a storage call's CPU), and no ambient .netrc
    login added to a request that carries its own Authorization (aiohttp refuses to send such a request: every
    storage call would fail)."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-for-azure\n")
    monkeypatch.setenv("NETRC", str(netrc))
    settings = load_settings(World().env(storage=azurite))
    async with ClientFactory(settings) as clients:
        container = clients.blob_service().get_container_client("netrc-check")
        await container.create_container()
        await container.upload_blob("probe.json", b"{}", overwrite=True)
        queue = clients.continuation_queue()
        await queue.create_queue()
        await queue.send_message("probe")
        assert [m.content async for m in queue.receive_messages()] == ["probe"]


async def test_the_shared_transport_is_a_whole_azure_core_transport(world_settings: Settings) -> None:
    """Every method azure-core's AsyncHttpTransport has: the SDKs' retry policies call `sleep` on the transport of
    a client built on the shared session (a per-target credential, the storage clients) between attempts."""
    from azure.core.pipeline.transport import AsyncHttpTransport

    async with ClientFactory(world_settings) as clients:
        transport = clients._shared_transport()
        wanted = {name for name in dir(AsyncHttpTransport) if not name.startswith("_")} | {"__aenter__", "__aexit__"}
        assert {name for name in wanted if not hasattr(transport, name)} == set()
        await transport.sleep(0)
