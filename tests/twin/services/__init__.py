"""The twin's services, one module per Azure service."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..server import Service


def all_services() -> list[type[Service]]:
    from .arm import ArmService
    from .cyclecloud import CycleCloudService
    from .entra import EntraService
    from .graph import GraphService
    from .keyvault import KeyVaultService
    from .msi import ManagedIdentityService

    return [EntraService, ManagedIdentityService, GraphService, ArmService, KeyVaultService, CycleCloudService]
