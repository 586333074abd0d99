"""The OpenAPI document: valid (openapi-spec-validator), covering every HTTP route function_app.py registers
with every option of the route table (body and query), the 202 headers, the error shape, and real schemas
(no bare `{"type": "object"}` response). Replies are validated against it in the tests that receive them
(tests/schema_check.validate_response)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from shared import http_routes
from shared.openapi import openapi_document
from tests.schema_check import response_schema, validate_json
from tests.test_function_app import EXPECTED_ROUTES


def _path(route: str) -> str:
    return "/" + route.replace("{operation_id}", "{operationId}")


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = openapi_document()
    validate(doc)  # raises with the first problem
    assert doc["openapi"] == "3.1.0"
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_route_is_described_with_its_method() -> None:
    doc = openapi_document()
    for route, methods in EXPECTED_ROUTES.values():
        path = _path(route)
        assert path in doc["paths"], path
        assert {m.lower() for m in methods} == set(doc["paths"][path])
    assert len(doc["paths"]) == len(EXPECTED_ROUTES) == len(http_routes.ROUTES)


def test_every_option_is_a_body_field_and_a_query_parameter_with_its_default() -> None:
    doc = openapi_document()
    for route in http_routes.ROUTES:
        method, path = route.name.split(" ", 1)
        op = doc["paths"][path.removeprefix("/api")][method.lower()]
        query = {p["name"]: p for p in op.get("parameters", []) if p.get("in") == "query"}
        assert set(query) == set(route.options), route.name
        for name, default in route.options.items():
            assert query[name]["schema"] == {"type": "boolean", "default": default}
        if route.body:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert schema["additionalProperties"] is False
            assert {k: v["default"] for k, v in schema["properties"].items()} == dict(route.options)
            assert not {"principal", "principal_id", "role", "scope"} & set(schema["properties"])
        else:
            assert "requestBody" not in op, route.name


def test_every_response_has_a_real_schema_and_errors_have_the_error_shape() -> None:
    doc = openapi_document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            statuses = set(op["responses"])
            assert {"200", "400", "413", "500"} <= statuses, (path, statuses)
            for status in statuses:
                schema, headers = response_schema(path, method, int(status))
                bare = {k: v for k, v in schema.items() if k != "components"}
                assert bare != {"type": "object"}, (path, status)
                if int(status) >= 400:
                    assert bare == {"$ref": "#/components/schemas/Error"} and "x-ms-error-code" in headers
    errors = doc["components"]["schemas"]["ErrorObject"]
    assert errors["required"] == ["code", "message", "target", "details"]


def test_202_answers_document_location_retry_after_and_the_operation() -> None:
    doc = openapi_document()
    for path in ("/targets/{target}/rotate", "/targets/{target}/remediate"):
        schema, headers = response_schema(path, "post", 202)
        assert set(headers) == {"Location", "Retry-After"}
        body: dict[str, Any] = {"target": "t", "status": "in_progress", "message": "m"}
        if path.endswith("rotate"):
            problems = _problems(body, schema)
            assert any("operation" in p for p in problems), problems
    assert "/operations/{operationId}" in doc["paths"]
    assert doc["components"]["headers"]["Retry-After"]["schema"]["type"] == "integer"


def _problems(value: Any, schema: dict[str, Any]) -> list[str]:
    from tests.schema_check import errors

    return errors(value, schema)


def test_the_error_schema_checks_formats_and_shapes() -> None:
    schema, _ = response_schema("/targets/{target}/rotate", "post", 400)
    validate_json({"error": {"code": "bad_request", "message": "m", "target": None, "details": {}}}, schema)
    assert _problems({"error": {"code": "Bad Code", "message": "m", "target": None, "details": {}}}, schema)
    assert _problems({"error": {"code": "x", "message": "m"}}, schema)
    op_schema, _ = response_schema("/operations/{operationId}", "get", 200)
    bad_time = {"id": "0" * 32, "kind": "rotate", "target": "t", "status": "running", "createdAt": "yesterday",
                "updatedAt": "2026-12-01T00:00:00Z", "requestedBy": "function key", "attempt": 1,
                "statusUrl": "/api/operations/" + "0" * 32}
    assert any("date-time" in p for p in _problems(bad_time, op_schema))
