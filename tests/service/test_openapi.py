"""The OpenAPI document tells clients, /docs and schema fuzzers what the service really wants.

The key scheme and each operation's role are checked against what the service does with keys of each role;
the declared field patterns against the checks the handlers run.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from service import validation
from service.app import create_app
from service.errors import ApiError
from tests.service.service_fixtures import ADMIN, INGEST, SEARCH, make_settings

KEYS = {"admin": ADMIN, "search": SEARCH, "ingest": INGEST}
PUBLIC = {("get", "/healthz"), ("get", "/readyz")}


@pytest.fixture(scope="module")
def api(tmp_path_factory, embedder):
    settings = make_settings(tmp_path_factory.mktemp("openapi"))
    with TestClient(create_app(settings, embedder=embedder)) as client:
        yield client, client.get("/openapi.json").json()


def operations(document):
    for path, ops in document["paths"].items():
        for method, operation in ops.items():
            yield method, path, operation


def test_the_api_key_scheme_is_declared(api):
    _, document = api
    assert document["components"]["securitySchemes"] == {
        "ApiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": document["components"]["securitySchemes"]["ApiKey"]["description"],
        }
    }


def test_every_operation_declares_the_role_the_service_enforces(api):
    client, document = api
    checked = 0
    for method, path, operation in operations(document):
        url = re.sub(r"\{[^}]+\}", "1", path)
        if (method, path) in PUBLIC:
            assert "security" not in operation
            assert client.request(method, url).status_code == 200
            continue
        [requirement] = operation["security"]
        [role] = requirement["ApiKey"]
        assert f"role `{role}`" in operation["description"]
        assert {"401", "403"} <= set(operation["responses"])
        assert client.request(method, url).status_code == 401, (method, path)
        for other, headers in KEYS.items():
            status = client.request(method, url, headers=headers).status_code
            if other in (role, "admin"):
                assert status not in (401, 403), (method, path, other, status)
            else:
                assert status == 403, (method, path, other, status)
        checked += 1
    assert checked >= 10


def _string_schemas(schema):
    if schema.get("type") == "string":
        yield schema
    if "items" in schema:
        yield from _string_schemas(schema["items"])
    for branch in schema.get("anyOf", []):
        yield from _string_schemas(branch)


def request_fields(document, name):
    """Every schema of a parameter or request-body property called `name`: (where, schema)."""
    schemas = document["components"]["schemas"]
    for method, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == name:
                yield f"{method} {path}", parameter["schema"]
        for content in operation.get("requestBody", {}).get("content", {}).values():
            ref = content["schema"].get("$ref")
            body = schemas[ref.rsplit("/", 1)[-1]] if ref else content["schema"]
            if name in body.get("properties", {}):
                yield f"{method} {path}", body["properties"][name]


def ecma_pattern(pattern: str) -> re.Pattern:
    """A JSON Schema (ECMA 262) pattern ^...$ in Python: there `$` also matches before a final newline."""
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    return re.compile(pattern[1:-1])


def _accepted(check, value) -> bool:
    try:
        check(value)
    except ApiError:
        return False
    return True


CAMERA_SAMPLES = [
    "entrance",
    "Cam_1.a:b-c",
    "c" * 64,
    "",
    "c" * 65,
    "cam\n",
    " cam",
    "front door",
    "kamera-ü",
]
TIME_SAMPLES = [
    "2026-11-20",
    "2026-11-20T10:15",
    "2026-11-20T10:15:30.250Z",
    "2026-11-20 10:15:30+01:00",
    "2026-11-20t10:15:30z",
    "2026-W48-1",
    "2026-324",
    "20261120T101500Z",
    " 2026-11-20",
    "2026-11-20T10:15:30+0100",
    "2026-13-01",
    "2026-11-20T24:00",
    "yesterday",
]


def test_camera_ids_are_declared_with_the_pattern_the_service_checks(api):
    _, document = api
    places = list(request_fields(document, "camera_id"))
    assert {where for where, _ in places} == {
        "post /gallery",
        "get /gallery",
        "post /search",
        "get /metrics",
        "post /watches",
    }
    for where, schema in places:
        [string] = list(_string_schemas(schema))
        pattern = ecma_pattern(string["pattern"])
        for value in CAMERA_SAMPLES:
            declared = bool(pattern.fullmatch(value)) and len(value) <= string["maxLength"]
            assert declared == _accepted(validation.camera_id, value), (where, value)


def test_times_are_declared_with_the_pattern_the_service_checks(api):
    _, document = api
    places = [p for name in ("captured_at", "start", "end") for p in request_fields(document, name)]
    assert {where for where, _ in places} >= {"post /gallery", "get /gallery", "post /search", "get /metrics"}
    for where, schema in places:
        [string] = list(_string_schemas(schema))
        pattern = ecma_pattern(string["pattern"])
        for value in TIME_SAMPLES:
            assert bool(pattern.fullmatch(value)) == _accepted(
                lambda v: validation.timestamp(v, "t"), value
            ), (
                where,
                value,
            )


def test_optional_time_filters_declare_that_empty_means_not_given(api):
    client, document = api
    for name in ("start", "end"):
        for where, schema in request_fields(document, name):
            [string] = list(_string_schemas(schema))
            empty_allowed = bool(ecma_pattern(string["pattern"]).fullmatch(""))
            assert empty_allowed == (where != "post /visitors/recluster"), (where, name)
    everything = client.get("/gallery", headers=SEARCH).json()
    assert client.get("/gallery", params={"start": "", "end": ""}, headers=SEARCH).json() == everything
    r = client.post("/visitors/recluster", json={"start": "", "end": "2026-11-20T00:00Z"}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["field"] == "start"


def test_files_and_malformed_multipart_are_declared(api):
    client, document = api
    for where, schema in request_fields(document, "files"):
        [part] = list(_string_schemas(schema))
        assert part["format"] == "binary", where
    for _method, path, operation in operations(document):
        if "multipart/form-data" in operation.get("requestBody", {}).get("content", {}):
            assert "400" in operation["responses"], path
    r = client.post(
        "/search",
        content=b"--xx\r\n[]--xx--\r\n",
        headers={**SEARCH, "Content-Type": "multipart/form-data; boundary=xx"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


def test_numeric_ranges_and_list_sizes_are_declared(api):
    client, document = api
    settings = client.app.state.settings
    [(_, top_k)] = list(request_fields(document, "top_k"))
    assert (top_k["minimum"], top_k["maximum"]) == (1, 1000)
    gallery_ids = list(request_fields(document, "gallery_id"))
    assert {where for where, _ in gallery_ids} == {"post /search", "post /watches"}
    for where, schema in gallery_ids:  # repeatable: an array of ids, each 1..MAX_ID
        [array] = [b for b in schema["anyOf"] if b.get("type") == "array"]
        integer = array["items"]
        assert integer["type"] == "integer" and integer["minimum"] == 1, where
        assert integer["maximum"] == 2**63 - 1 and isinstance(integer["maximum"], int), where
    files = dict(request_fields(document, "files"))
    assert files["post /gallery"]["maxItems"] == settings.max_files_per_request
    [query_files] = [b for b in files["post /search"]["anyOf"] if b.get("type") == "array"]
    assert query_files["maxItems"] == settings.max_query_files
