"""One token request per scope at a time: `validate` runs its checks concurrently, so on a cold process two
checks ask the product's credential for the same token (e.g. Microsoft Graph for the application and its
service principal) before either answer is cached, and azure-identity sends both requests. This wrapper lets
the second caller wait for the first's answer; afterwards azure-identity's own cache answers as before."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, AccessTokenInfo
    from azure.core.credentials_async import AsyncTokenCredential


class SingleFlightCredential:
    """An AsyncTokenCredential (and AsyncSupportsTokenInfo) that shares in-flight requests for the same token."""

    def __init__(self, inner: AsyncTokenCredential) -> None:
        self.inner = inner
        self._in_flight: dict[tuple[Any, ...], asyncio.Task[Any]] = {}

    async def _shared(self, key: tuple[Any, ...], fetch: Any) -> Any:
        task = self._in_flight.get(key)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(fetch())
            self._in_flight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)  # a cancelled waiter never cancels the others' request

    def _forget(self, key: tuple[Any, ...], done: asyncio.Task[Any]) -> None:
        if self._in_flight.get(key) is done:
            del self._in_flight[key]

    async def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                        enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        key = ("token", scopes, claims, tenant_id, enable_cae, repr(sorted(kwargs.items())))
        result: AccessToken = await self._shared(key, lambda: self.inner.get_token(
            *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs))
        return result

    async def get_token_info(self, *scopes: str, options: dict[str, Any] | None = None) -> AccessTokenInfo:
        key = ("info", scopes, repr(sorted((options or {}).items())))
        inner: Any = self.inner
        if not hasattr(inner, "get_token_info"):
            from azure.core.credentials import AccessTokenInfo

            token = await self.get_token(*scopes, **(options or {}))
            return AccessTokenInfo(token.token, token.expires_on)
        result: AccessTokenInfo = await self._shared(key, lambda: inner.get_token_info(*scopes, options=options))
        return result

    async def close(self) -> None:
        await self.inner.close()

    async def __aenter__(self) -> SingleFlightCredential:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.inner.__aexit__(*args)
