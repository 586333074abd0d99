"""A stand-in for the Functions host: drives the real `azure-functions-runtime` worker handlers (the code Azure
runs) against our function_app.py. The host normally hands the worker its protobuf module; these small
message classes stand in for it, so indexing and invocation go through the worker's own code paths."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ROOT = Path(__file__).resolve().parent.parent

_ONEOFS = {
    "data": ["http", "string", "bytes", "json", "int", "double", "collection_bytes", "collection_string",
             "collection_double", "collection_sint64", "model_binding_data", "collection_model_binding_data"],
    "rpc_data": ["data", "rpc_shared_memory"],
}


class Msg:
    """A protobuf message stand-in: keyword fields, `WhichOneof`."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __getattr__(self, name: str) -> Any:  # unset fields read as empty, as in protobuf
        if name.startswith("__") or name[:1].isupper():  # protobuf fields are snake_case
            raise AttributeError(name)
        return None

    def WhichOneof(self, group: str) -> str | None:
        for name in _ONEOFS.get(group, []):
            if self.__dict__.get(name) is not None:
                return name
        return None


class _Protos:
    """Every attribute is a message class; a few carry the enum constants the worker reads."""

    def __getattr__(self, name: str) -> type[Msg]:
        cls: type[Msg] = type(name, (Msg,), {})
        if name == "StatusResult":
            cls.Success, cls.Failure, cls.Cancelled = 1, 0, 2  # type: ignore[attr-defined]
        if name == "BindingInfo":  # direction enum values, as in the host's protobuf
            cls.inout, cls.out = 2, 1  # type: ignore[attr-defined]
            setattr(cls, "in", 0)
        if name == "RpcHttpCookie":
            cls.SameSite = SimpleNamespace(Lax=1, Strict=2, ExplicitNone=3, **{"None": 0})  # type: ignore[attr-defined]
        setattr(self, name, cls)
        return cls


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class InvocationFailed(RuntimeError):
    """The function raised: for a queue trigger, the host would deliver the message again."""


class FunctionsHost:
    """Index once per test run (FunctionApp.get_functions() works once per app instance)."""

    def __init__(self) -> None:
        from azure_functions_runtime import handle_event

        self.handle_event = handle_event
        self.protos = _Protos()
        self.metadata: dict[str, Any] = {}
        # one event loop for every invocation, as in the worker process: clients the app caches between
        # invocations stay bound to a live loop
        self.loop = asyncio.new_event_loop()

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def reset_app(self) -> None:
        """Forget function_app's cached settings and clients (closing them on the loop they were made on), so the
        next invocation reads this test's environment."""
        import function_app

        context, function_app._context = function_app._context, None
        if context is not None:
            self._run(context.clients.close())

    def _envelope(self, **request: Any) -> Msg:
        return Msg(request=Msg(**request), properties={"protos": self.protos, "host": "127.0.0.1"})

    def index(self) -> dict[str, Any]:
        init = Msg(capabilities={}, function_app_directory=str(ROOT))
        response = self._run(self.handle_event.worker_init_request(self._envelope(worker_init_request=init)))
        if response.result.status != 1:
            exc = response.result.exception
            raise RuntimeError(f"worker failed to index function_app.py: {exc.message}\n{exc.stack_trace}")
        meta = self._run(self.handle_event.functions_metadata_request(self._envelope()))
        self.metadata = {m.name: m for m in meta.function_metadata_results}
        return self.metadata

    def raw_bindings(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(b) for b in self.metadata[name].raw_bindings]

    def _invoke(self, name: str, input_name: str, data: Msg, trigger_metadata: dict[str, Any] | None = None) -> Any:
        invocation = Msg(
            invocation_id="00000000-0000-0000-0000-000000000001",
            function_id=self.metadata[name].function_id,
            input_data=[Msg(name=input_name, data=data)],
            trigger_metadata=trigger_metadata or {},
            trace_context=Msg(trace_parent="", trace_state="", attributes={}),
            retry_context=Msg(retry_count=0, max_retry_count=0, exception=None),
        )
        response = self._run(self.handle_event.invocation_request(self._envelope(invocation_request=invocation)))
        if response.result.status != 1:
            exc = response.result.exception
            raise InvocationFailed(f"invocation of {name} failed: {exc.message}\n{exc.stack_trace}")
        return response

    def http(self, name: str, method: str, url: str, *, body: bytes = b"", route_params: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> HttpReply:
        P = self.protos
        # as the host does: the full URL, and the query string parsed into a map (last value wins)
        query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        http = P.RpcHttp(method=method, url=url, headers=headers or {"content-type": "application/json"},
                         body=P.TypedData(bytes=body), params=route_params or {}, query=query)
        response = self._invoke(name, "req", P.TypedData(http=http))
        out = response.return_value.http
        body_data = out.body
        raw = body_data.bytes if body_data.bytes is not None else (body_data.string or "").encode()
        return HttpReply(int(out.status_code), dict(out.headers or {}), raw)

    def queue(self, name: str, body: str, *, message_id: str, dequeue_count: int) -> None:
        """Deliver one queue message as the host does (string payload, Id and DequeueCount trigger metadata).
        Raises InvocationFailed when the function raised (the host would then deliver it again)."""
        P = self.protos
        metadata = {"Id": P.TypedData(string=message_id), "DequeueCount": P.TypedData(json=str(dequeue_count)),
                    "PopReceipt": P.TypedData(string="receipt")}
        self._invoke(name, "msg", P.TypedData(string=body), trigger_metadata=metadata)

    def timer(self, name: str, *, past_due: bool = False) -> None:
        payload = json.dumps({"Schedule": {"AdjustForDST": True},
                              "ScheduleStatus": {"Last": "2026-11-21T03:00:00Z", "Next": "2026-11-22T03:00:00Z"},
                              "IsPastDue": past_due})
        self._invoke(name, "timer", self.protos.TypedData(json=payload))
