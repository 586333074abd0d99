"""Placeholder: replaced by the full service."""

from __future__ import annotations

from ..http import Router
from ..server import Service


class CycleCloudService(Service):
    name = "cyclecloud"

    def serves(self, host: str) -> bool:
        return host in self.state.cyclecloud_servers

    def register(self, router: Router) -> None:
        pass
