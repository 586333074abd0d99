"""Placeholder: replaced by the full service."""

from __future__ import annotations

from ..http import Router
from ..server import VAULT_SUFFIXES, Service


class KeyVaultService(Service):
    name = "keyvault"

    def serves(self, host: str) -> bool:
        return host.endswith(VAULT_SUFFIXES)

    def register(self, router: Router) -> None:
        pass
