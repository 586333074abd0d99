"""Helpers shared by the CycleCloud adapter tests."""

from __future__ import annotations

from datetime import timedelta

from tests.twin import Twin
from tests.twin.state import PasswordCredential, hash_secret, new_guid
from tests.world import APP_ID, CC_HOST, CC_PASSWORD_SECRET, NEW_SECRET, VAULT_NAME


def add_app_secret(twin: Twin, value: str = NEW_SECRET) -> str:
    """Give the CycleCloud app a new working client secret in the twin's Entra ID (as addPassword would)."""
    with twin.state.lock:
        app = twin.state.app_by_app_id(APP_ID)
        assert app is not None
        now = twin.state.now()
        app.password_credentials.append(PasswordCredential(new_guid(), hash_secret(value), value[:3], "rotated",
                                                           now - timedelta(minutes=1), now + timedelta(days=180),
                                                           now - timedelta(minutes=1)))
    return value


def set_vault_password(twin: Twin, value: str) -> None:
    with twin.state.lock:
        twin.state.vaults[f"{VAULT_NAME}.vault.azure.net"].secrets[CC_PASSWORD_SECRET].versions[-1].value = value


def cc_server(twin: Twin):  # type: ignore[no-untyped-def]
    return twin.state.cyclecloud_servers[CC_HOST]


def cc_requests(twin: Twin) -> list[tuple[str, int]]:
    return [(r.operation, r.status) for r in twin.request_log if r.service == "cyclecloud"]
