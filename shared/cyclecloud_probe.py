"""The CycleCloud probe of one configured target (POST /api/targets/{target}/cyclecloud/probe, `python -m shared
cyclecloud probe`): the adapter's read-only checklist (reachable, TLS, login, account, update path) for the
target's configured transport. `validate` runs the same probe inside its cyclecloud check
(diagnosis/checks/cyclecloud.py). A module of its own, outside diagnosis/, so the probe route does not import
every check."""

from __future__ import annotations

from .adapters.cyclecloud import ProbeResult, open_cyclecloud
from .context import AppContext


async def probe_target(ctx: AppContext, target_name: str) -> ProbeResult:
    """The probe checklist for one configured target; changes nothing on the server."""
    target = ctx.settings.target(target_name)
    client = await open_cyclecloud(ctx, target)
    try:
        return await client.probe()
    finally:
        await client.close()
