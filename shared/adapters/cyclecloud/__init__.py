"""CycleCloud: read, update and verify a cloud provider account's credential, over REST or Run Command.

    client = await open_cyclecloud(ctx, target)
    try:
        result = await client.probe()              # checklist; changes nothing
        account = await client.read_account()      # never the secret, only its hint
        await client.update_secret(new_secret)     # changes only AzureRMApplicationSecret
        await client.verify(app_id=..., tenant_id=...)
    finally:
        await client.close()

The adapter only speaks to CycleCloud; the probe of a configured target by name (HTTP, CLI) is a diagnosis use
case: shared/cyclecloud_probe.py.

See docs/cyclecloud.md for the REST contract (CycleCloud publishes no credential endpoint) and the Run Command
script.
"""

from __future__ import annotations

from ...config import Target, Transport
from ...context import AppContext
from .client import CycleCloudClient
from .errors import (
    CycleCloudAccountMissingError,
    CycleCloudEndpointError,
    CycleCloudForbiddenError,
    CycleCloudLockedOutError,
    CycleCloudLoginError,
    CycleCloudLoginPausedError,
    CycleCloudNotConfiguredError,
    CycleCloudReadBackMismatchError,
    CycleCloudRunCommandError,
    CycleCloudTlsError,
    CycleCloudUnreachableError,
    CycleCloudUpdateRejectedError,
)
from .login_guard import login_guard
from .models import CheckStatus, CycleCloudAccount, ProbeCheck, ProbeResult
from .rest import RestTransport
from .runcommand import RunCommandTransport

__all__ = [
    "CheckStatus", "CycleCloudAccount", "CycleCloudAccountMissingError", "CycleCloudClient", "CycleCloudEndpointError",
    "CycleCloudForbiddenError", "CycleCloudLockedOutError", "CycleCloudLoginError", "CycleCloudLoginPausedError",
    "CycleCloudNotConfiguredError", "CycleCloudReadBackMismatchError", "CycleCloudRunCommandError",
    "CycleCloudTlsError", "CycleCloudUnreachableError", "CycleCloudUpdateRejectedError", "ProbeCheck", "ProbeResult",
    "login_guard", "open_cyclecloud", "read_cyclecloud_account",
]


async def open_cyclecloud(ctx: AppContext, target: Target) -> CycleCloudClient:
    """A client for the target's CycleCloud account over its configured transport. Does no I/O itself: the
    CycleCloud password and CA PEM are read from Key Vault on first use (so `probe` can still check the network
    and TLS when the password cannot be read)."""
    connection = target.cyclecloud
    if connection is None:
        raise CycleCloudNotConfiguredError(
            f"Target '{target.name}' has no CycleCloud connection.",
            fix='Add "cyclecloud": {"url": ..., "account": ..., "user": ..., "password_secret": ...} to the target.',
            target=target.name)
    if connection.transport is Transport.RUNCOMMAND:
        if not target.vm_resource_id:
            raise CycleCloudNotConfiguredError(
                f"Target '{target.name}' uses the runcommand transport but names no VM.",
                fix="Set vm_resource_id to the CycleCloud VM's Resource ID (VM > Properties).", target=target.name)
        from ..compute import ComputeAdapter

        transport: RestTransport | RunCommandTransport = RunCommandTransport(
            target.name, connection.account, target.vm_resource_id, ComputeAdapter(ctx.clients),
            supports_dry_run=connection.supports_dry_run)
    else:
        from ..vault import VaultAdapter

        vault = VaultAdapter(ctx.clients)

        async def password() -> str | None:
            return (await vault.get_secret(connection.password_secret)).value

        async def ca_pem() -> str | None:
            if not connection.ca_bundle_secret:
                return None
            return (await vault.get_secret(connection.ca_bundle_secret)).value

        transport = RestTransport(target.name, connection, password=password, ca_pem=ca_pem,
                                  pool=ctx.clients.requests_pool())
    return CycleCloudClient(target.name, connection.account, connection.url, transport)


async def read_cyclecloud_account(ctx: AppContext, target: Target) -> CycleCloudAccount:
    """The target's CycleCloud account as it is now (never the secret, only its hint), on a client of its own."""
    client = await open_cyclecloud(ctx, target)
    try:
        return await client.read_account()
    finally:
        await client.close()
