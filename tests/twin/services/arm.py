"""Placeholder: replaced by the full service."""

from __future__ import annotations

from ..http import Router
from ..server import ARM_HOSTS, Service


class ArmService(Service):
    name = "arm"

    def serves(self, host: str) -> bool:
        return host in ARM_HOSTS

    def register(self, router: Router) -> None:
        pass
