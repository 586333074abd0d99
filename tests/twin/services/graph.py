"""Placeholder: replaced by the full service."""

from __future__ import annotations

from ..http import Router
from ..server import GRAPH_HOSTS, Service


class GraphService(Service):
    name = "graph"

    def serves(self, host: str) -> bool:
        return host in GRAPH_HOSTS

    def register(self, router: Router) -> None:
        pass
