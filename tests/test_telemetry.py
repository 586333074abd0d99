"""Telemetry that arrives: spans, custom events and the expiry metric captured by in-memory OpenTelemetry
exporters, read as an on-call engineer would read Application Insights (names and flat dimensions only, never
free text), and scanned for secret values."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from shared.context import AppContext
from shared.errors import RemediatorError
from shared.redaction import install_filter, register_secret
from shared.rotation import RotationStatus, rotate_target
from shared.telemetry import DAYS_TO_EXPIRY_METRIC as DAYS_METRIC
from tests.leaks import assert_no_leak
from tests.local_https import serve_https
from tests.rotation_invariants import snapshot
from tests.rotation_support import apply_env, rotation_env
from tests.telemetry_capture import Captured, capture
from tests.twin import Fault, Twin
from tests.world import CC_HOST, CC_PASSWORD, CURRENT_SECRET, TARGET, World

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    yield from capture(monkeypatch)


async def _rotate(**kwargs: Any) -> Any:
    async with AppContext.from_environment() as ctx:
        return await rotate_target(ctx, TARGET, deadline_seconds=120, **kwargs)


def last_run(captured: Captured, target: str) -> dict[str, Any]:
    """'What happened to target X in the last run, at which stage, and why', from exported telemetry alone: the
    newest `rotate` span of the target and the events of its operation (the Kusto query in docs/operations.md)."""
    runs = sorted((s for s in captured.spans("rotate") if s.attributes.get("target") == target),
                  key=lambda s: s.end_time)
    assert runs, f"no rotate span for {target}"
    span = runs[-1]
    attributes = dict(span.attributes)
    events = [e for e in captured.events(target=target) if e.get("operationId") == attributes.get("operationId")]
    failed = next((e for e in events if e["name"] == "RotationFailed"), None)
    return {"outcome": attributes.get("outcome"), "stage": attributes.get("stage"),
            "operationId": attributes.get("operationId"), "code": attributes.get("code"),
            "why": failed.get("reason") if failed else None, "events": [e["name"] for e in events]}


async def test_a_failed_push_and_its_recovery_are_told_by_telemetry_alone(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, telemetry: Captured) -> None:
    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now+10d"), cc_ca, azurite))
    twin.faults.add(Fault(service="cyclecloud", operation="updateAccount", status=400, times=None,
                          body={"code": "InvalidCredentials", "message": "Invalid Azure credentials provided."}))
    failed = await _rotate()
    assert failed.status is RotationStatus.FAILED

    run = last_run(telemetry, TARGET)
    assert run["outcome"] == "failed" and run["stage"] == "push", run
    assert run["operationId"] == failed.operation_id and run["events"] == ["RotationFailed"], run
    assert run["code"] == failed.error["code"] and run["code"], run  # type: ignore[index]
    assert run["why"] and "CycleCloud" in run["why"], run
    [event] = telemetry.events("RotationFailed", TARGET)
    assert {"target", "operationId", "stage", "code", "reason", "status"} <= set(event)
    assert all(isinstance(v, (str, int, float, bool)) for v in event.values())  # flat dimensions

    twin.faults.clear()
    rotated = await _rotate()
    assert rotated.status is RotationStatus.ROTATED
    run = last_run(telemetry, TARGET)
    assert run["outcome"] == "rotated" and run["operationId"] == failed.operation_id, run
    assert "SecretRotated" in run["events"], run
    [done] = telemetry.events("SecretRotated", TARGET)
    assert done["newKeyId"] == rotated.new_key_id and done["stage"]
    days = telemetry.gauge("credential.days_to_expiry")[TARGET]
    assert 170 < days <= 180, days  # the new secret's lifetime (180 days by default)
    # each stage of the resumed operation is a child span of its `rotate` span
    stages = [sp for sp in telemetry.spans() if sp.name.startswith("rotation.")
              and sp.attributes.get("operationId") == rotated.operation_id]
    assert {"rotation.create", "rotation.test", "rotation.push", "rotation.commit"} <= {sp.name for sp in stages}
    parents = {sp.parent.span_id for sp in stages if sp.parent is not None}
    assert parents and parents <= {sp.context.span_id for sp in telemetry.spans("rotate")}

    assert_no_leak(telemetry.everything_text(), CURRENT_SECRET, CC_PASSWORD, *snapshot(twin).all_values(),
                   min_length=6)


async def test_the_health_sweep_emits_health_checked_finding_raised_and_the_metric(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, telemetry: Captured) -> None:
    from shared.diagnosis import check_all_targets

    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now-2d"), cc_ca, azurite))
    async with AppContext.from_environment() as ctx:
        sweep = await check_all_targets(ctx)
    [result] = sweep.results
    assert result.status == "failing"
    [checked] = telemetry.events("HealthChecked", TARGET)
    assert checked["status"] == "failing" and checked["findingCodes"] == ",".join(result.findings)
    raised = telemetry.events("FindingRaised", TARGET)
    assert {e["code"] for e in raised} == set(result.findings)
    assert all(e["severity"] in {"critical", "error", "warning", "info"} for e in raised), raised
    [span] = [s for s in telemetry.spans("validate") if s.attributes.get("target") == TARGET]
    assert span.attributes["outcome"] == "failing"
    assert telemetry.gauge("credential.days_to_expiry")[TARGET] < 0  # expired two days ago
    assert_no_leak(telemetry.everything_text(), CURRENT_SECRET, CC_PASSWORD, min_length=6)


def test_redaction_covers_late_handlers_exporters_chained_causes_and_extras(telemetry: Captured) -> None:
    secret = "Zq8Q~late-handler-secret-0123456789abcdef"
    register_secret(secret)
    install_filter()
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record) + repr(vars(record)))

    late = Collect()  # attached after start-up: no SecretFilter on it
    late.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("shared.test_redaction")
    log.addHandler(late)
    try:
        try:
            try:
                raise ValueError(f"inner failure with {secret}")
            except ValueError as inner:
                raise RuntimeError("outer failure, no secret here") from inner
        except RuntimeError:
            log.exception("call failed for %s", secret, extra={"detail": f"x {secret} y", "items": [secret]})
    finally:
        log.removeHandler(late)
    text = "\n".join(lines)
    assert "inner failure with ***" in text and "outer failure" in text  # the chained cause, masked
    assert_no_leak(text, secret)
    exported = telemetry.everything_text()
    assert "call failed for ***" in exported and "x *** y" in exported
    assert_no_leak(exported, secret)
    [record] = [r for r in telemetry.records() if r.body == "call failed for ***"]
    assert record.attributes["exception.type"] == "RuntimeError"  # the original type, its stack trace kept
    assert "inner failure with ***" in record.attributes["exception.stacktrace"]
    assert "test_redaction_covers_late_handlers" in record.attributes["exception.stacktrace"]


def test_importing_the_function_app_loads_no_telemetry_sdk_unless_configured() -> None:
    """Indexing pays nothing for telemetry that is off (no connection string, no worker route)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("APPLICATIONINSIGHTS_CONNECTION_STRING", "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY")}
    probe = ("import sys, function_app; "
             "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'azure.monitor'))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


class _Ingestion:
    """A local Application Insights ingestion endpoint (HTTPS, certificate from the twin's CA): keeps every
    envelope the Azure Monitor exporter posts to /v2.1/track."""

    def __init__(self, twin: Twin) -> None:
        import gzip
        from http.server import BaseHTTPRequestHandler

        self.envelopes: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                items = json.loads(raw)
                if "/track" in self.path:  # not Live Metrics (QuickPulse) posts
                    owner.envelopes += items if isinstance(items, list) else [items]
                reply = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply.encode())

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = serve_https(twin, Handler)

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# The children below: conftest's guard does not reach another process, so each starts with its own.
_LOOPBACK_ONLY = """
import ipaddress, socket, sys
real = socket.socket.connect
def guarded(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not ipaddress.ip_address(address[0]).is_loopback:
        print("GUARD", address, file=sys.stderr)
        raise OSError("tests may only reach 127.0.0.1")
    return real(self, address)
socket.socket.connect = guarded
"""


def _run_child(code: str, env: dict[str, str], *, timeout: int) -> None:
    """Run `code` in a fresh Python (after the loopback guard); it must succeed and reach nothing else."""
    child = subprocess.run([sys.executable, "-c", _LOOPBACK_ONLY + code], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=timeout)
    assert child.returncode == 0, child.stderr[-3000:]
    assert "GUARD" not in child.stderr, child.stderr[-3000:]


# run in a child process: configure_azure_monitor sets the global providers once per process, as in a worker
_CHILD = """
import logging
from shared import telemetry
from shared.redaction import register_secret
register_secret(SECRET)
assert telemetry.configure()
with telemetry.span("rotate", target="hpc-prod") as span:
    span.set(outcome="failed", stage="push", operationId="op-1", code="cyclecloud_rejected")
    telemetry.emit(telemetry.Event.ROTATION_FAILED, "hpc-prod", stage="push", code="cyclecloud_rejected",
                   operationId="op-1", reason="CycleCloud refused " + SECRET)
telemetry.days_to_expiry("hpc-prod", "2099-01-01T00:00:00Z")
logging.getLogger("shared.rotation").warning("secret %s in a log line", SECRET)
logging.getLogger("shared.rotation").info("an INFO record of the product")  # root stays at WARNING
telemetry.flush()
"""


def test_telemetry_arrives_at_application_insights_through_the_distro(twin: Twin) -> None:
    """The connection-string route end to end: configure_azure_monitor, the exporters, the ingestion API."""
    ingestion = _Ingestion(twin)
    secret = "Ch8Q~child-process-secret-0123456789abcd"
    try:
        env = {**os.environ, **twin.environment(),
               "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000001;"
                                                        f"IngestionEndpoint={ingestion.endpoint}",
               "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
               "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel"}
        for key in ("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"):
            env.pop(key, None)
        _run_child(f"SECRET = {secret!r}\n" + _CHILD, env, timeout=120)
    finally:
        ingestion.close()
    by_type: dict[str, list[dict[str, Any]]] = {}
    for envelope in ingestion.envelopes:
        by_type.setdefault(envelope["data"]["baseType"], []).append(envelope["data"]["baseData"])
    [event] = [e for e in by_type.get("EventData", []) if e["name"] == "RotationFailed"]
    assert event["properties"]["target"] == "hpc-prod" and event["properties"]["stage"] == "push"
    assert event["properties"]["code"] == "cyclecloud_rejected" and event["properties"]["reason"].endswith("***")
    spans = [s for s in by_type.get("RequestData", []) + by_type.get("RemoteDependencyData", [])
             if s["name"] == "rotate"]
    assert spans and spans[0]["properties"]["stage"] == "push", by_type.keys()
    metrics = [m for m in by_type.get("MetricData", []) for p in m["metrics"] if p["name"] == DAYS_METRIC]
    assert metrics and metrics[0]["properties"]["target"] == "hpc-prod"
    traces = [t["message"] for t in by_type.get("MessageData", [])]
    assert "secret *** in a log line" in traces and "an INFO record of the product" in traces
    assert_no_leak(json.dumps(ingestion.envelopes), secret)


async def test_a_rotation_refused_before_any_operation_is_a_rotation_failed_at_plan(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, telemetry: Captured) -> None:
    apply_env(monkeypatch, rotation_env(twin, World(secret_end="now+10d"), cc_ca, azurite))
    twin.faults.add(Fault(service="graph", operation="getApplication", status=403, times=None,
                          body={"error": {"code": "Authorization_RequestDenied",
                                          "message": "Insufficient privileges to complete the operation."}}))
    with pytest.raises(RemediatorError) as raised:
        await _rotate()
    [event] = telemetry.events("RotationFailed", TARGET)
    assert event["stage"] == "plan" and event["code"] == raised.value.code and event["status"] == "failed"
    [span] = telemetry.spans("rotate")
    assert span.attributes["outcome"] == "error" and span.attributes["code"] == raised.value.code
    assert span.status.description == raised.value.code  # the code, never the text


async def test_reconcile_reports_each_created_assignment(twin: Twin, cc_ca: str, monkeypatch: pytest.MonkeyPatch,
                                                         telemetry: Captured) -> None:
    from shared.roles import reconcile_target_roles
    from tests.world import SP_OBJECT_ID

    world = World()
    scenario = world.scenario()
    scenario["role_assignments"] = [ra for ra in scenario["role_assignments"] if ra["principal_id"] != SP_OBJECT_ID]
    twin.load(scenario)
    apply_env(monkeypatch, world.env(ca_bundle=cc_ca))
    async with AppContext.from_environment() as ctx:
        plan = await reconcile_target_roles(ctx, TARGET, dry_run=True)
        assert not telemetry.events("RoleAssignmentCreated")  # a plan creates nothing
        applied = await reconcile_target_roles(ctx, TARGET, dry_run=False)
    [created] = applied.assignments
    [event] = telemetry.events("RoleAssignmentCreated", TARGET)
    assert event["roleId"] == created.role_id and event["principalId"] == SP_OBJECT_ID
    assert event["scope"] == created.scope and event["verified"] is True
    assert [s.attributes["dryRun"] for s in telemetry.spans("reconcile")] == [True, False]
    assert plan.changes_needed


def test_http_functions_are_spans_with_route_target_and_status(functions_host: Any, product_env: dict[str, str],
                                                              twin: Twin, telemetry: Captured) -> None:
    functions_host.reset_app()
    reply = functions_host.http("validate", "POST", f"http://localhost/api/targets/{TARGET}/validate",
                                route_params={"target": TARGET})
    assert reply.status == 200
    reply_status = reply.json()["status"]
    reply = functions_host.http("validate", "POST", "http://localhost/api/targets/nope/validate",
                                route_params={"target": "nope"})
    assert reply.status == 404
    spans = telemetry.spans("POST /api/targets/{target}/validate")
    assert [(s.attributes["target"], s.attributes["outcome"], s.attributes["httpStatus"]) for s in spans] == \
        [(TARGET, "ok", 200), ("nope", "error", 404)]
    validations = telemetry.spans("validate")  # the operation's span, under the HTTP one
    assert [(s.attributes["target"], s.attributes["outcome"]) for s in validations] == \
        [(TARGET, reply_status), ("nope", "error")]
    assert validations[0].parent.span_id == spans[0].context.span_id
    assert validations[1].attributes["code"] == "target_not_found"
    functions_host.reset_app()


async def test_remediation_reports_each_applied_action(twin: Twin, cc_ca: str, azurite: str,
                                                       monkeypatch: pytest.MonkeyPatch, telemetry: Captured) -> None:
    from shared.remediation import remediate_target
    from tests.world import SECRET_NAME

    padded = CURRENT_SECRET + "\r\n"

    def pasted_with_a_line_break(scenario: dict[str, Any]) -> None:
        scenario["vaults"][0]["secrets"][SECRET_NAME][0]["value"] = padded
        for server in scenario["cyclecloud_servers"]:
            for account in server["accounts"]:
                account["AzureRMApplicationSecret"] = padded

    apply_env(monkeypatch, rotation_env(twin, World(), cc_ca, azurite, edit=pasted_with_a_line_break))
    async with AppContext.from_environment() as ctx:
        planned = await remediate_target(ctx, TARGET, dry_run=True, deadline_seconds=200)
        assert not telemetry.events("RemediationApplied")  # a dry run applies nothing
        report = await remediate_target(ctx, TARGET, dry_run=False, deadline_seconds=200)
    [event] = telemetry.events("RemediationApplied", TARGET)
    assert event["action"] == "store_trimmed_secret" and event["outcome"] == "applied"
    assert "secret.whitespace" in event["findingCodes"] and event["result"] == report.result.value
    assert [s.attributes["outcome"] for s in telemetry.spans("remediate")] == [planned.result.value,
                                                                               report.result.value]
    assert_no_leak(telemetry.everything_text(), CURRENT_SECRET, padded, CC_PASSWORD, min_length=6)


async def test_a_poisoned_continuation_is_a_continuation_poisoned_event(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, telemetry: Captured) -> None:
    """infra/app/alerts.bicep alerts on this event."""
    from shared.operations.model import ContinuationMessage, OperationKind, OperationRecord, OperationState
    from shared.operations.runner import record_poisoned
    from shared.operations.store import OperationStore

    apply_env(monkeypatch, rotation_env(twin, World(), cc_ca, azurite))
    async with AppContext.from_environment() as ctx:
        now = "2026-12-01T00:00:00Z"
        record = OperationRecord(id="b" * 32, kind=OperationKind.ROTATE, target=TARGET, state=OperationState.RUNNING,
                                 created_at=now, updated_at=now, requested_by="tester", attempt=1)
        await OperationStore(ctx.clients.blob_service(), ctx.settings.storage.container).create(record)
        text = ContinuationMessage(record.id, OperationKind.ROTATE, TARGET, 1).to_json()
        await record_poisoned(ctx, text, message_id="p1")
        await record_poisoned(ctx, text, message_id="p1")  # recorded once
    [event] = telemetry.events("ContinuationPoisoned", TARGET)
    assert event["operationId"] == record.id and event["kind"] == "rotate"
    assert event["code"] == "continuation_poisoned"


_WORKER_CHILD = """
from tests.functions_host import FunctionsHost
host = FunctionsHost()
host.index()  # worker_init: the runtime itself calls configure_azure_monitor
reply = host.http("validate", "POST", "http://localhost/api/targets/hpc-prod/validate",
                  route_params={"target": "hpc-prod"})
assert reply.status == 200, reply.body
from shared import telemetry
telemetry.flush()
"""


def test_the_deployed_route_the_worker_configures_the_distro_and_outbound_calls_are_dependencies(
        twin: Twin, world: World, cc_ca: str) -> None:
    """What infra/main.bicep deploys: PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true, the Python worker calls
    configure_azure_monitor before loading function_app; the product's spans arrive with the outbound calls
    (Entra ID, Key Vault, ARM, CycleCloud) as dependencies under them."""
    twin.load(world.scenario())
    ingestion = _Ingestion(twin)
    try:
        env = {**os.environ, **twin.environment(), **world.env(ca_bundle=cc_ca),
               "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
               "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000002;"
                                                        f"IngestionEndpoint={ingestion.endpoint};"
                                                        f"LiveEndpoint={ingestion.endpoint}",
               "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
               "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
               "OTEL_TRACES_SAMPLER": "microsoft.fixed_percentage", "OTEL_TRACES_SAMPLER_ARG": "1.0"}
        for key in ("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "TARGETS_FILE"):
            env.pop(key, None)
        _run_child(_WORKER_CHILD, env, timeout=180)
    finally:
        ingestion.close()
    spans: dict[str, list[dict[str, Any]]] = {}
    for envelope in ingestion.envelopes:
        data = envelope["data"]
        if data["baseType"] in ("RequestData", "RemoteDependencyData"):
            spans.setdefault(data["baseData"]["name"], []).append(envelope)
    assert "POST /api/targets/{target}/validate" in spans and "validate" in spans, sorted(spans)
    [validate] = spans["validate"]
    assert validate["data"]["baseData"]["properties"]["target"] == "hpc-prod"
    operation = validate["tags"]["ai.operation.id"]
    outbound = [e["data"]["baseData"] for e in ingestion.envelopes
                if e["data"]["baseType"] == "RemoteDependencyData" and e["tags"].get("ai.operation.id") == operation
                and e["data"]["baseData"].get("target")]
    hosts = {d["target"].split(":")[0] for d in outbound}
    # Entra ID and Key Vault (Azure SDK), Microsoft Graph (httpx), ARM, CycleCloud (requests)
    assert {"login.microsoftonline.com", "graph.microsoft.com", "management.azure.com", CC_HOST,
            "kv-remediator.vault.azure.net"} <= hosts, hosts
    assert_no_leak(json.dumps(ingestion.envelopes), CURRENT_SECRET, CC_PASSWORD, min_length=6)
