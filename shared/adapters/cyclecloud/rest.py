"""The `rest` transport: HTTPS with Basic auth to the account credential endpoint.

CycleCloud publishes no endpoint for account credentials; the path and method are configuration
(`credential_path`, `credential_method`) and `probe` checks them on the user's server before rotation relies on
them. TLS is always verified: against `ca_bundle` (a PEM file), `ca_bundle_secret` (PEM in Key Vault), or the
system store. `requests` is synchronous, so every call runs in a worker thread.

`probe` only reads (GET) unless the target declares `supports_dry_run`: a server that ignores `?dry_run=true`
would otherwise apply the probe's update for real. Every authenticated request goes through the login guard
(login_guard.py), so concurrent callers never send more than one unverified login at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from ...config import CycleCloudConnection
from ...errors import CycleCloudError, RemediatorError
from ...limits import gate, host_key
from ...redaction import register_secret, scrub
from .errors import (
    CycleCloudAccountMissingError,
    CycleCloudEndpointError,
    CycleCloudForbiddenError,
    CycleCloudLockedOutError,
    CycleCloudLoginError,
    CycleCloudLoginPausedError,
    CycleCloudTlsError,
    CycleCloudUnreachableError,
    CycleCloudUpdateRejectedError,
)
from .login_guard import Admission, LoginGuard, LoginPaused, login_guard
from .models import SECRET_FIELD, CheckStatus, ProbeCheck, without_secret

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
MAX_ATTEMPTS = 4  # one try plus three retries, for connection errors, 429 and 5xx only
BACKOFF_SECONDS = 0.25  # doubled after each retry
MAX_RETRY_AFTER = 30.0
RETRYABLE_STATUS = {429, 500, 502, 503, 504}
USER_AGENT = "cyclecloud-credential-remediator"

TLS_FIX = ("Give the product the CA that signed CycleCloud's certificate: set the target's cyclecloud.ca_bundle to a "
           "PEM file, or cyclecloud.ca_bundle_secret to a Key Vault secret holding the PEM (a self-signed install: "
           "export the certificate from the server). Never turn verification off.")

Provider = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any
    text: str
    headers: dict[str, str]

    @property
    def message(self) -> str:
        if isinstance(self.body, dict):
            for key in ("message", "error_description", "detail"):
                if isinstance(self.body.get(key), str):
                    return str(self.body[key])
            error = self.body.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                return str(error["message"])
            if isinstance(error, str):
                return error
        return self.text.strip()[:300]


class RestTransport:
    name = "rest"

    def __init__(self, target_name: str, connection: CycleCloudConnection, *, password: Provider,
                 ca_pem: Provider, guard: LoginGuard = login_guard, pool: requests.adapters.HTTPAdapter | None = None
                 ) -> None:
        self.target_name = target_name
        self.connection = connection
        self.description = connection.url
        self._password_provider = password
        self._ca_pem_provider = ca_pem
        self._guard = guard
        self._pool = pool  # the factory's shared HTTPS connection pool (ClientFactory.requests_pool), if given
        self._session: requests.Session | None = None
        self._ca_file: str | None = None
        self._password: str | None = None
        self.probed_record: dict[str, Any] | None = None

    # -- setup ----------------------------------------------------------------------------------------------

    @property
    def account_url(self) -> str:
        return self.connection.url.rstrip("/") + self.connection.credential_path.replace(
            "{account}", account_segment(self.connection.account))

    @property
    def _where(self) -> str:
        return f"{self.connection.credential_method} {self.connection.credential_path}"

    async def _verify(self) -> str | bool:
        """The CA bundle to verify CycleCloud's certificate with; `True` means the system store."""
        if self.connection.ca_bundle:
            return self.connection.ca_bundle
        if self._ca_file:
            return self._ca_file
        if self.connection.ca_bundle_secret:
            pem = await self._ca_pem_provider()
            if not pem or "-----BEGIN CERTIFICATE-----" not in pem:
                raise CycleCloudTlsError(
                    "The CA bundle in Key Vault is not a PEM certificate.",
                    reason=f"Key Vault secret '{self.connection.ca_bundle_secret}' does not contain "
                           "'-----BEGIN CERTIFICATE-----'.",
                    fix="Store the CA certificate in PEM form (the text file starting with -----BEGIN CERTIFICATE-----)"
                        " in that secret.", target=self.target_name)
            handle, path = tempfile.mkstemp(prefix="cyclecloud-ca-", suffix=".pem")
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(pem)
            self._ca_file = path
            return path
        return True

    async def _session_for(self, *, authenticated: bool) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            if self._pool is not None:
                session.mount("https://", self._pool)
            session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
            # passed on every request too: requests lets REQUESTS_CA_BUNDLE override a session's `verify`
            session.verify = await self._verify()
            self._session = session
        if authenticated:
            wait = self._guard.seconds_to_wait(self.connection.url, self.connection.user)
            if wait > 0:
                raise self._paused(wait)
        if authenticated and self._session.auth is None:
            if self._password is None:
                password = await self._password_provider()
                if not password:
                    raise CycleCloudLoginError(
                        "The CycleCloud password secret is empty.",
                        reason=f"Key Vault secret '{self.connection.password_secret}' has no value.",
                        fix="Store the CycleCloud user's password in that secret.", target=self.target_name)
                register_secret(password)
                self._password = password
            self._session.auth = (self.connection.user, self._password)
        return self._session

    def _paused(self, wait: float) -> CycleCloudLoginPausedError:
        return CycleCloudLoginPausedError(
            f"Not logging in to CycleCloud as '{self.connection.user}': the previous login failed less than a "
            "minute ago.",
            reason="CycleCloud locks a user for 5 minutes after 5 failed logins within 60 seconds, so the product "
                   f"makes at most one failed login per server and user per minute (next try in {wait:.0f} s).",
            fix=f"Check the password in Key Vault secret '{self.connection.password_secret}' against the CycleCloud "
                f"user '{self.connection.user}', then retry after a minute.",
            target=self.target_name)

    async def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._ca_file:
            try:
                os.unlink(self._ca_file)
            except OSError:
                logger.debug("could not remove the temporary CA file")
            self._ca_file = None

    # -- one call, bounded retry ----------------------------------------------------------------------------

    async def _admit(self) -> Admission:
        """Wait for the login guard's permission to send this user's credentials (see login_guard.py)."""
        assert self._password is not None  # set by _session_for(authenticated=True)
        try:
            return await self._guard.admit(self.connection.url, self.connection.user, self._password)
        except LoginPaused as paused:
            raise self._paused(paused.seconds) from None

    async def _send_limited(self, session: requests.Session, method: str, url: str, body: Any,
                            params: dict[str, str] | None, secret: str | None) -> _Answer:
        """One request through the server's gate (shared/limits.py: a CycleCloud server is one VM's web app)."""
        async with gate("cyclecloud", host_key(url)).slot():
            return await asyncio.to_thread(self._send, session, method, url, body, params, secret)

    async def _call(self, method: str, url: str, *, authenticated: bool = True, body: Any = None,
                    params: dict[str, str] | None = None, secret: str | None = None) -> _Answer:
        session = await self._session_for(authenticated=authenticated)
        if not authenticated:
            return await self._send_limited(session, method, url, body, params, secret)
        admission = await self._admit()
        try:
            answer = await self._send_limited(session, method, url, body, params, secret)
        except BaseException:
            admission.release()  # no answer about the login: the next waiting caller may try
            raise
        try:
            if answer.status == 401:
                admission.failed()
                raise CycleCloudLoginError(
                    f"CycleCloud refused the login of user '{self.connection.user}'.",
                    reason=f"{answer.status}: {scrub(answer.message, secret).rstrip('.')}. The login was not retried: "
                           "CycleCloud locks a user after 5 failed logins within 60 seconds.",
                    fix=f"Put the CycleCloud user's current password in Key Vault secret "
                        f"'{self.connection.password_secret}' (or correct cyclecloud.user); the product tries again "
                        "at most once a minute.", target=self.target_name)
            if answer.status == 403 and "lock" in answer.message.lower():
                admission.failed()  # locked: sending more logins could only extend the lock
                raise CycleCloudLockedOutError(
                    f"CycleCloud user '{self.connection.user}' is locked out.",
                    reason=scrub(answer.message, secret) + " (5 failed logins within 60 seconds lock a user for "
                                                           "5 minutes).",
                    fix="Wait 5 minutes, make sure nothing else logs in with a wrong password (check the password in "
                        f"Key Vault secret '{self.connection.password_secret}'), or unlock the user in CycleCloud "
                        "(Settings > Users).", target=self.target_name)
            if answer.status in RETRYABLE_STATUS:
                admission.release()  # the server failed before it judged the login
            else:
                admission.succeeded()  # any other answer (200, 403 not superuser, 404, ...) means the login worked
        finally:
            admission.release()  # no-op when an outcome was recorded above
        return answer

    def _send(self, session: requests.Session, method: str, url: str, body: Any, params: dict[str, str] | None,
              secret: str | None) -> _Answer:
        path = urlsplit(url).path
        delay = BACKOFF_SECONDS
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = session.request(method, url, json=body, params=params, allow_redirects=False,
                                           verify=session.verify,
                                           timeout=(CONNECT_TIMEOUT, self.connection.timeout_seconds))
            except requests.exceptions.SSLError as exc:
                raise CycleCloudTlsError(
                    f"CycleCloud's certificate at {self.connection.url} is not trusted.",
                    reason=self._tls_reason(exc), fix=TLS_FIX, target=self.target_name) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                if attempt == MAX_ATTEMPTS:
                    raise CycleCloudUnreachableError(
                        f"CycleCloud at {self.connection.url} could not be reached.",
                        reason=f"{type(exc).__name__} after {attempt} attempts: {scrub(str(exc), secret)[:300]}",
                        fix="Check the URL (scheme, host, port and context path), that CycleCloud is running, and "
                            "that this host can reach it (firewall, NSG, private endpoint, proxy); or use the "
                            "runcommand transport, which needs no network path to CycleCloud.",
                        target=self.target_name) from None
                logger.info("CycleCloud %s %s: %s; retrying (attempt %s of %s)", method, path, type(exc).__name__,
                            attempt, MAX_ATTEMPTS)
                time.sleep(delay)
                delay *= 2
                continue
            try:
                payload: Any = response.json() if response.content else None
            except ValueError:
                payload = None
            answer = _Answer(response.status_code, payload, response.text, dict(response.headers))
            logger.info("CycleCloud %s %s -> %s", method, path, response.status_code)
            if response.status_code in RETRYABLE_STATUS and attempt < MAX_ATTEMPTS:
                wait = _retry_after(response.headers.get("Retry-After"), delay)
                time.sleep(wait)
                delay *= 2
                continue
            return answer
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _tls_reason(self, exc: Exception) -> str:
        text = str(exc)
        where = (f"the CA bundle {self.connection.ca_bundle}" if self.connection.ca_bundle
                 else f"the CA in Key Vault secret '{self.connection.ca_bundle_secret}'"
                 if self.connection.ca_bundle_secret else "the system trust store (no ca_bundle configured)")
        detail = "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in text else text[:200]
        return f"Checked against {where}: {detail}."

    def _failure(self, answer: _Answer, doing: str, secret: str | None = None) -> CycleCloudError:
        message = scrub(answer.message, secret)
        if answer.status == 404:
            if "account not found" in message.lower():
                return CycleCloudAccountMissingError(
                    f"CycleCloud has no account named '{self.connection.account}'.", reason=message,
                    fix="Set cyclecloud.account to the name shown under Settings > Cloud Provider Accounts (often "
                        "'azure'), or create the account in CycleCloud.", target=self.target_name)
            return self._unsupported(answer, doing)
        if answer.status == 405:
            return self._unsupported(answer, doing)
        if answer.status == 403:
            return CycleCloudForbiddenError(
                f"CycleCloud user '{self.connection.user}' may not {doing}.", reason=message,
                fix="Make the user a Superuser in CycleCloud (Settings > Users): only superusers may read and edit "
                    "account credentials.", target=self.target_name)
        if answer.status in RETRYABLE_STATUS:
            return CycleCloudUnreachableError(
                f"CycleCloud kept failing (HTTP {answer.status}) when asked to {doing}.",
                reason=f"{MAX_ATTEMPTS} attempts, honouring Retry-After: {message or '(no message)'}",
                fix="Check that cycle_server is healthy (/opt/cycle_server/cycle_server status, its logs) and retry "
                    "later.", target=self.target_name, details={"status": answer.status})
        if answer.status == 400 and doing == "update the account":
            return CycleCloudUpdateRejectedError(
                "CycleCloud rejected the new credential.", reason=message,
                fix="The account keeps its previous secret. If CycleCloud's message names an AADSTS code, the new "
                    "secret is not usable yet or is wrong (run `validate`); if it names an authorization error, "
                    "repair the role assignments (run `roles`).", target=self.target_name,
                details={"status": answer.status})
        return CycleCloudEndpointError(
            f"CycleCloud answered {answer.status} when asked to {doing}.", reason=message or "(no message)",
            fix="Check the server's log (/opt/cycle_server/logs/cycle_server.log) for the request; if it persists, "
                "use the runcommand transport.", target=self.target_name, details={"status": answer.status})

    def _unsupported(self, answer: _Answer, doing: str) -> CycleCloudEndpointError:
        return CycleCloudEndpointError(
            f"CycleCloud does not serve the credential endpoint {self._where} (HTTP {answer.status} when asked to "
            f"{doing}).",
            reason="CycleCloud publishes no REST endpoint for account credentials; this server answers differently "
                   "from the configured path and method.",
            fix="Set cyclecloud.credential_path and cyclecloud.credential_method to what your CycleCloud version "
                "serves (see docs/cyclecloud.md), or set cyclecloud.transport to 'runcommand', which uses the "
                "documented `cyclecloud account edit` on the CycleCloud VM.",
            target=self.target_name, details={"status": answer.status})

    # -- operations -----------------------------------------------------------------------------------------

    async def read_record(self) -> dict[str, Any]:
        answer = await self._call("GET", self.account_url)
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise self._failure(answer, "read the account") if answer.status != 200 else CycleCloudEndpointError(
                "CycleCloud's account answer is not a JSON object.", reason=answer.text[:100],
                fix="Check cyclecloud.credential_path (see docs/cyclecloud.md).", target=self.target_name)
        return dict(answer.body)

    async def update_secret(self, secret: str) -> dict[str, Any]:
        register_secret(secret)
        current = await self.read_record()
        body = {**without_secret(current), SECRET_FIELD: secret}  # every other field exactly as CycleCloud has it
        answer = await self._call(self.connection.credential_method, self.account_url, body=body, secret=secret)
        if answer.status >= 300:
            raise self._failure(answer, "update the account", secret)
        return dict(answer.body) if isinstance(answer.body, dict) else {}

    async def probe(self) -> list[ProbeCheck]:
        checks: dict[str, ProbeCheck] = {}

        def done(*rest: str, why: str) -> list[ProbeCheck]:
            for name in rest:
                checks[name] = ProbeCheck(name, CheckStatus.SKIPPED, why)
            return list(checks.values())

        # 1. reachable and TLS: an unauthenticated request, so a network problem never costs a login attempt
        try:
            home = await self._call("GET", self.connection.url.rstrip("/") + "/", authenticated=False)
        except CycleCloudTlsError as exc:
            checks["reachable"] = ProbeCheck("reachable", CheckStatus.OK, "the server answered the TLS handshake")
            checks["tls"] = ProbeCheck("tls", CheckStatus.FAILED, f"{exc.message} {exc.reason}", exc.fix)
            return done("login", "account", "update_path", why="not tried: TLS is not trusted")
        except RemediatorError as exc:
            checks["reachable"] = ProbeCheck("reachable", CheckStatus.FAILED, f"{exc.message} {exc.reason}", exc.fix)
            return done("tls", "login", "account", "update_path", why="not tried: the server is not reachable")
        checks["reachable"] = ProbeCheck("reachable", CheckStatus.OK, f"HTTP {home.status} from {self.connection.url}")
        checks["tls"] = ProbeCheck("tls", CheckStatus.OK, "certificate verified against " + (
            self.connection.ca_bundle or (f"Key Vault secret '{self.connection.ca_bundle_secret}'"
                                          if self.connection.ca_bundle_secret else "the system trust store")))
        # 2. login and account: one authenticated read
        try:
            record = await self.read_record()
        except (CycleCloudLoginError, CycleCloudLockedOutError) as exc:
            checks["login"] = ProbeCheck("login", CheckStatus.FAILED, f"{exc.message} {exc.reason}", exc.fix)
            return done("account", "update_path", why="not tried: login failed")
        except CycleCloudAccountMissingError as exc:
            checks["login"] = ProbeCheck("login", CheckStatus.OK, f"logged in as '{self.connection.user}'")
            checks["account"] = ProbeCheck("account", CheckStatus.FAILED, f"{exc.message} {exc.reason}", exc.fix)
            return done("update_path", why="not tried: the account is missing")
        except RemediatorError as exc:
            checks["login"] = ProbeCheck("login", CheckStatus.FAILED, f"{exc.message} {exc.reason}", exc.fix)
            return done("account", "update_path", why="not tried: the account could not be read")
        checks["login"] = ProbeCheck("login", CheckStatus.OK, f"logged in as '{self.connection.user}'")
        checks["account"] = ProbeCheck("account", CheckStatus.OK, f"account '{self.connection.account}' found")
        self.probed_record = record
        # 3. the update path: only where the operator declared that the server honours dry runs. A server that
        # ignores the query string would apply the request for real, so by default the probe only reads.
        if not self.connection.supports_dry_run:
            checks["update_path"] = ProbeCheck(
                "update_path", CheckStatus.SKIPPED,
                f"not checked: {self._where} is only sent to rotate (read-only probe; set "
                "cyclecloud.supports_dry_run: true if this server honours ?dry_run=true)")
            return list(checks.values())
        try:
            answer = await self._call(self.connection.credential_method, self.account_url,
                                      body=without_secret(record), params={"dry_run": "true"})
            if answer.status >= 300:
                raise self._failure(answer, "validate an account update (dry run)")
            checks["update_path"] = ProbeCheck("update_path", CheckStatus.OK,
                                               f"{self._where}?dry_run=true answered {answer.status}; nothing changed")
        except RemediatorError as exc:
            checks["update_path"] = ProbeCheck("update_path", CheckStatus.FAILED, f"{exc.message} {exc.reason}",
                                               exc.fix)
        return list(checks.values())


def account_segment(account: str) -> str:
    """The account name as exactly one URL path segment: quoted, so it never adds segments, a query or a
    fragment, and never a dot segment that a URL library would resolve (config refuses such names already)."""
    segment = quote(account, safe="")
    return segment.replace(".", "%2E") if set(segment) <= {"."} else segment


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait: the server's Retry-After (seconds or an HTTP date), capped; else the backoff."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
