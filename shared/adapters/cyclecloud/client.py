"""The CycleCloud client: one interface over both transports (read, update, verify, probe)."""

from __future__ import annotations

import logging

from ...redaction import register_secret
from .errors import CycleCloudReadBackMismatchError
from .models import (
    HINT_LENGTH,
    PROBE_CHECKS,
    CheckStatus,
    CycleCloudAccount,
    ProbeCheck,
    ProbeResult,
    account_from_record,
)
from .transport import CycleCloudTransport

logger = logging.getLogger(__name__)


class CycleCloudClient:
    def __init__(self, target_name: str, account: str, url: str, transport: CycleCloudTransport) -> None:
        self.target_name = target_name
        self.account = account
        self.url = url
        self.transport = transport

    async def __aenter__(self) -> CycleCloudClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    async def probe(self) -> ProbeResult:
        """Reachable, TLS trusted, login works, account exists, the update path answers: changes nothing."""
        checks = {c.name: c for c in await self.transport.probe()}
        ordered = tuple(checks.get(name, ProbeCheck(name, CheckStatus.SKIPPED, "not checked")) for name in PROBE_CHECKS)
        return ProbeResult(self.target_name, self.transport.name, self.url, ordered)

    def probed_account(self) -> CycleCloudAccount | None:
        """The account as `probe` just read it (checking the login and the account reads it), so a caller that
        probes and then needs the account does not ask CycleCloud twice; None when the probe could not read it."""
        record = self.transport.probed_record
        return None if record is None else account_from_record(record, self.account)

    async def read_account(self) -> CycleCloudAccount:
        """The account as CycleCloud holds it; the secret only as its hint."""
        return account_from_record(await self.transport.read_record(), self.account)

    async def update_secret(self, secret: str) -> None:
        """Give the account a new secret, changing nothing else. Raises CycleCloudUpdateRejectedError when
        CycleCloud's validation refuses it (the account then keeps its previous secret)."""
        register_secret(secret)
        await self.transport.update_secret(secret)
        logger.info("CycleCloud account %s of target %s: secret updated (hint %s...)", self.account,
                    self.target_name, secret[:HINT_LENGTH])

    async def verify(self, *, app_id: str, tenant_id: str, secret_hint: str | None = None) -> CycleCloudAccount:
        """Read the account back and check it uses `app_id` in `tenant_id` (and, given `secret_hint`, the secret
        with that hint). Raises CycleCloudReadBackMismatchError naming each difference."""
        account = await self.read_account()
        differences = []
        if account.app_id != app_id.lower():
            differences.append(f"application id is '{account.app_id or '(empty)'}', expected '{app_id.lower()}'")
        if account.tenant_id != tenant_id.lower():
            differences.append(f"tenant id is '{account.tenant_id or '(empty)'}', expected '{tenant_id.lower()}'")
        if account.use_managed_identity:
            differences.append("the account uses the VM's managed identity, not a client secret")
        if secret_hint is not None and account.secret_hint is not None and account.secret_hint != secret_hint:
            differences.append(f"the secret's hint is '{account.secret_hint}', expected '{secret_hint}'")
        if differences:
            raise CycleCloudReadBackMismatchError(
                f"CycleCloud account '{self.account}' does not hold the expected credential.",
                reason="Read back: " + "; ".join(differences) + ".",
                fix="Something else changed the account, or the server did not apply the update. Check Settings > "
                    "Cloud Provider Accounts in CycleCloud, correct the target's app_id/tenant_id if they are wrong, "
                    "and run `rotate` again.", target=self.target_name, details={"differences": differences})
        return account
