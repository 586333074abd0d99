"""What every entry point (Function trigger, CLI) hands to the domain code: settings and the client factory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from .clients import ClientFactory
from .config import Settings, load_settings


@dataclass
class AppContext:
    settings: Settings
    clients: ClientFactory

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> AppContext:
        settings = load_settings(env)
        return cls(settings, ClientFactory(settings))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.clients.close()
