"""The Azure twin: an HTTPS CONNECT proxy that terminates TLS for Azure's real host names, routes by host
to the twin's services, and two plain-HTTP endpoints on 127.0.0.1 (the App Service managed identity
endpoint, exactly as in Azure, and the control API the tests use).

The SDKs reach it unmodified through `HTTPS_PROXY` and a trusted test CA (`REQUESTS_CA_BUNDLE`,
`SSL_CERT_FILE`); production code keeps Azure's host names. CycleCloud servers get certificates from
their own CA (one per server), distinct from the twin's CA, as self-signed CycleCloud installs do.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import socket
import socketserver
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

from .clock import Clock
from .faults import Faults
from .http import HttpError, Request, Response, Router, json_response
from .state import State
from .throttling import Throttle
from .tokens import Tokens

logger = logging.getLogger(__name__)

LOGIN_HOSTS = {"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn"}
GRAPH_HOSTS = {"graph.microsoft.com", "graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"}
ARM_HOSTS = {"management.azure.com", "management.usgovcloudapi.net", "management.chinacloudapi.cn"}
VAULT_SUFFIXES = (".vault.azure.net", ".vault.usgovcloudapi.net", ".vault.azure.cn")


@dataclass
class LoggedRequest:
    seq: int
    service: str
    operation: str
    method: str
    host: str
    path: str
    status: int
    caller: str | None  # principal object id of the bearer token, when there is one


class Service:
    """Base of a twin service: a name, the hosts it answers, and its routes."""

    name = "service"

    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self.state = twin.state
        self.router = Router()
        self.register(self.router)

    def register(self, router: Router) -> None:
        raise NotImplementedError

    def serves(self, host: str) -> bool:
        raise NotImplementedError

    def check(self, request: Request) -> None:
        """Checks the real service makes before the operation runs (e.g. ARM's api-version routing); raise
        HttpError to answer instead of the handler."""

    def not_found(self, request: Request) -> Response:
        return json_response(404, {"error": {"code": "NotFound", "message": f"No route for {request.method} "
                                                                            f"{request.path} on {request.host}."}})


class Twin:
    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="azure-twin-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.clock = Clock()
        self.state = State(self.clock)
        self.tokens = Tokens()
        self.faults = Faults()
        self.throttle = Throttle()  # the services' documented limits (tests/twin/throttling.py)
        self.identity_header = secrets.token_hex(16)
        self.ca = trustme.CA(organization_name="Azure twin test CA")
        self.ca_path = self.workdir / "twin-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self._host_contexts: dict[str, ssl.SSLContext] = {}
        self.cyclecloud_cas: dict[str, trustme.CA] = {}
        self._seq = itertools.count(1)
        self._seq_lock = threading.Lock()
        self.request_log: list[LoggedRequest] = []
        self.tunnels: list[str] = []  # the host of every TLS connection a client opened through the proxy
        self.unrouted: list[str] = []  # hosts the product tried to reach that the twin does not model
        self.unreachable_hosts: set[str] = set()  # hosts that should look down (not a guard violation)
        self.services: list[Service] = []
        # (vm, script_lines, parameters, protected) -> (exit_code, stdout, stderr); the CycleCloud twin sets it
        self.run_command_executor: Any = None
        self._servers: list[socketserver.BaseServer] = []
        self.proxy_port = 0
        self.msi_port = 0
        self.control_port = 0
        self._install_services()
        self._default_run_command_executor = self.run_command_executor

    # -- services -------------------------------------------------------------------------------------------

    def _install_services(self) -> None:
        from .services import all_services

        self.services = [cls(self) for cls in all_services()]
        self.msi_service = next(s for s in self.services if s.name == "msi")

    def service_for(self, host: str) -> Service | None:
        for service in self.services:
            if service.serves(host):
                return service
        return None

    # -- certificates ---------------------------------------------------------------------------------------

    def cyclecloud_ca(self, host: str) -> trustme.CA:
        """Each CycleCloud server has its own CA (a self-signed install), never the twin's CA."""
        host = host.lower()
        if host not in self.cyclecloud_cas:
            self.cyclecloud_cas[host] = trustme.CA(organization_name=f"CycleCloud {host}")
        return self.cyclecloud_cas[host]

    def cyclecloud_ca_path(self, host: str) -> Path:
        path = self.workdir / f"cyclecloud-{host.lower()}-ca.pem"
        if not path.exists():
            self.cyclecloud_ca(host).cert_pem.write_to_path(str(path))
        return path

    def context_for(self, host: str) -> ssl.SSLContext:
        host = host.lower()
        ctx = self._host_contexts.get(host)
        if ctx is None:
            ca = self.cyclecloud_ca(host) if host in self.state.cyclecloud_servers else self.ca
            cert = ca.issue_cert(host)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.set_alpn_protocols(["http/1.1"])
            cert.configure_cert(ctx)
            self._host_contexts[host] = ctx
        return ctx

    def forget_certificates(self) -> None:
        self._host_contexts.clear()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Twin:
        twin = self

        class ProxyServer(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        class ProxyHandler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                twin._handle_proxy_connection(self)

        proxy = ProxyServer(("127.0.0.1", 0), ProxyHandler)
        self.proxy_port = proxy.server_address[1]

        class PlainServer(ThreadingHTTPServer):
            daemon_threads = True

        msi = PlainServer(("127.0.0.1", 0), _make_handler(self, forced_service="msi"))
        self.msi_port = msi.server_address[1]
        from .control import make_control_handler

        control = PlainServer(("127.0.0.1", 0), make_control_handler(self))
        self.control_port = control.server_address[1]
        for server in (proxy, msi, control):
            self._servers.append(server)
            threading.Thread(target=server.serve_forever, name=f"twin-{type(server).__name__}", daemon=True).start()
        return self

    def stop(self) -> None:
        self.faults.clear()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def reset(self) -> None:
        """Back to an empty twin (between tests)."""
        self.faults.clear()
        self.throttle.configure(True)
        self.clock.reset()
        self.run_command_executor = self._default_run_command_executor  # tests may swap it; never leak it
        self.state = State(self.clock)
        for service in self.services:
            service.state = self.state
        self.tokens.clear()
        self.request_log.clear()
        self.tunnels.clear()
        self.unrouted.clear()
        self.unreachable_hosts.clear()
        with self._seq_lock:
            self._seq = itertools.count(1)

    def load(self, scenario: dict[str, Any] | str | Path) -> None:
        from .scenario import load_scenario

        load_scenario(self, scenario)

    def environment(self) -> dict[str, str]:
        """What a process needs to reach the twin instead of Azure."""
        return {
            "HTTPS_PROXY": f"http://127.0.0.1:{self.proxy_port}",
            "https_proxy": f"http://127.0.0.1:{self.proxy_port}",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "REQUESTS_CA_BUNDLE": str(self.ca_path),
            "SSL_CERT_FILE": str(self.ca_path),
            "CURL_CA_BUNDLE": str(self.ca_path),
            "IDENTITY_ENDPOINT": f"http://127.0.0.1:{self.msi_port}/msi/token",
            "IDENTITY_HEADER": self.identity_header,
            "TWIN_CONTROL_URL": f"http://127.0.0.1:{self.control_port}",
        }

    # -- request handling -----------------------------------------------------------------------------------

    def next_seq(self) -> int:
        with self._seq_lock:
            return next(self._seq)

    def dispatch(self, request: Request, service: Service) -> Response:
        request.service = service.name
        matched = service.router.match(request)
        if matched is not None:
            route, params = matched
            request.operation, request.params = route.operation, params
        else:
            request.operation = "unknown"
        request.seq = self.next_seq()
        response: Response | None = None
        fault = self.faults.pick(request)
        if fault is not None and fault.after and matched is not None:
            # the request takes effect, then the caller sees the fault (a POST that succeeded but answered 5xx)
            with contextlib.suppress(HttpError):
                service.check(request)
                matched[0].handler(request)
        if fault is not None:
            response = self.faults.apply(fault, request)
        info = self.tokens.lookup(request.bearer)
        if response is None and matched is not None:
            response = self.throttle.check(request, info.object_id if info else None)
        if response is None:
            if matched is None:
                response = service.not_found(request)
            else:
                try:
                    service.check(request)
                    response = matched[0].handler(request)
                except HttpError as exc:
                    response = exc.response
                except Exception:
                    logger.exception("twin %s.%s crashed", service.name, request.operation)
                    response = json_response(500, {"error": {"code": "InternalServerError",
                                                             "message": "The twin failed to handle the request."}})
        self.request_log.append(LoggedRequest(request.seq, service.name, request.operation, request.method,
                                              request.host, request.path, response.status,
                                              info.object_id if info else None))
        return response

    def _handle_proxy_connection(self, handler: socketserver.StreamRequestHandler) -> None:
        line = handler.rfile.readline(65537).decode("latin-1").strip()
        while True:  # drain the proxy request's headers
            header = handler.rfile.readline(65537)
            if header in (b"\r\n", b"\n", b""):
                break
        parts = line.split()
        if len(parts) < 2 or parts[0].upper() != "CONNECT":
            handler.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port_text = parts[1].rpartition(":")
        host = host.strip("[]").lower()
        port = int(port_text or 443)
        service = self.service_for(host)
        if service is None or host in self.unreachable_hosts:
            if host not in self.unreachable_hosts:
                self.unrouted.append(host)
                logger.warning("twin: no service for host %s (outbound connection refused)", host)
            handler.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        handler.wfile.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        handler.wfile.flush()
        self.tunnels.append(host)
        try:
            tls = self.context_for(host).wrap_socket(handler.connection, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            # the client refused our certificate (e.g. an untrusted CycleCloud CA): that is its right
            logger.debug("twin: TLS handshake for %s failed: %s", host, exc)
            return
        handler_cls = _make_handler(self, forced_service=None, host=host, port=port)
        try:
            handler_cls(tls, handler.client_address, _FakeServer())
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                tls.close()


class _FakeServer:
    """BaseHTTPRequestHandler only needs a `server` attribute it does not use."""


def _make_handler(twin: Twin, *, forced_service: str | None, host: str = "", port: int = 0) -> type:
    class TwinHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "AzureTwin/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("twin %s: %s", host or forced_service, format % args)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            req_host = host or (headers.get("host", "127.0.0.1").split(":")[0])
            request = Request.build(self.command, req_host, port or self.connection.getsockname()[1],
                                    self.path, headers, body)
            service = twin.msi_service if forced_service == "msi" else twin.service_for(req_host)
            if service is None:
                response = json_response(404, {"error": {"code": "NoSuchHost", "message": req_host}})
            else:
                response = twin.dispatch(request, service)
            if response.drop:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("x-ms-request-id", f"twin-{request.seq}")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    return TwinHandler


def wait_port(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")
