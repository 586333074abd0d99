"""The twin's control API (plain HTTP on 127.0.0.1): load scenarios, inspect state, move the clock,
set faults, release held requests. Used by `python -m tests.twin`, the demo and subprocess tests."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from .faults import Fault
from .state import iso

if TYPE_CHECKING:
    from .server import Twin


def snapshot(twin: Twin) -> dict[str, Any]:
    """A secret-free view of the state (credential hashes and vault values are left out)."""
    s = twin.state
    with s.lock:
        return {
            "now": iso(s.now()),
            "applications": [{
                "object_id": a.object_id, "app_id": a.app_id, "tenant_id": a.tenant_id,
                "password_credentials": [{
                    "key_id": c.key_id, "hint": c.hint, "display_name": c.display_name,
                    "start": iso(c.start), "end": iso(c.end),
                } for c in a.password_credentials],
            } for a in s.applications.values()],
            "role_assignments": [{
                "name": r.name, "scope": r.scope, "role_definition_id": r.role_definition_id,
                "principal_id": r.principal_id, "principal_type": r.principal_type, "description": r.description,
            } for r in s.role_assignments.values()],
            "vaults": [{
                "name": v.name,
                "secrets": {name: [{"version": x.version, "tags": x.tags, "enabled": x.enabled,
                                    "expires": iso(x.expires)} for x in sec.versions]
                            for name, sec in v.secrets.items()},
            } for v in s.vaults.values()],
            "cyclecloud_servers": [{
                "host": c.host,
                "accounts": {n: {k: v for k, v in a.items() if k != "AzureRMApplicationSecret"}
                             for n, a in c.accounts.items()},
            } for c in s.cyclecloud_servers.values()],
            "requests": len(twin.request_log),
            "unrouted": list(twin.unrouted),
        }


def make_control_handler(twin: Twin) -> type:
    class ControlHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length)) if length else {}

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, {"status": "ok"})
            elif self.path == "/state":
                self._reply(200, snapshot(twin))
            elif self.path == "/faults":
                self._reply(200, twin.faults.rules())
            elif self.path == "/held":
                self._reply(200, [h.__dict__ | {"released": h.released.is_set()} for h in twin.faults.held.values()])
            elif self.path == "/requests":
                self._reply(200, [r.__dict__ for r in twin.request_log])
            elif self.path == "/environment":
                self._reply(200, twin.environment())
            else:
                self._reply(404, {"error": "unknown control path"})

        def do_POST(self) -> None:
            body = self._body()
            if self.path == "/reset":
                twin.reset()
                self._reply(200, {"status": "reset"})
            elif self.path == "/scenario":
                twin.load(body)
                self._reply(200, {"status": "loaded"})
            elif self.path == "/clock/advance":
                self._reply(200, {"now": iso(twin.clock.advance(float(body.get("seconds", 0))))})
            elif self.path == "/faults":
                fault = twin.faults.add(Fault(**body))
                self._reply(200, {"id": fault.id})
            elif self.path == "/held/release":
                self._reply(200, {"released": twin.faults.release(body.get("seq"))})
            else:
                self._reply(404, {"error": "unknown control path"})

        def do_DELETE(self) -> None:
            if self.path == "/faults":
                twin.faults.clear()
                self._reply(200, {"status": "cleared"})
            else:
                self._reply(404, {"error": "unknown control path"})

    return ControlHandler
