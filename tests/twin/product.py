"""The product's settings for a scenario, so a standalone twin can be used by `python -m shared ...` at once.

A scenario may carry a `product` section (the twin's state ignores it):

    "product": {"settings": {"KEY_VAULT_URL": "https://kv.vault.azure.net", "AZURE_CLOUD": "AzureCloud"},
                "targets": [{"name": "hpc-prod", ..., "cyclecloud": {"url": "https://cyclecloud.contoso.com", ...}}]}

`product_environment` turns it into app settings: the settings as given, and `TARGETS` as JSON where every
CycleCloud target served by the twin and without its own `ca_bundle`/`ca_bundle_secret` gets the path of that
server's CA bundle (each CycleCloud server has its own CA, written to the twin's workdir). The product then
verifies CycleCloud's certificate for real, as it would against a self-signed install.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .server import Twin


class ProductSectionError(ValueError):
    """The scenario's `product` section is not usable (a message a person can act on)."""


def product_section(scenario: dict[str, Any]) -> dict[str, Any]:
    section = scenario.get("product") or {}
    if not isinstance(section, dict):
        raise ProductSectionError("scenario 'product' must be an object with 'settings' and 'targets'")
    unknown = set(section) - {"settings", "targets"}
    if unknown:
        raise ProductSectionError(f"scenario 'product' has unknown fields {sorted(unknown)}; "
                                  "use 'settings' and 'targets'")
    settings = section.get("settings", {})
    if not isinstance(settings, dict) or not all(isinstance(v, str) for v in settings.values()):
        raise ProductSectionError("scenario 'product.settings' must map setting names to strings")
    targets = section.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
        raise ProductSectionError("scenario 'product.targets' must be a list of target objects")
    return section


def write_cyclecloud_ca_bundles(twin: Twin) -> dict[str, str]:
    """Write every CycleCloud server's CA bundle into the workdir: host -> path."""
    return {host: str(twin.cyclecloud_ca_path(host)) for host in sorted(twin.state.cyclecloud_servers)}


def product_environment(twin: Twin, scenario: dict[str, Any]) -> dict[str, str]:
    """App settings for the scenario's `product` section ({} when it has none)."""
    section = product_section(scenario)
    if not section:
        return {}
    bundles = write_cyclecloud_ca_bundles(twin)
    env = dict(section.get("settings", {}))
    targets = copy.deepcopy(section.get("targets", []))
    for target in targets:
        cyclecloud = target.get("cyclecloud")
        if not isinstance(cyclecloud, dict) or "ca_bundle" in cyclecloud or "ca_bundle_secret" in cyclecloud:
            continue
        host = (urlsplit(str(cyclecloud.get("url", ""))).hostname or "").lower()
        if host in bundles:
            cyclecloud["ca_bundle"] = bundles[host]
    if targets:
        env["TARGETS"] = json.dumps(targets)
    return env
