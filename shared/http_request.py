"""The one request parser every HTTP route goes through, before any cloud call.

Callers are runbooks, people and security reviewers throwing garbage, so everything here is bounded: the body
size (64 KiB -> 413), nesting depth and number length (checked by a linear scan *before* Python's decoder, whose
recursion and big-int conversion would otherwise fail with a 500), the query string, and the target name. Only a
UTF-8 JSON object is a body; duplicate keys and unknown fields are refused, naming at most a few. Options
(`dry_run`, `force`) come from the JSON body or the query string; a conflicting value, an unknown query parameter,
or a body on a route that takes none is a 400 that names it. Messages are ours (never the decoder's text) and
echo at most a short, escaped, quoted prefix of what was sent; `log_safe` does the same for log records, so a
CR/LF in a request can never forge a log line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .errors import BadRequestError

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 8  # bodies are flat objects; a little room, and far below the decoder's recursion limit
MAX_NUMBER_CHARS = 32  # a longer number literal is refused before int()/float() see it
MAX_QUERY_CHARS = 2048
MAX_QUERY_PARAMS = 16
MAX_NAMED = 3  # unknown fields or parameters named in one message
ECHO_CHARS = 32  # how much of any input a message quotes back
# Parameters the Functions host itself reads: the function key (`code`) and its name (`clientId`). Accepted,
# never echoed or logged.
HOST_PARAMETERS = frozenset({"code", "clientId"})
_TARGET_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")  # the slug config.py accepts
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})
_DOCS = "See the OpenAPI document at /api/openapi.json."


class PayloadTooLargeError(BadRequestError):
    code = "payload_too_large"
    status = 413


# -- escaping ---------------------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Printable characters stay (letters of any script too); everything else becomes a \\x/\\u escape: CR, LF
    and other controls, Unicode line and paragraph separators, bidi overrides and other format characters, lone
    surrogates. The backslash itself is doubled, so an escape in the input cannot pass for one of ours."""
    out = []
    for ch in text:
        if ch.isprintable() and ch != "\\":
            out.append(ch)
        elif ch == "\\":
            out.append("\\\\")
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def log_safe(text: object, limit: int = 120) -> str:
    """Request text fit for a log record: escaped (no CR/LF can start a forged line) and at most `limit` chars."""
    raw = str(text)
    cut = raw[:limit]
    escaped = escape(cut)[:limit]
    return escaped + (f"...(+{len(raw) - len(cut)} chars)" if len(raw) > len(cut) else "")


def quoted(text: str, limit: int = ECHO_CHARS) -> str:
    """A short, quoted, escaped prefix of caller input for an error message."""
    escaped = escape(text[:limit])[:limit]
    return f"'{escaped}'" + ("..." if len(text) > limit else "")


# -- routes -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteSpec:
    """What one route accepts: its boolean options with their defaults, whether a body may be sent at all, and
    whether applying it (not a dry run) changes Azure (then REQUIRE_APP_ROLE applies)."""

    name: str  # e.g. "POST /api/targets/{target}/rotate", for messages
    options: Mapping[str, bool] = field(default_factory=dict)
    body: bool = False  # False: any non-empty body is refused; True: a JSON object of `options`
    changes_azure: bool = False
    target: bool = True  # has a {target} route parameter

    def applies_changes(self, options: Mapping[str, bool]) -> bool:
        return self.changes_azure and not options.get("dry_run", False)


@dataclass(frozen=True)
class ParsedRequest:
    route: RouteSpec
    target: str | None
    options: dict[str, bool]  # every option of the route, defaults filled in
    given: frozenset[str]  # the options the caller set explicitly (body or query)

    @property
    def applies_changes(self) -> bool:
        return self.route.applies_changes(self.options)


def _bad(message: str, fix: str, code: str = "bad_request", **details: Any) -> BadRequestError:
    return BadRequestError(message, fix=fix, code=code, details=details or None)


def parse_request(route: RouteSpec, *, url: str, body: bytes | None, route_params: Mapping[str, str] | None = None,
                  params: Mapping[str, str] | None = None) -> ParsedRequest:
    """Validate everything a caller sent to `route`; raise BadRequestError (400/413) naming what is wrong."""
    target = _target(route, route_params or {})
    query = _query_options(route, url, params or {})
    data = _body_options(route, body)
    options: dict[str, bool] = dict(route.options)
    for name, value in query.items():
        if name in data and data[name] != value:
            raise _bad(f"'{name}' is {_word(value)} in the query string but {_word(data[name])} in the body.",
                       "Give each option once, in the body or in the query string.", code="conflicting_option",
                       option=name)
    options.update(data)
    options.update(query)
    return ParsedRequest(route, target, options, frozenset(data) | frozenset(query))


def _word(value: bool) -> str:
    return "true" if value else "false"


def _target(route: RouteSpec, route_params: Mapping[str, str]) -> str | None:
    if not route.target:
        return None
    name = route_params.get("target", "")
    if not _TARGET_NAME.match(name):
        raise _bad(f"{quoted(name)} is not a target name.",
                   "Use a configured target's name: lowercase letters, digits and dashes, at most 63 characters "
                   "(GET /api/targets lists them).", code="invalid_target_name")
    return name


def _query_options(route: RouteSpec, url: str, params: Mapping[str, str]) -> dict[str, bool]:
    raw = urlsplit(url).query if "?" in url else ""
    if len(raw) > MAX_QUERY_CHARS:
        raise _bad(f"The query string is {len(raw)} characters long; at most {MAX_QUERY_CHARS} are accepted.",
                   f"Send only the documented options. {_DOCS}", code="invalid_query")
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_PARAMS)
    except UnicodeDecodeError:
        raise _bad("The query string is not valid percent-encoded UTF-8.", "Encode option values as UTF-8.",
                   code="invalid_query") from None
    except ValueError:
        raise _bad(f"The query string has more than {MAX_QUERY_PARAMS} parameters.",
                   f"Send only the documented options. {_DOCS}", code="invalid_query") from None
    if not pairs and params:  # a host that hands over only the parsed map: use it
        pairs = list(params.items())
    options: dict[str, bool] = {}
    unknown: list[str] = []
    for name, value in pairs:
        if name in HOST_PARAMETERS:
            continue
        if name not in route.options:
            if name not in unknown:
                unknown.append(name)
            continue
        if name in options:
            raise _bad(f"The query parameter '{name}' is given more than once.", f"Give '{name}' once.",
                       code="conflicting_option", option=name)
        lowered = value.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise _bad(f"The query parameter '{name}' must be true or false, not {quoted(value)}.",
                       f"Use {name}=true or {name}=false.", code="invalid_option", option=name)
        options[name] = lowered in _TRUE
    if unknown:
        raise _bad(f"{route.name} does not accept the query parameter(s) {_names(unknown)}.",
                   f"Accepted: {_accepted(route)}. {_DOCS}", code="unknown_query_parameter",
                   parameters=[escape(u[:ECHO_CHARS]) for u in unknown[:MAX_NAMED]], count=len(unknown))
    return options


def _accepted(route: RouteSpec) -> str:
    return ", ".join(sorted(route.options)) or "none"


def _names(names: list[str]) -> str:
    shown = ", ".join(quoted(n) for n in names[:MAX_NAMED])
    more = len(names) - MAX_NAMED
    return shown + (f" and {more} more" if more > 0 else "")


# -- the body -------------------------------------------------------------------------------------------------


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


class _Unsupported(Exception):
    def __init__(self, what: str) -> None:
        self.what = what


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise _Unsupported(name)  # NaN, Infinity, -Infinity: not JSON


def _scan(text: str) -> None:
    """One linear pass outside strings: nesting depth and number-literal length, before the decoder runs."""
    depth = 0
    in_string = escaped = False
    run = 0  # length of the current number-like run
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch in "0123456789+-.eE":
            run += 1
            if run > MAX_NUMBER_CHARS:
                raise _bad(f"The body has a number longer than {MAX_NUMBER_CHARS} characters.",
                           'Options are true or false, e.g. {"dry_run": true}.', code="invalid_body")
            continue
        run = 0
        if ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
            if depth > MAX_DEPTH:
                raise _bad(f"The body is nested more than {MAX_DEPTH} levels deep.",
                           'Send a flat JSON object, e.g. {"dry_run": true}.', code="invalid_body")
        elif ch in "}]":
            depth -= 1


def _decode(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(f"The body is not UTF-8 (invalid byte at offset {exc.start}).", "Send the JSON as UTF-8.",
                   code="invalid_body") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark is allowed before JSON text (RFC 8259)
    _scan(text)
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise _bad(f"The body is not valid JSON at line {exc.lineno}, column {exc.colno}.",
                   'Send a JSON object, e.g. {"dry_run": true}.', code="invalid_body") from None
    except _DuplicateKey as exc:
        raise _bad(f"The body gives the field {quoted(exc.key)} more than once.", "Give each field once.",
                   code="invalid_body") from None
    except _Unsupported as exc:
        raise _bad(f"The body contains {exc.what}, which is not a JSON value.", "Remove it.",
                   code="invalid_body") from None


def _body_options(route: RouteSpec, body: bytes | None) -> dict[str, bool]:
    if not body or not body.strip():
        return {}
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(
            f"The body is {len(body)} bytes; {route.name} accepts at most {MAX_BODY_BYTES}.",
            fix='Send only the documented options, e.g. {"dry_run": true}.')
    if not route.body:
        raise _bad(f"{route.name} takes no body.", "Send the request without a body.", code="body_not_allowed")
    data = _decode(body)
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")
        raise _bad(f"The body must be a JSON object, not {kind}.", 'Send e.g. {"dry_run": true}.',
                   code="invalid_body")
    unknown = [k for k in data if k not in route.options]
    if unknown:
        raise _bad(f"{route.name} does not accept the field(s) {_names(unknown)}.",
                   f"Accepted: {_accepted(route)}. Requests never name a principal, role or scope. {_DOCS}",
                   code="unknown_field", fields=[escape(u[:ECHO_CHARS]) for u in unknown[:MAX_NAMED]],
                   count=len(unknown))
    for name, value in data.items():
        if not isinstance(value, bool):
            raise _bad(f"The field '{name}' must be true or false.", f'Send e.g. {{"{name}": true}}.',
                       code="invalid_option", option=name)
    return dict(data)
