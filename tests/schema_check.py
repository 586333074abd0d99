"""Holding documents to their JSON Schemas with `jsonschema` (Draft 2020-12, the dialect OpenAPI 3.1 embeds),
`format` included (date-time, uri-reference, uuid ...), and holding HTTP replies to the OpenAPI document:
`validate_response` finds the operation's schema for the status and checks the body and the documented headers."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

FORMATS = FormatChecker()


def errors(value: Any, schema: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator(schema, format_checker=FORMATS)
    return [f"$.{'.'.join(str(p) for p in e.absolute_path)}: {e.message[:300]}"
            for e in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))]


def validate_json(value: Any, schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    problems = errors(value, schema)
    assert not problems, "schema violations:\n" + "\n".join(problems[:20])


@cache
def _document() -> str:
    from shared.openapi import openapi_document

    return json.dumps(openapi_document())


def response_schema(path: str, method: str, status: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The body schema (made self-contained: the document's components ride along for `$ref`) and the
    documented headers of one response."""
    doc = json.loads(_document())
    operation = doc["paths"][path][method.lower()]
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {path} does not document status {status}"
    if "$ref" in response:
        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = dict(response["content"]["application/json"]["schema"])
    schema["components"] = doc["components"]
    return schema, response.get("headers", {})


def validate_response(path: str, method: str, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    """A reply as OpenAPI describes it: the status is documented, the body matches, required headers are there
    and match their schemas."""
    schema, documented = response_schema(path, method, status)
    validate_json(body, schema)
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    for name, spec in documented.items():
        if spec.get("$ref"):
            spec = json.loads(_document())["components"]["headers"][spec["$ref"].rsplit("/", 1)[1]]
        value = lowered.get(name.lower())
        if value is None:
            assert not spec.get("required"), f"{method} {path} {status}: header {name} missing"
            continue
        kind = spec.get("schema", {}).get("type")
        validate_json(int(value) if kind == "integer" else value, spec.get("schema", {}))
