"""The OpenAPI document covers every HTTP route function_app.py registers, and the error schema."""

from __future__ import annotations

from shared.openapi import openapi_document
from tests.test_function_app import EXPECTED_ROUTES


def test_every_route_is_described_with_its_method() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.")
    for route, methods in EXPECTED_ROUTES.values():
        path = "/" + route
        assert path in doc["paths"], path
        assert {m.lower() for m in methods} == set(doc["paths"][path])


def test_request_bodies_cannot_name_principals_roles_or_scopes() -> None:
    doc = openapi_document()
    for path, ops in doc["paths"].items():
        for op in ops.values():
            body = op.get("requestBody")
            if body:
                schema = body["content"]["application/json"]["schema"]
                assert schema["additionalProperties"] is False, path
                assert not {"principal", "principal_id", "role", "scope"} & set(schema["properties"]), path
    assert doc["components"]["schemas"]["Error"]["properties"]["error"]["required"] == ["code", "message"]


def test_report_and_remediation_schemas_are_embedded() -> None:
    schemas = openapi_document()["components"]["schemas"]
    assert "status" in schemas["Report"]["properties"]
    assert {"before", "actions", "after"} <= set(schemas["Remediation"]["properties"])
    assert "$schema" not in schemas["Report"] and "$schema" not in schemas["Remediation"]
