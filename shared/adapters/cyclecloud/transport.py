"""What a CycleCloud transport does. The client (client.py) is the same for both; `rest` and `runcommand`
differ only in how they reach the account."""

from __future__ import annotations

from typing import Any, Protocol

from .models import ProbeCheck


class CycleCloudTransport(Protocol):
    name: str
    description: str  # where it talks to, for messages (a URL or a VM)
    # the account record (masked) the last `probe` read to check the login and the account; None until one did
    probed_record: dict[str, Any] | None

    async def probe(self) -> list[ProbeCheck]:
        """Every check of the checklist, in order, without changing anything."""
        ...

    async def read_record(self) -> dict[str, Any]:
        """The account record in the installer shape, the secret masked (never in clear)."""
        ...

    async def update_secret(self, secret: str) -> dict[str, Any]:
        """Change only the account's secret; return the record as the server now shows it (masked)."""
        ...

    async def close(self) -> None: ...
