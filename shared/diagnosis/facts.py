"""What the checks of one validation share: the target, the adapters, and each expensive lookup fetched once.

Checks run concurrently and several need the same thing (the stored secret, the app registration, the
service principal). Each lookup here starts one task the first time it is asked for; every later caller awaits
the same task through `asyncio.shield`, so a check that times out cancels only itself, never the lookup others
are waiting for. A lookup's failure is re-raised to each caller; `need()` turns it into "skipped: needs X" for
checks that depend on something another check owns and reports.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .. import clock
from ..config import Mode, Target
from ..errors import RemediatorError
from ..redaction import register_secret, scrub
from .runner import CheckSkipped

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from ..adapters.compute import VmInfo
    from ..adapters.entra import TokenProbe
    from ..adapters.graph import AppRegistration, ServicePrincipalInfo
    from ..adapters.rbac import RbacAdapter, RoleDefinitionInfo, SubscriptionInfo
    from ..adapters.vault import StoredSecret
    from ..context import AppContext

T = TypeVar("T")

# Heavy SDK modules the adapters import on first use. Importing them on the event loop would stall every other
# check for as long as the import takes (msgraph alone: up to seconds on a cold worker), so each lookup first
# imports its SDK in a worker thread.
_SDK_MODULES: dict[str, tuple[str, ...]] = {
    "graph": ("msgraph", "msgraph_core", "kiota_authentication_azure.azure_identity_authentication_provider",
              "msgraph.generated.applications_with_app_id.applications_with_app_id_request_builder",
              "msgraph.generated.service_principals_with_app_id.service_principals_with_app_id_request_builder",
              "shared.adapters.graph_models"),
    "arm": ("azure.mgmt.authorization.aio", "azure.mgmt.resource.subscriptions.aio", "azure.mgmt.core"),
    "compute": ("azure.mgmt.compute.aio",),
    "vault": ("azure.keyvault.secrets.aio",),
    "identity": ("azure.identity.aio",),
}


def _import_all(names: tuple[str, ...]) -> None:
    for name in names:
        importlib.import_module(name)
    if "msgraph" in names:
        # the Graph adapter parses small models (adapters/graph_models.py), not msgraph's full ones, whose
        # first parse would import over a thousand modules: only PasswordCredential's are needed
        from msgraph.generated.models.password_credential import PasswordCredential

        PasswordCredential().get_field_deserializers()


async def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Await an async adapter method; run a blocking one (e.g. `requests`) in a thread so it cannot stall the
    event loop and with it every other check."""
    if inspect.iscoroutinefunction(function):
        return await function(*args, **kwargs)
    result = await asyncio.to_thread(function, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


class Facts:
    def __init__(self, ctx: AppContext, target: Target, *, now: datetime | None = None) -> None:
        self.ctx = ctx
        self.target = target
        self.now = now or clock.now()
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._credentials: list[AsyncTokenCredential] = []
        self._probe_credential: AsyncTokenCredential | None = None
        self.observations: dict[str, Any] = {}  # secret-free things checks saw (expiry, principal id)
        self._rbac: RbacAdapter | None = None

    # -- plumbing ---------------------------------------------------------------------------------------

    async def once(self, key: str, factory: Callable[[], Awaitable[T]]) -> T:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(factory())
            self._tasks[key] = task
        result: T = await asyncio.shield(task)
        return result

    async def need(self, lookup: Callable[[], Awaitable[T]], what: str) -> T:
        """Await one of the shared lookups below; its failure means 'this check cannot run' (the check that owns
        the lookup reports the cause)."""
        try:
            return await lookup()
        except CheckSkipped:
            raise
        except RemediatorError as exc:
            raise CheckSkipped(f"needs {what}, which could not be read ({scrub(exc.message)})") from None
        except Exception as exc:
            raise CheckSkipped(f"needs {what}, which could not be read ({type(exc).__name__})") from None

    async def sdk(self, group: str) -> None:
        """Import one SDK group off the event loop (once per validation; a no-op once imported)."""
        await self.once(f"sdk:{group}", lambda: asyncio.to_thread(_import_all, _SDK_MODULES[group]))

    async def arm(self) -> RbacAdapter:
        await self.sdk("arm")
        await self.need(self.tenant_access, f"access to tenant {self.target.tenant_id}")
        return self.rbac

    async def tenant_access(self) -> None:
        """Can the product sign in to the target's tenant at all? Raises the cross-tenant AccessDeniedError
        (tenant_not_onboarded, tenant_consent_missing, ...) that the tenant check reports; ARM checks skip on it
        instead of reporting each refusal again."""
        from ..adapters.graph import cross_tenant_error, not_onboarded_error

        async def probe() -> None:
            target, clients = self.target, self.ctx.clients
            app = target.app_id or target.vm_resource_id or target.name
            if not target.cross_tenant:
                error = not_onboarded_error(clients, target.tenant_id, app, "The target's tenant is not the home "
                                                                             "tenant and it uses the home identity")
                if error is not None:
                    raise error
                return
            from azure.core.exceptions import ClientAuthenticationError

            await self.sdk("identity")
            try:
                await clients.credential_for(target.tenant_id).get_token(clients.cloud.arm_scope)
            except ClientAuthenticationError as exc:
                mapped = cross_tenant_error(clients, exc, tenant_id=target.tenant_id, app=app)
                if mapped is not None:
                    raise mapped from None
                raise

        return await self.once("tenant_access", probe)

    async def close(self) -> None:
        for task in self._tasks.values():
            if not task.done():
                task.cancel()
        for task in self._tasks.values():
            if task.done() and not task.cancelled():
                task.exception()  # mark retrieved: failures were reported by the checks that own them
        credentials, self._credentials = self._credentials, []
        for credential in credentials:
            try:
                await credential.close()
            except Exception:  # noqa: S110 - closing is best effort and must not hide the report
                pass

    def params(self) -> dict[str, object]:
        """Ids that fill the placeholders of remediation steps."""
        t = self.target
        cc = t.cyclecloud
        vault_host = self.ctx.settings.key_vault_url.split("//", 1)[-1].split("/", 1)[0]
        return {
            "target": t.name,
            "app_id": t.app_id,
            "tenant_id": t.tenant_id,
            "subscription_id": t.subscription_ids[0] if len(t.subscription_ids) == 1 else None,
            "secret_name": t.secret_name,
            "vault_name": vault_host.split(".", 1)[0] if vault_host else None,
            "account": cc.account if cc else None,
            "cyclecloud_url": cc.url if cc else None,
            "cyclecloud_user": cc.user if cc else None,
            "password_secret": cc.password_secret if cc else None,
            "vm_id": t.vm_resource_id,
            "vm_name": t.vm_resource_id.rsplit("/", 1)[-1] if t.vm_resource_id else None,
            "role": t.roles[0] if len(t.roles) == 1 else None,
        }

    # -- shared lookups ---------------------------------------------------------------------------------

    async def stored_secret(self) -> StoredSecret:
        from ..adapters.vault import VaultAdapter

        async def fetch() -> StoredSecret:
            if not self.target.secret_name:
                raise CheckSkipped("the target has no secret_name")
            await self.sdk("vault")
            secret = await VaultAdapter(self.ctx.clients).get_secret(self.target.secret_name)
            register_secret(secret.value)
            return secret

        return await self.once("stored_secret", fetch)

    async def application(self) -> AppRegistration:
        from ..adapters.graph import GraphAdapter

        async def fetch() -> AppRegistration:
            if not self.target.app_id:
                raise CheckSkipped("the target has no app_id")
            await self.sdk("graph")
            return await GraphAdapter(self.ctx.clients).get_application(self.target.app_id)

        return await self.once("application", fetch)

    async def service_principal(self) -> ServicePrincipalInfo:
        from ..adapters.graph import GraphAdapter

        async def fetch() -> ServicePrincipalInfo:
            if not self.target.app_id:
                raise CheckSkipped("the target has no app_id")
            await self.sdk("graph")
            return await GraphAdapter(self.ctx.clients).get_service_principal(self.target.app_id)

        return await self.once("service_principal", fetch)

    async def token_probe(self) -> TokenProbe:
        """A token request with the stored secret exactly as stored (whitespace and all)."""
        from ..adapters.entra import probe_secret

        async def fetch() -> TokenProbe:
            await self.sdk("identity")
            secret = await self.need(self.stored_secret, "the secret in Key Vault")
            app_id = self.target.app_id or ""
            # the probe's credential is the one the ARM checks then read with (secret_credential): the token it
            # got stays in its cache, so the CycleCloud principal costs one token request per validation, not two
            credential = self.ctx.clients.secret_credential(self.target.tenant_id, app_id, secret.value)
            self._credentials.append(credential)
            self._probe_credential = credential
            return await probe_secret(self.ctx.clients, self.target.tenant_id, app_id, secret.value,
                                      credential=credential)

        return await self.once("token_probe", fetch)

    async def secret_credential(self) -> AsyncTokenCredential:
        """A credential signing in with the stored secret (for ARM reads as the CycleCloud principal): the token
        probe's own. Needs a successful token probe first, so a refused secret is reported once, by the token
        check."""

        async def build() -> AsyncTokenCredential:
            probe = await self.need(self.token_probe, "a token from the stored secret")
            if not probe.ok or self._probe_credential is None:
                raise CheckSkipped("needs a token from the stored secret, which Entra ID refused (see the token "
                                   "check)")
            return self._probe_credential

        return await self.once("secret_credential", build)

    @property
    def is_managed_identity(self) -> bool:
        return self.target.mode is Mode.MANAGED_IDENTITY

    @property
    def rbac(self) -> RbacAdapter:
        if self._rbac is None:
            from ..adapters.rbac import RbacAdapter

            self._rbac = RbacAdapter(self.ctx.clients)
        return self._rbac

    async def vm(self) -> VmInfo:
        from ..adapters.compute import ComputeAdapter

        async def fetch() -> VmInfo:
            if not self.target.vm_resource_id:
                raise CheckSkipped("the target has no vm_resource_id")
            await self.sdk("compute")
            return await ComputeAdapter(self.ctx.clients).get_vm(self.target.vm_resource_id)

        return await self.once("vm", fetch)

    async def principal_id(self) -> str:
        """The CycleCloud identity's object id: the service principal's, or the VM's system-assigned identity's."""

        async def fetch() -> str:
            if self.is_managed_identity:
                vm = await self.need(self.vm, "the CycleCloud VM")
                if not vm.identity_principal_id:
                    raise CheckSkipped("the CycleCloud VM has no system-assigned identity (see the identity check)")
                principal = vm.identity_principal_id
            else:
                principal = (await self.need(self.service_principal,
                                             "the app's service principal")).object_id
            self.observations["principal_id"] = principal
            return principal

        return await self.once("principal_id", fetch)

    async def subscription(self, subscription_id: str) -> SubscriptionInfo:
        rbac = await self.arm()
        return await self.once(f"subscription:{subscription_id}", lambda: rbac.get_subscription(subscription_id))

    async def role(self, subscription_id: str, name_or_id: str) -> RoleDefinitionInfo:
        rbac = await self.arm()
        return await self.once(f"role:{subscription_id}:{name_or_id.lower()}",
                               lambda: rbac.resolve_role(subscription_id, name_or_id))
