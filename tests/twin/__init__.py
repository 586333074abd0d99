"""A local twin of the Azure services the product calls (Entra ID, managed identity, Graph, ARM, Key Vault)
and of CycleCloud, reached by the real SDKs through an HTTPS proxy. See README.md beside this file."""

from .faults import Fault
from .server import Twin

__all__ = ["Fault", "Twin"]
