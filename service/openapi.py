"""The OpenAPI document: what FastAPI generates, plus what it cannot see.

FastAPI already declares the X-API-Key scheme and, per operation, the role it needs (security.API_KEY,
`{"ApiKey": ["search"]}`: OpenAPI 3.1 lets a non-OAuth requirement list roles). Here, once for the whole
API, the document also gets:

- the role in each secured operation's description (for people reading /docs) and its 401 / 403 answers;
- the real constraints of fields that the handlers check themselves (so that their error messages name
  the field in the service's words), by field name, wherever the field is a parameter or a request-body
  property: camera ids, ISO 8601 times, buckets, external refs, ids, and how many values a list takes.
  Each constraint is built from the constant the check uses, so the document and the check cannot drift.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service import footfall, validation
from service.search import MAX_QUERY_ITEMS
from service.settings import Settings
from service.tables import MAX_ID

_SCHEME = "ApiKey"


def anchored(pattern: str) -> str:
    """JSON Schema patterns match anywhere in the string: anchor a fullmatch pattern."""
    return f"^(?:{pattern})$"


def string_constraints() -> dict[str, dict[str, Any]]:
    """Field name -> the constraints of each string value of that field."""
    iso = {
        "pattern": anchored(validation.ISO_TIME.pattern),
        "maxLength": 64,
        "examples": ["2026-11-20T10:05:00Z"],
    }
    optional_iso = {**iso, "pattern": anchored(f"(?:{validation.ISO_TIME.pattern})?")}  # "" = not given
    return {
        "optional_time": optional_iso,
        "camera_id": {
            "pattern": anchored(validation.CAMERA_ID.pattern),
            "minLength": 1,
            "maxLength": 64,
            "examples": ["entrance"],
        },
        "captured_at": iso,
        "start": iso,
        "end": iso,
        "bucket": {"pattern": footfall._BUCKET_RE.pattern, "examples": ["15m", "1h", "1d"]},
        "external_ref": {
            "maxLength": validation.MAX_EXTERNAL_REF,
            "pattern": r"^[^\u0000-\u001f]*$",  # no control characters
        },
        "track_ref": {
            "maxLength": validation.MAX_TRACK_REF,
            "pattern": r"^[^\u0000-\u001f]*$",
        },
    }


INTEGER_FIELDS = ("item_id", "visitor_id", "gallery_id")  # ids: 1..MAX_ID (the generated maximum is a float)


def list_limits(settings: Settings) -> dict[tuple[str, str, str], int]:
    """(method, path, field) -> the most values that field's list takes."""
    per_file = settings.max_files_per_request
    limits = {
        ("post", "/gallery", name): per_file
        for name in ("files", "camera_id", "captured_at", "external_ref", "track_ref")
    }
    limits[("post", "/search", "files")] = settings.max_query_files
    limits[("post", "/watches", "files")] = settings.max_query_files
    for path in ("/search", "/watches"):
        limits[("post", path, "gallery_id")] = MAX_QUERY_ITEMS
    for path, method in (("/gallery", "get"), ("/search", "post"), ("/metrics", "get"), ("/watches", "post")):
        limits[(method, path, "camera_id")] = validation.MAX_CAMERA_FILTERS
    return limits


def _each_string(schema: dict, constraints: dict) -> None:
    """Apply `constraints` to every string in `schema` (itself, an array's items, anyOf branches); a file
    part also gets OpenAPI 3.0's `format: binary`, which generators read as "send a file"."""
    if schema.get("type") == "string" and "contentMediaType" in schema:
        schema["format"] = "binary"
    elif schema.get("type") == "string":
        schema.update(constraints)
    if isinstance(schema.get("items"), dict):
        _each_string(schema["items"], constraints)
    for branch in schema.get("anyOf", []):
        _each_string(branch, constraints)


def _each_array(schema: dict, max_items: int) -> None:
    if schema.get("type") == "array":
        schema["maxItems"] = max_items
    for branch in schema.get("anyOf", []):
        _each_array(branch, max_items)


def _each_integer(schema: dict) -> None:
    if schema.get("type") == "integer":
        schema.update(minimum=1, maximum=MAX_ID)
    for branch in schema.get("anyOf", []):
        _each_integer(branch)
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):  # a repeatable id field
        _each_integer(schema["items"])


def _constrain(method: str, path: str, name: str, schema: dict, settings: Settings) -> None:
    strings = string_constraints()
    if name in ("start", "end") and path != "/visitors/recluster":  # optional filters: empty = not given
        _each_string(schema, strings["optional_time"])
    elif name in strings:
        _each_string(schema, strings[name])
    elif name == "files":
        _each_string(schema, {})
    if name in INTEGER_FIELDS:
        _each_integer(schema)
    limit = list_limits(settings).get((method, path, name))
    if limit is not None:
        _each_array(schema, limit)


def _request_fields(document: dict, method: str, operation: dict):
    """(name, schema) of the operation's parameters and request-body properties."""
    for parameter in operation.get("parameters", []):
        yield parameter["name"], parameter["schema"]
    for content in operation.get("requestBody", {}).get("content", {}).values():
        ref = content.get("schema", {}).get("$ref", "")
        body = document["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {}) if ref else {}
        yield from body.get("properties", {}).items()


def build_openapi(app: FastAPI, settings: Settings) -> dict:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            for name, schema in _request_fields(document, method, operation):
                _constrain(method, path, name, schema, settings)
            if "multipart/form-data" in operation.get("requestBody", {}).get("content", {}):
                operation["responses"].setdefault(
                    "400", {"description": "The body is not valid multipart/form-data", **error}
                )
            roles = [
                role for requirement in operation.get("security", []) for role in requirement.get(_SCHEME, [])
            ]
            if not roles:
                continue
            note = f"Needs an API key (X-API-Key) with role `{roles[0]}`" + (
                "." if roles[0] == "admin" else " or `admin`."
            )
            operation["description"] = (operation.get("description", "") + "\n\n" + note).strip()
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "Missing or unknown API key", **error})
            responses.setdefault("403", {"description": f"The key's role is not {roles[0]}", **error})
    return document


def install(app: FastAPI, settings: Settings) -> None:
    """Serve build_openapi's document at /openapi.json (built once, on first request)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, settings)
        return app.openapi_schema

    app.openapi = openapi
