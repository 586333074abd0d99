"""The twin's control API (plain HTTP on 127.0.0.1): load scenarios, inspect state, move the clock,
set faults, release held requests. Used by `python -m tests.twin`, the demo and subprocess tests."""

from __future__ import annotations

import dataclasses
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


class BadControlRequest(Exception):
    """A control request the twin cannot act on: answered 400 with this message (never a dropped connection)."""


# what a caller may set on a fault (the rest is the twin's bookkeeping)
FAULT_FIELDS = {f.name for f in dataclasses.fields(Fault)} - {"id", "hits", "seen"}


def fault_from(body: Any) -> Fault:
    if not isinstance(body, dict):
        raise BadControlRequest("a fault is a JSON object")
    unknown = sorted(set(body) - FAULT_FIELDS)
    if unknown:
        raise BadControlRequest(f"unknown fault field(s) {unknown}; known: {sorted(FAULT_FIELDS)}")
    if body.get("status") is not None and not (isinstance(body["status"], int) and 100 <= body["status"] <= 599):
        raise BadControlRequest("fault 'status' must be an HTTP status code (100-599)")
    return Fault(**body)


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
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw) if raw else {}
            except ValueError as exc:
                raise BadControlRequest(f"the body is not JSON ({exc})") from None

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
            try:
                self._post()
            except BadControlRequest as exc:
                self._reply(400, {"error": str(exc)})
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                # a scenario the loader cannot read: say what, instead of dropping the connection
                self._reply(400, {"error": f"bad request for {self.path}: {exc!r}"})

        def _post(self) -> None:
            body = self._body()
            if self.path == "/reset":
                twin.reset()
                self._reply(200, {"status": "reset"})
            elif self.path == "/scenario":
                if not isinstance(body, dict):
                    raise BadControlRequest("a scenario is a JSON object")
                twin.load(body)
                self._reply(200, {"status": "loaded"})
            elif self.path == "/clock/advance":
                seconds = body.get("seconds", 0) if isinstance(body, dict) else None
                if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
                    raise BadControlRequest("clock/advance takes {\"seconds\": <number>}")
                self._reply(200, {"now": iso(twin.clock.advance(float(seconds)))})
            elif self.path == "/faults":
                fault = twin.faults.add(fault_from(body))
                self._reply(200, {"id": fault.id})
            elif self.path == "/held/release":
                if not isinstance(body, dict):
                    raise BadControlRequest("held/release takes {\"seq\": n} or {}")
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
