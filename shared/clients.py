"""The one place where credentials and SDK clients are built.

Clients are async (the Function's handlers are async and `validate` runs its checks concurrently), built
lazily on first use, and reused for the life of the factory (one process in Azure, one command in the CLI).
Every client gets the same bounded retry policy (azure-core's, which honours `Retry-After`) and explicit
connection and read timeouts, so no outbound call can hang or retry forever.

The azure-core clients (Key Vault, ARM, and the credentials built from a CycleCloud secret) send through one aiohttp
session of the factory's, so its kept-alive connections serve them all: a validation's clients built for one target
(a subscription's ARM client, a candidate secret's credential and ARM reads) reuse the TLS connections the previous
target opened instead of each paying a new handshake. The connections carry no identity (every request brings its
own token; the session keeps no cookies). That session reads the proxy settings of the environment (HTTPS_PROXY,
NO_PROXY) once per host, where aiohttp's `trust_env` would read them, and look for a .netrc, in a worker thread
twice on every request. The storage clients (the state container's blobs, the continuation queue) keep sessions of
their own, with the same per-host proxy and no `trust_env`.

Credentials: in Azure (App Service sets `IDENTITY_ENDPOINT`) the Function's managed identity, user-assigned
when `AZURE_CLIENT_ID` is set; elsewhere (an operator's laptop, break-glass) the developer credential chain
(`az login`, azd, PowerShell, environment).

Targets in other tenants (a target's `identity` is the client id of the product's multi-tenant app): Graph and
ARM calls for that tenant sign in as the multi-tenant app, in that tenant, with a client assertion that is the
managed identity's token for `api://AzureADTokenExchange` (the app's only credential is a federated identity
credential trusting the managed identity: no secret of our own to rotate). Key Vault and storage always use the
home identity. See docs/tenants.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from . import limits
from .config import HOME_IDENTITY, Settings
from .limits import arm_key, host_key, limit_httpx_client
from .single_flight import SingleFlightCredential

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.keyvault.secrets.aio import SecretClient
    from azure.mgmt.authorization.aio import AuthorizationManagementClient
    from azure.mgmt.compute.aio import ComputeManagementClient
    from azure.mgmt.core import AsyncARMPipelineClient
    from azure.mgmt.resource.subscriptions.aio import SubscriptionClient
    from azure.storage.blob.aio import BlobServiceClient
    from azure.storage.queue.aio import QueueClient
    from msgraph.graph_service_client import GraphServiceClient

logger = logging.getLogger(__name__)

# Bounded retries for every Azure SDK client: azure-core's RetryPolicy retries 408/429/5xx, honours
# Retry-After / retry-after-ms, backs off exponentially and gives up after `retry_total` attempts.
SDK_RETRY: dict[str, Any] = {
    "retry_total": 4,
    "retry_backoff_factor": 0.8,
    "retry_backoff_max": 30,
    "connection_timeout": 10,
    "read_timeout": 60,
}
GRAPH_TIMEOUT_SECONDS = 60.0
GRAPH_CONNECT_TIMEOUT_SECONDS = 10.0
_SUBSCRIPTION_IN_URL = re.compile(r"/subscriptions/([0-9a-fA-F-]{36})", re.IGNORECASE)
# the audience of a managed identity token that another app's federated identity credential accepts
TOKEN_EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"  # noqa: S105 - a scope, not a secret


def running_in_azure(env: Mapping[str, str] | None = None) -> bool:
    """App Service / Functions exposes its managed identity endpoint through these two variables."""
    env = os.environ if env is None else env
    return bool(env.get("IDENTITY_ENDPOINT") and env.get("IDENTITY_HEADER"))


def credential_kind(env: Mapping[str, str] | None = None) -> str:
    return "managed_identity" if running_in_azure(env) else "developer"


class ClientFactory:
    """Builds and caches the product's credential and SDK clients for one configured cloud.

    Use as an async context manager (or call `close()`) so sockets are released.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cloud = settings.cloud
        self._credential: AsyncTokenCredential | None = None
        self._closeables: list[Any] = []
        self._cache: dict[tuple[str, ...], Any] = {}
        self._http: Any = None  # the shared aiohttp transport (see the module's docstring)
        self._proxies: dict[tuple[str, str], tuple[Any, Any]] = {}  # (scheme, host) -> (proxy, proxy auth)
        # in Azure every instance takes its share of the per-service budgets; the CLI is one process
        limits.configure(settings.maximum_instance_count if running_in_azure() else 1)
        # which tenant an app registration (client id or object id) or a subscription belongs to, as configured
        # (and, for object ids, as learnt from Graph's answers): routes each call to the identity of that tenant
        self._tenant_of: dict[str, str] = {}
        for target in settings.targets:
            if target.app_id:
                self._tenant_of[target.app_id.lower()] = target.tenant_id
            for sub in target.subscription_ids:
                self._tenant_of.setdefault(sub.lower(), target.tenant_id)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        closeables, self._closeables = self._closeables, []
        self._cache.clear()
        self._http = None
        for item in reversed(closeables):
            try:
                await item.close()
            except Exception:  # closing is best effort; a failure here must not hide the real outcome
                logger.debug("closing %s failed", type(item).__name__, exc_info=True)
        self._credential = None

    def _shared_transport(self) -> Any:
        """A client's own view of the factory's aiohttp transport: closing the client leaves it open for the
        others (the factory closes it last, in `close`)."""
        if self._http is None:
            from azure.core.pipeline.transport import AioHttpTransport

            # the environment's proxy per host: _SharedTransport.send (aiohttp's trust_env stays off)
            self._http = AioHttpTransport(use_env_settings=False, **SDK_RETRY)
            self._closeables.append(self._http)
            self._proxies.clear()
        return _SharedTransport(self._http, self._proxies)

    def _storage_transport(self) -> Any:
        """A storage client's own aiohttp session (the SDK's default, measured faster under load than sharing the
        factory's with Key Vault and ARM), also without aiohttp's `trust_env`: the environment's proxy is applied
        per host by the same wrapper, so no .netrc lookup on every call and no ambient .netrc login added."""
        from azure.core.pipeline.transport import AioHttpTransport

        own = AioHttpTransport(use_env_settings=False, **SDK_RETRY)
        self._closeables.append(own)
        return _SharedTransport(own, {})

    def requests_pool(self) -> Any:
        """One `requests` connection pool (an HTTPAdapter) for the product's blocking HTTPS calls: CycleCloud's
        REST transport mounts it in each target's session, so the targets of one CycleCloud server reuse its
        kept-alive TLS connections instead of each paying a handshake. urllib3 keeps a pool per host and per CA
        bundle it verifies with; a connection carries no login (every request sends its own Basic auth, and the
        cookies stay in each target's session). A session's close leaves the pool open; the factory closes it."""
        key = ("requests",)
        if key not in self._cache:
            import threading

            from requests.adapters import HTTPAdapter

            lock = threading.Lock()

            class SharedAdapter(HTTPAdapter):
                def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
                    with lock:  # sessions in several worker threads: one proxy manager per proxy, not a race's two
                        return super().proxy_manager_for(proxy, **proxy_kwargs)

                def close(self) -> None:  # a target's session closing: the other targets keep the pool
                    return None

                def close_pool(self) -> None:
                    super().close()

            self._cache[key] = SharedAdapter()
            self._closeables.append(_AdapterCloser(self._cache[key]))
        return self._cache[key]

    def _limited(self, service: str, key_of: Callable[[str], str]) -> Any:
        """The transport every SDK client of `service` gets: the shared aiohttp transport (SDK_RETRY's timeouts),
        each attempt passing the service's concurrency and rate gate (shared/limits.py)."""
        from .limits import limited_transport

        return limited_transport(service, key_of, inner=self._shared_transport())

    def _keep[T](self, key: tuple[str, ...], client: T) -> T:
        self._cache[key] = client
        self._closeables.append(client)
        return client

    # -- credentials -------------------------------------------------------------------------------------

    @property
    def credential(self) -> AsyncTokenCredential:
        """The product's own identity."""
        if self._credential is None:
            if running_in_azure():
                from azure.identity.aio import ManagedIdentityCredential

                self._credential = ManagedIdentityCredential(
                    client_id=self.settings.managed_identity_client_id, **SDK_RETRY
                )
            else:
                from azure.identity.aio import DefaultAzureCredential

                self._credential = DefaultAzureCredential(
                    authority=self.cloud.login, managed_identity_client_id=self.settings.managed_identity_client_id,
                    # break-glass runs reach a cross-tenant target's tenant as the person signed in (see
                    # credential_for): only the tenants configured targets name
                    additionally_allowed_tenants=sorted({t.tenant_id for t in self.settings.targets
                                                         if t.cross_tenant}),
                    **SDK_RETRY,
                )
            # validate's checks ask for the same token concurrently on a cold process (two ARM checks, Graph's
            # application and service principal reads): they share one request (shared/single_flight.py)
            self._credential = SingleFlightCredential(self._credential)
            self._closeables.append(self._credential)
        return self._credential

    def identity_for_tenant(self, tenant_id: str | None) -> str:
        """`home`, or the client id of the multi-tenant app the product reaches `tenant_id` through (config checks
        that all targets of one tenant name the same identity)."""
        if tenant_id:
            for target in self.settings.targets:
                if target.tenant_id == tenant_id.lower():
                    return target.identity
        return HOME_IDENTITY

    def tenant_of(self, ident: str | None) -> str | None:
        """The configured tenant of an app registration (client or object id) or a subscription, if known."""
        return self._tenant_of.get(ident.lower()) if ident else None

    def learn_tenant(self, ident: str, tenant_id: str) -> None:
        """Remember that an object (e.g. an app registration's object id Graph returned) lives in `tenant_id`."""
        self._tenant_of[ident.lower()] = tenant_id

    def credential_for(self, tenant_id: str | None) -> AsyncTokenCredential:
        """The product's credential for calls into `tenant_id`: the home identity, or the multi-tenant app signing
        in to that tenant with the managed identity's token as its client assertion."""
        identity = self.identity_for_tenant(tenant_id)
        if identity == HOME_IDENTITY or not tenant_id:
            return self.credential
        if not running_in_azure():
            # an operator's laptop has no managed identity to federate: the person's own sign-in (`az login`
            # to that tenant too) asks for tokens in the target's tenant
            return _TenantPinnedCredential(self.credential, tenant_id.lower())
        key = ("federated", tenant_id.lower(), identity)
        if key not in self._cache:
            self._keep(key, SingleFlightCredential(FederatedAppCredential(
                self.credential, tenant_id.lower(), identity, authority=self.cloud.login)))
        return self._cache[key]  # type: ignore[no-any-return]

    def secret_credential(self, tenant_id: str, app_id: str, secret: str) -> AsyncTokenCredential:
        """A credential for a CycleCloud service principal from a candidate secret (never cached).

        The caller owns it and must close it.
        """
        from azure.identity.aio import ClientSecretCredential

        return ClientSecretCredential(tenant_id, app_id, secret, authority=self.cloud.login,
                                      transport=self._shared_transport(), **SDK_RETRY)

    # -- service clients ---------------------------------------------------------------------------------

    def graph(self, tenant_id: str | None = None) -> GraphServiceClient:
        """Microsoft Graph as the product's own identity in `tenant_id` (home when None or not cross-tenant)."""
        identity = self.identity_for_tenant(tenant_id)
        key = ("graph",) if identity == HOME_IDENTITY or not tenant_id else ("graph", tenant_id.lower())
        if key in self._cache:
            return self._cache[key]  # type: ignore[no-any-return]
        import httpx
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from msgraph.graph_request_adapter import GraphRequestAdapter
        from msgraph.graph_service_client import GraphServiceClient
        from msgraph_core import GraphClientFactory

        auth = AzureIdentityAuthenticationProvider(self.credential_for(tenant_id), scopes=[self.cloud.graph_scope])
        http_client = GraphClientFactory.create_with_default_middleware(
            # Graph throttles per app and tenant: the gate of this client's tenant (the home tenant's: "home")
            client=limit_httpx_client(httpx.AsyncClient(
                timeout=httpx.Timeout(GRAPH_TIMEOUT_SECONDS, connect=GRAPH_CONNECT_TIMEOUT_SECONDS)
            ), "graph", key[1] if len(key) > 1 else "home")
        )
        adapter = GraphRequestAdapter(auth, client=http_client)
        adapter.base_url = f"{self.cloud.graph}/v1.0"
        client = GraphServiceClient(request_adapter=adapter)
        self._cache[key] = client
        self._closeables.append(_HttpxCloser(http_client))
        return client

    def vault(self) -> SecretClient:
        key = ("vault",)
        if key not in self._cache:
            from azure.keyvault.secrets.aio import SecretClient

            self._keep(key, SecretClient(self.settings.key_vault_url, self.credential,
                                         transport=self._limited("vault", host_key), **SDK_RETRY))
        return self._cache[key]  # type: ignore[no-any-return]

    def authorization(self, subscription_id: str) -> AuthorizationManagementClient:
        key = ("authorization", subscription_id)
        if key not in self._cache:
            from azure.mgmt.authorization.aio import AuthorizationManagementClient

            self._keep(key, AuthorizationManagementClient(
                self.credential_for(self.tenant_of(subscription_id)), subscription_id, base_url=self.cloud.arm,
                credential_scopes=[self.cloud.arm_scope], transport=self._limited("arm", arm_key), **SDK_RETRY,
            ))
        return self._cache[key]  # type: ignore[no-any-return]

    def subscriptions(self) -> SubscriptionClient:
        key = ("subscriptions",)
        if key not in self._cache:
            from azure.mgmt.resource.subscriptions.aio import SubscriptionClient

            self._keep(key, SubscriptionClient(
                self.credential, base_url=self.cloud.arm, credential_scopes=[self.cloud.arm_scope],
                authentication_policy=self._arm_authentication(), **SDK_RETRY,
            ))
        return self._cache[key]  # type: ignore[no-any-return]

    def compute(self, subscription_id: str) -> ComputeManagementClient:
        key = ("compute", subscription_id)
        if key not in self._cache:
            from azure.mgmt.compute.aio import ComputeManagementClient

            self._keep(key, ComputeManagementClient(
                self.credential_for(self.tenant_of(subscription_id)), subscription_id, base_url=self.cloud.arm,
                credential_scopes=[self.cloud.arm_scope], transport=self._limited("arm", arm_key), **SDK_RETRY,
            ))
        return self._cache[key]  # type: ignore[no-any-return]

    def arm(self, credential: AsyncTokenCredential | None = None) -> AsyncARMPipelineClient[Any, Any]:
        """A plain ARM pipeline (auth, retry, Retry-After, timeouts) for the few ARM reads that have no
        typed operation in the SDKs we ship: subscription-scope effective permissions, policy assignments
        and the Activity Log.

        With `credential` (e.g. a candidate secret of the CycleCloud service principal) the client is built
        fresh and NOT cached (an id()-keyed cache could hand a later credential a stale client): the caller
        must close it. Without, it uses the product's identity and is cached."""
        key = ("arm", "")
        if credential is not None or key not in self._cache:
            from azure.core.configuration import Configuration
            from azure.core.pipeline import policies
            from azure.mgmt.core import AsyncARMPipelineClient
            from azure.mgmt.core.policies import AsyncARMChallengeAuthenticationPolicy

            config: Configuration[Any, Any] = Configuration(**SDK_RETRY)
            config.headers_policy = policies.HeadersPolicy(**SDK_RETRY)
            config.user_agent_policy = policies.UserAgentPolicy(sdk_moniker="cyclecloud-credential-remediator")
            config.proxy_policy = policies.ProxyPolicy(**SDK_RETRY)
            config.logging_policy = policies.NetworkTraceLoggingPolicy(**SDK_RETRY)
            config.retry_policy = policies.AsyncRetryPolicy(**SDK_RETRY)
            config.authentication_policy = (
                AsyncARMChallengeAuthenticationPolicy(credential, self.cloud.arm_scope) if credential is not None
                else self._arm_authentication()
            )
            client: AsyncARMPipelineClient[Any, Any] = AsyncARMPipelineClient(
                base_url=self.cloud.arm, config=config, per_call_policies=[], transport=self._limited("arm", arm_key),
                **SDK_RETRY,
            )
            if credential is not None:
                return client
            self._keep(key, client)
        return self._cache[key]  # type: ignore[no-any-return]

    def _arm_authentication(self) -> Any:
        """The product's ARM authentication for clients whose calls may reach any configured subscription: each
        request signs in to the tenant of the subscription its URL names (see `credential_for`)."""
        from azure.mgmt.core.policies import AsyncARMChallengeAuthenticationPolicy

        if not any(t.cross_tenant for t in self.settings.targets):
            return AsyncARMChallengeAuthenticationPolicy(self.credential, self.cloud.arm_scope)
        return _TenantRoutedArmAuthentication(self)

    def blob_service(self) -> BlobServiceClient:
        key = ("blob",)
        if key not in self._cache:
            from azure.storage.blob.aio import BlobServiceClient

            storage = self.settings.storage
            if storage.connection_string:
                client = BlobServiceClient.from_connection_string(storage.connection_string,
                                                                  transport=self._storage_transport(), **SDK_RETRY)
            elif storage.blob_service_uri:
                client = BlobServiceClient(storage.blob_service_uri, credential=self.credential,
                                           transport=self._storage_transport(), **SDK_RETRY)
            else:
                from .errors import ConfigError

                raise ConfigError([
                    "AzureWebJobsStorage: is not set; set the Functions storage connection "
                    "(AzureWebJobsStorage__blobServiceUri for an identity-based connection)"
                ])
            self._keep(key, client)
        return self._cache[key]  # type: ignore[no-any-return]

    def continuation_queue(self) -> QueueClient:
        """The queue (CONTINUATION_QUEUE) in the Functions storage account that carries the continuations of long
        HTTP operations. Messages are base64 text, the Functions queue trigger's default encoding."""
        key = ("queue", self.settings.continuation_queue)
        if key not in self._cache:
            from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
            from azure.storage.queue.aio import QueueClient

            storage, name = self.settings.storage, self.settings.continuation_queue
            codec: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(),
                                     "message_decode_policy": TextBase64DecodePolicy()}
            if storage.connection_string:
                client = QueueClient.from_connection_string(storage.connection_string, name, **codec,
                                                            transport=self._storage_transport(), **SDK_RETRY)
            elif self.settings.queue_service_uri:
                client = QueueClient(self.settings.queue_service_uri, name, credential=self.credential, **codec,
                                     transport=self._storage_transport(), **SDK_RETRY)
            else:
                from .errors import ConfigError

                raise ConfigError([
                    "AzureWebJobsStorage: is not set; set the Functions storage connection "
                    "(AzureWebJobsStorage__queueServiceUri for an identity-based connection)"
                ])
            self._keep(key, client)
        return self._cache[key]  # type: ignore[no-any-return]


class FederatedAppCredential:
    """The product's multi-tenant app in another tenant: azure-identity's ClientAssertionCredential whose
    assertion is the managed identity's token for api://AzureADTokenExchange.

    ClientAssertionCredential calls its assertion function synchronously, so the managed identity token is
    fetched (async, cached by the managed identity credential) just before each token request and handed over."""

    def __init__(self, managed_identity: AsyncTokenCredential, tenant_id: str, client_id: str, *,
                 authority: str) -> None:
        from azure.identity.aio import ClientAssertionCredential

        self._managed_identity = managed_identity
        self._assertion = ""
        self.tenant_id, self.client_id = tenant_id, client_id
        self._credential = ClientAssertionCredential(tenant_id, client_id, lambda: self._assertion,
                                                     authority=authority, **SDK_RETRY)

    async def _refresh_assertion(self) -> None:
        self._assertion = (await self._managed_identity.get_token(TOKEN_EXCHANGE_SCOPE)).token

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        await self._refresh_assertion()
        return await self._credential.get_token(*scopes, **kwargs)

    async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        await self._refresh_assertion()
        return await self._credential.get_token_info(*scopes, options=options)

    async def close(self) -> None:
        await self._credential.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _TenantPinnedCredential:
    """A shared credential asked for tokens in one tenant (azure-core's `tenant_id` option). Not closed on its
    own: the factory closes the credential it wraps."""

    def __init__(self, credential: AsyncTokenCredential, tenant_id: str) -> None:
        self._credential, self.tenant_id = credential, tenant_id

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return await self._credential.get_token(*scopes, **{**kwargs, "tenant_id": self.tenant_id})

    async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        return await self._credential.get_token_info(  # type: ignore[attr-defined]
            *scopes, options={**(options or {}), "tenant_id": self.tenant_id})

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _TenantRoutedArmAuthentication:
    """An azure-core authentication policy that authenticates each ARM request as the product's identity for the
    tenant of the subscription in the request's URL (home for everything else), each tenant with its own
    ARMChallengeAuthenticationPolicy (token cache, CAE challenges)."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._by_tenant: dict[str, Any] = {}
        self.next: Any = None  # set by the pipeline

    def _policy(self, url: str) -> Any:
        from azure.mgmt.core.policies import AsyncARMChallengeAuthenticationPolicy

        match = _SUBSCRIPTION_IN_URL.search(url)
        tenant = self._factory.tenant_of(match.group(1)) if match else None
        key = tenant if tenant and self._factory.identity_for_tenant(tenant) != HOME_IDENTITY else ""
        policy = self._by_tenant.get(key)
        if policy is None:
            policy = AsyncARMChallengeAuthenticationPolicy(self._factory.credential_for(key or None),
                                                           self._factory.cloud.arm_scope)
            self._by_tenant[key] = policy
        policy.next = self.next
        return policy

    async def send(self, request: Any) -> Any:
        return await self._policy(request.http_request.url).send(request)


class _SharedTransport:
    """An azure-core async transport that sends through one of the factory's (the shared one, or a storage
    client's own) and leaves it open when the client that holds it is closed (a per-target credential or ARM
    client is closed after each use; the factory closes them all last). Each request
    goes through the proxy the environment names for its host, as aiohttp's `trust_env` would choose it (the same
    function), looked up once per host: the environment of a running process does not change."""

    def __init__(self, shared: Any, proxies: dict[tuple[str, str], tuple[Any, Any]]) -> None:
        self._shared = shared
        self._proxies = proxies

    def _proxy_for(self, url: str) -> tuple[Any, Any]:
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "")
        if key not in self._proxies:
            from aiohttp.helpers import get_env_proxy_for_url
            from yarl import URL

            try:
                self._proxies[key] = get_env_proxy_for_url(URL(url))
            except LookupError:  # NO_PROXY names the host, or no proxy is set for the scheme
                self._proxies[key] = (None, None)
        return self._proxies[key]

    async def __aenter__(self) -> Self:
        await self._shared.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def open(self) -> None:
        await self._shared.open()

    async def close(self) -> None:
        return None

    async def sleep(self, duration: float) -> None:
        """azure-core's and the storage SDK's retry policies wait between attempts through their transport."""
        await asyncio.sleep(duration)

    async def send(self, request: Any, **kwargs: Any) -> Any:
        if not kwargs.get("proxy") and not kwargs.get("proxies"):  # a client's own proxy settings win
            proxy, proxy_auth = self._proxy_for(request.url)
            if proxy is not None:
                kwargs["proxy"] = str(proxy)
                if proxy_auth is not None:
                    kwargs["proxy_auth"] = proxy_auth
        return await self._shared.send(request, **kwargs)


class _AdapterCloser:
    """Closes the shared `requests` pool (requests_pool) when the factory closes."""

    def __init__(self, adapter: Any) -> None:
        self._adapter = adapter

    async def close(self) -> None:
        self._adapter.close_pool()


class _HttpxCloser:
    """Adapts httpx.AsyncClient.aclose() to the close() the factory calls."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def close(self) -> None:
        await self._client.aclose()
