"""In-memory OpenTelemetry for tests: the real SDK providers with in-memory exporters, installed once per test
process as the global providers (as the Functions worker's `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY` route
does with the Azure Monitor exporters), and the product's telemetry switched on through that same setting."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class _Providers:
    spans: Any
    logs: Any
    metrics: Any
    logger_provider: Any


_providers: _Providers | None = None


def _install() -> _Providers:
    global _providers
    if _providers is not None:
        return _providers
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shared.redaction import redacting_log_record_processor

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    # the same order as production (shared/telemetry.py): redaction first, then the exporter's processor
    logger_provider.add_log_record_processor(redacting_log_record_processor())
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    _logs.set_logger_provider(logger_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    _providers = _Providers(spans, logs, reader, logger_provider)
    return _providers


class Captured:
    """What the exporters received: spans, log records (events are the ones with a custom event name), metrics."""

    def __init__(self, providers: _Providers) -> None:
        self._p = providers

    def clear(self) -> None:
        self._p.spans.clear()
        self._p.logs.clear()
        self._p.metrics.get_metrics_data()  # drain

    def spans(self, name: str | None = None) -> list[Any]:
        return [s for s in self._p.spans.get_finished_spans() if name is None or s.name == name]

    def records(self) -> list[Any]:
        return [getattr(r, "log_record", r) for r in self._p.logs.get_finished_logs()]

    def events(self, name: str | None = None, target: str | None = None) -> list[dict[str, Any]]:
        """Each custom event as its flat dimensions plus `name` (what a customEvents row holds)."""
        from shared.telemetry import CUSTOM_EVENT_ATTRIBUTE

        out = []
        for record in self.records():
            attributes = dict(record.attributes or {})
            event = attributes.pop(CUSTOM_EVENT_ATTRIBUTE, None)
            if event is None or (name and event != name) or (target and attributes.get("target") != target):
                continue
            out.append({"name": event, **{k: v for k, v in attributes.items() if not k.startswith("code.")}})
        return out

    def gauge(self, metric: str) -> dict[str, float]:
        """The last value of a gauge per target."""
        data = self._p.metrics.get_metrics_data()
        values: dict[str, float] = {}
        for resource in (data.resource_metrics if data else []):
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name == metric:
                        for point in item.data.data_points:
                            values[str(point.attributes.get("target"))] = point.value
        return values

    def everything_text(self) -> str:
        """Every exported span, event and log record as text: what the leak scan reads."""
        parts = []
        for s in self.spans():
            parts.append(json.dumps({"name": s.name, "attributes": dict(s.attributes or {}),
                                     "status": s.status.description,
                                     "events": [dict(e.attributes or {}) for e in s.events]}, default=str))
        for r in self.records():
            parts.append(json.dumps({"body": r.body, "attributes": dict(r.attributes or {})}, default=str))
        return "\n".join(parts)


def capture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    """For a fixture (`yield from capture(monkeypatch)`): the product's telemetry on, exported to memory, and
    the OpenTelemetry log handler on the `shared` logger."""
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    from shared import telemetry as product_telemetry

    providers = _install()
    monkeypatch.setenv("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "true")
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    product_telemetry._reset_for_tests()
    assert product_telemetry.configure()
    handler = LoggingHandler(logger_provider=providers.logger_provider)
    shared_logger = logging.getLogger("shared")
    shared_logger.addHandler(handler)  # attached after start-up, like a late exporter
    level = shared_logger.level
    shared_logger.setLevel(logging.INFO)
    captured = Captured(providers)
    captured.clear()
    try:
        yield captured
    finally:
        shared_logger.removeHandler(handler)
        shared_logger.setLevel(level)
        product_telemetry._reset_for_tests()
