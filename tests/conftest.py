"""Test fixtures: the Azure twin (one per run, reset per test), Azurite, the product's settings, and a
guard that fails the run on any connection outside 127.0.0.1."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.twin import Twin
from tests.world import CC_HOST, World

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------------------
# Guard: nothing in a test run may connect outside the loopback range.

_violations: list[str] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
        try:
            return bool(ipaddress.ip_address(host).is_loopback)
        except ValueError:
            return host == "localhost"
    return True  # AF_UNIX and friends


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
        _violations.append(repr(address))
        raise OSError(f"test guard: connection to {address!r} refused (tests may only reach 127.0.0.1)")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
        _violations.append(repr(address))
        raise OSError(f"test guard: connection to {address!r} refused (tests may only reach 127.0.0.1)")
    return _real_connect_ex(self, address)


_session_twin: Twin | None = None


def pytest_configure(config: pytest.Config) -> None:
    # The twin (and its CA) exists before any test module imports an HTTP stack: aiohttp builds its default
    # SSL context at import time from SSL_CERT_FILE, so the CA variables must name the twin's CA from the
    # start, for the whole session (the machines pre-set them to the system bundle).
    global _session_twin
    import tempfile

    _session_twin = Twin(Path(tempfile.mkdtemp(prefix="azure-twin-")))
    for key in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ[key] = str(_session_twin.ca_path)
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]


# The suite's own time, for docs/performance.md (`make bench` reports the last whole run on this machine)
TIMING_FILE = Path(__file__).resolve().parent.parent / ".pytest-timing.json"
_started = time.time()
_durations: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def _write_timing(session: pytest.Session, exitstatus: int) -> None:
    if session.config.args_source is not pytest.Config.ArgsSource.TESTPATHS or session.config.getoption("keyword") \
            or session.config.getoption("markexpr"):
        return  # only a run of the whole suite says what the suite costs
    slowest = sorted(_durations.items(), key=lambda item: item[1], reverse=True)[:10]
    TIMING_FILE.write_text(json.dumps({
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": round(time.time() - _started),
        "tests": session.testscollected, "failed": session.testsfailed, "exit_status": int(exitstatus),
        "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "slowest": [{"test": name, "seconds": round(seconds, 1)} for name, seconds in slowest]}, indent=1))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _write_timing(session, int(exitstatus))
    if _violations:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"GUARD: {len(_violations)} connection(s) outside 127.0.0.1: {_violations[:5]}",
                                red=True)
        session.exitstatus = 1


# ---------------------------------------------------------------------------------------------------------
# The twin


@pytest.fixture(scope="session")
def twin_server() -> Iterator[Twin]:
    assert _session_twin is not None
    twin = _session_twin.start()
    yield twin
    twin.stop()


@pytest.fixture
def twin(twin_server: Twin, monkeypatch: pytest.MonkeyPatch) -> Iterator[Twin]:
    """A reset twin, with this process's environment pointed at it."""
    twin_server.reset()
    for key, value in twin_server.environment().items():
        monkeypatch.setenv(key, value)
    for key in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET",
                "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST", "MSI_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)
    yield twin_server
    unrouted = list(twin_server.unrouted)
    twin_server.faults.clear()
    assert not unrouted, f"the product tried to reach hosts the twin does not model: {unrouted}"


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def cc_ca(twin: Twin) -> str:
    """The CycleCloud server's own CA bundle (distinct from the twin's CA)."""
    return str(twin.cyclecloud_ca_path(CC_HOST))


# ---------------------------------------------------------------------------------------------------------
# Azurite (Microsoft's storage emulator) for leases and journals


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start Azurite's blob service once per run; yields its connection string."""
    from tests.azurite import AzuriteError, start_azurite, stop_azurite

    log_path = tmp_path_factory.mktemp("azurite") / "azurite.log"
    with open(log_path, "wb") as log:
        try:
            proc, connection_string = start_azurite(log)
        except AzuriteError as exc:
            pytest.fail(f"{exc}; see {log_path}")
        yield connection_string
        stop_azurite(proc)


# ---------------------------------------------------------------------------------------------------------
# The product's settings


@pytest.fixture
def product_env(twin: Twin, world: World, cc_ca: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Load the world into the twin and the product's app settings into the environment."""
    twin.load(world.scenario())
    env = world.env(ca_bundle=cc_ca)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TARGETS_FILE", raising=False)
    return env


@pytest.fixture
async def cc(product_env: dict[str, str]) -> Any:
    """A CycleCloud client for the world's target, over the world's transport (REST or ARM Run Command)."""
    from shared.adapters.cyclecloud import open_cyclecloud
    from shared.context import AppContext
    from tests.world import TARGET

    async with AppContext.from_environment() as ctx:
        client = await open_cyclecloud(ctx, ctx.settings.target(TARGET))
        try:
            yield client
        finally:
            await client.close()


@pytest.fixture
def log_text(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record of the product, DEBUG included: what the leak checks read."""
    caplog.set_level(logging.DEBUG, logger="shared")
    return caplog


@pytest.fixture
def setup(twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Load a world (optionally edited) into the twin and the rotation's settings (Azurite included) into the
    environment; returns the settings."""
    from tests.rotation_support import apply_env, rotation_env

    def load(world: World | None = None, edit: Any = None, **kwargs: Any) -> dict[str, str]:
        env = rotation_env(twin, world or World(), cc_ca, azurite, edit=edit, **kwargs)
        apply_env(monkeypatch, env)
        return env
    return load


@pytest.fixture
def settings(product_env: dict[str, str]) -> Any:
    from shared.config import load_settings

    return load_settings()


@pytest.fixture
async def clients(settings: Any) -> Any:
    """The product's client factory for the world's settings (credentials, SDK clients), closed afterwards."""
    from shared.clients import ClientFactory

    async with ClientFactory(settings) as factory:
        yield factory


@pytest.fixture
def secret_values(world: World) -> list[str]:
    """Every secret value of the world: tests assert none of them appears in logs, errors or responses."""
    from tests.world import CC_PASSWORD

    return [world.secret, CC_PASSWORD]


@pytest.fixture(autouse=True)
def _quiet_sdk_logs() -> None:
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def _fresh_cyclecloud_login_guard() -> Iterator[None]:
    """The CycleCloud adapter allows one failed login per server and user per minute, per process; a test
    that fails a login on purpose must not pause the next test."""
    from shared.adapters.cyclecloud import login_guard

    login_guard.reset()
    yield
    login_guard.reset()


@pytest.fixture(scope="session")
def functions_host() -> Iterator[Any]:
    """function_app.py indexed by the real azure-functions-runtime worker, once per run
    (FunctionApp.get_functions() works once per app instance)."""
    from tests.functions_host import FunctionsHost

    host = FunctionsHost()
    host.index()
    yield host
    host.reset_app()  # the app's clients close on the loop they were made on
    host.loop.close()
