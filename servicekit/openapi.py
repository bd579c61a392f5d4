"""The HTTP contract in the OpenAPI documents: every status an operation can answer.

A route declares, next to itself, the refusals that are its own (`problems(NOT_FOUND,
conflict("key_revoked", ...))`); the app shell adds to every operation those that come
from the shell: 422 for a request its schema refuses, 400 for a body that is not JSON in
UTF-8, 413 for an oversize body, 503 while a dependency is down. Each refusal is the
shared error body, with the codes that status may carry, so a client generated from the
document knows every answer it can get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA: Final = "Error"
VALIDATION_CODE: Final = r"^([a-z0-9_]+_invalid|invalid_request)$"
"""A request its schema refuses: `<field>_invalid` when one field is at fault."""


@dataclass(frozen=True)
class Problem:
    """One refusal an operation may answer: its status, codes and headers."""

    status: int
    codes: tuple[str, ...]
    description: str
    headers: dict[str, str] = field(default_factory=dict)
    """Header name -> its description."""
    pattern: str | None = None
    """Instead of `codes`: a pattern every code matches (e.g. `name_invalid`)."""


def refusal(status: int, description: str, *codes: str, **headers: str) -> Problem:
    return Problem(status, codes, description, {k.replace("_", "-"): v for k, v in headers.items()})


UNAUTHENTICATED: Final = refusal(
    401,
    "No access key, or one that is not accepted.",
    "unauthenticated",
    WWW_Authenticate="Bearer",
)
FORBIDDEN: Final = refusal(403, "The access key lacks the scope this needs.", "insufficient_scope")
NOT_FOUND: Final = refusal(404, "No such resource in the caller's account.", "not_found")
BAD_CURSOR: Final = refusal(400, "The cursor is not one this API issued.", "bad_cursor")
INVALID: Final = Problem(422, (), "The request breaks its schema.", pattern=VALIDATION_CODE)
MALFORMED_BODY: Final = refusal(400, "The body is not JSON in UTF-8.", "malformed_body")
TOO_LARGE: Final = refusal(413, "The body is larger than the service takes.", "payload_too_large")
UNAVAILABLE: Final = refusal(503, "A dependency (database, broker) is down; retry.", "unavailable")

AUTHENTICATED: Final = (UNAUTHENTICATED, FORBIDDEN)
"""What every operation behind an access key may answer."""


def problems(*refusals: Problem) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: its refusals, merged by status."""
    by_status: dict[int, Problem] = {}
    for problem in refusals:
        seen = by_status.get(problem.status)
        by_status[problem.status] = problem if seen is None else _merge(seen, problem)
    return {status: _response(problem) for status, problem in sorted(by_status.items())}


def _merge(one: Problem, other: Problem) -> Problem:
    codes = tuple(dict.fromkeys(one.codes + other.codes))
    description = (
        one.description
        if one.description == other.description
        else (f"{one.description} Or: {other.description}")
    )
    return Problem(
        one.status,
        codes,
        description,
        {**one.headers, **other.headers},
        one.pattern or other.pattern,
    )


def _response(problem: Problem) -> dict[str, Any]:
    code: dict[str, Any] = {"type": "string"}
    if problem.pattern:
        code["pattern"] = problem.pattern
    else:
        code["enum"] = list(problem.codes)
    schema = {
        "allOf": [
            {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"},
            {"properties": {"error": {"properties": {"code": code}}}},
        ]
    }
    response: dict[str, Any] = {
        "description": problem.description,
        "content": {"application/json": {"schema": schema}},
    }
    if problem.headers:
        response["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in problem.headers.items()
        }
    return response


_ERROR_BODY: Final = {
    "type": "object",
    "description": 'Every refusal: `{"error": {"code", "message", "details"?}}`.',
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            # Some refusals add fields for programs, e.g. the key_id of a repeated request.
            "additionalProperties": True,
            "properties": {
                "code": {"type": "string", "description": "Stable; programs branch on it."},
                "message": {"type": "string", "description": "For a person."},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "problem"],
                        "properties": {
                            "field": {"type": "string"},
                            "problem": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}

# Answered by the process alone (/ready declares its own 503).
_NO_SHELL_REFUSALS: Final = frozenset({"/health", "/ready", "/metrics", "/asyncapi"})


def install_contract(app: FastAPI) -> None:
    """Build the document once, with the shell's refusals on every operation."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _add_shell_refusals(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_shell_refusals(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_SCHEMA] = _ERROR_BODY
    # FastAPI's own 422 body is not the one this API answers.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                _not_null(parameter)
            shell = [] if path in _NO_SHELL_REFUSALS else [UNAVAILABLE]
            if operation.get("parameters") or "requestBody" in operation:
                shell.append(INVALID)
            if "requestBody" in operation:
                shell += [MALFORMED_BODY, TOO_LARGE]
            responses = operation.setdefault("responses", {})
            if "HTTPValidationError" in str(responses.get("422")):  # FastAPI's, not ours
                del responses["422"]
            for status, response in problems(*shell).items():
                if str(status) in responses:  # the route's own: merge the codes
                    _merge_codes(responses[str(status)], response)
                else:
                    responses[str(status)] = response


def _not_null(parameter: dict[str, Any]) -> None:
    """A path, query or header parameter is text or absent, never JSON null: FastAPI's
    `X | None` reads "may be left out", which `required: false` already says."""
    schema = parameter.get("schema", {})
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if "anyOf" in schema and len(branches) == 1:
        del schema["anyOf"]
        schema.update(branches[0])


def _merge_codes(own: dict[str, Any], shell: dict[str, Any]) -> None:
    own_code = own["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"]
    shell_code = shell["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"]
    mine, theirs = own_code["properties"]["code"], shell_code["properties"]["code"]
    if "enum" in mine and "enum" in theirs:
        mine["enum"] = list(dict.fromkeys(mine["enum"] + theirs["enum"]))
    else:  # a pattern and codes: either
        own_code["properties"]["code"] = {"anyOf": [mine, theirs]}
    own["description"] = f"{own['description']} Or: {shell['description']}"
