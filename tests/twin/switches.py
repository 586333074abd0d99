"""Scenario switches for realistic Azure behaviours that are not always on (docs/twin.md, "Switches").

Defaults keep the twin deterministic and fast; a scenario turns a behaviour on to test the product against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Switches:
    # Activity Log: events per page before a `nextLink` (Azure pages the Activity Log; 200 is the twin's guess
    # of a realistic page, tests set a small number to exercise the product's nextLink loop)
    activity_log_page_size: int = 200
    # operation -> the api-versions accepted there (narrows tests/twin/services/arm_versions.py; a sovereign
    # cloud that lags behind public cloud)
    arm_api_versions: dict[str, list[str]] = field(default_factory=dict)
    # Key Vault: seconds a deleted secret stays "being deleted" (a get of the deleted secret and a purge answer
    # 404/409 until then; Azure completes soft delete asynchronously)
    secret_delete_seconds: float = 0.0
