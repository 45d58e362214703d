"""Bad input of every kind -> a 4xx naming the problem in the one error format; nothing written; never a 500."""

from __future__ import annotations

import io

import PIL.Image
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from tests.service.service_fixtures import ADMIN, INGEST, SEARCH, identity_image, make_settings, upload

pytestmark = pytest.mark.databases("sqlite", "postgresql", "postgresql+milvus")

GOOD = {"camera_id": "cam-1", "captured_at": "2026-11-20T10:00:00Z"}


def encoded(fmt: str, size=(32, 64), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128).save(buffer, format=fmt)
    return buffer.getvalue()


def bomb_png() -> bytes:
    """A tiny file that claims 144 million pixels."""
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def strict_client(request, tmp_path_factory, embedder):
    database_url = (
        request.getfixturevalue("postgres_cluster").database() if request.param == "postgresql" else None
    )
    settings = make_settings(
        tmp_path_factory.mktemp("strict"),
        database_url=database_url,
        max_upload_bytes=4096,
        max_pixels=100 * 100,
        max_files_per_request=3,
    )
    with TestClient(create_app(settings, embedder=embedder)) as client:
        yield client


def assert_error(r, status, code=None, field=None, mentions=None):
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"code", "message", "field"} and error["message"]
    if code:
        assert error["code"] == code, error
    if field:
        assert error["field"] == field, error
    if mentions:
        assert mentions.lower() in error["message"].lower(), error


def assert_nothing_written(client):
    assert client.get("/gallery", headers=SEARCH).json()["total"] == 0
    images = client.app.state.ctx.settings.images_dir
    assert [p for p in images.rglob("*") if p.is_file()] == []


def noisy_png(width, height) -> bytes:
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_FILES = [
    ("text", b"hello, this is not an image", "a.txt", 422, "not_an_image", "a.txt"),
    ("zero-byte", b"", "empty.jpg", 422, "empty_file", "0 bytes"),
    ("truncated-jpeg", identity_image(0, 0, fmt="JPEG")[:300], "cut.jpg", 422, "bad_image", "cut.jpg"),
    ("gif", encoded("GIF"), "a.gif", 415, "unsupported_format", "GIF"),
    ("tiff", encoded("TIFF", size=(16, 24)), "a.tif", 415, "unsupported_format", "TIFF"),
    ("over-byte-limit", noisy_png(40, 60), "big.png", 413, "too_large", "4096 bytes"),
    ("over-pixel-limit", encoded("PNG", size=(101, 100)), "wide.png", 413, "too_many_pixels", "101x100"),
    ("too-small", encoded("PNG", size=(4, 4)), "dot.png", 422, "invalid", "at least"),
]


@pytest.mark.parametrize(
    ("data", "name", "status", "code", "mentions"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_bad_files_are_refused(strict_client, data, name, status, code, mentions):
    r = strict_client.post("/gallery", files=upload([data], [name]), data=GOOD, headers=INGEST)
    assert_error(r, status, code, "files", mentions)
    assert r.json()["items"][0]["status"] == "error" and r.json()["failed"] == 1
    assert_nothing_written(strict_client)
    # The same file as a search query is refused the same way.
    r = strict_client.post("/search", files=upload([data], [name]), headers=SEARCH)
    assert_error(r, status, code, "files", mentions)


def test_decompression_bomb_is_refused_before_decoding(client):
    data = bomb_png()
    assert len(data) < 100_000
    r = client.post("/gallery", files=upload([data], ["bomb.png"]), data=GOOD, headers=INGEST)
    assert_error(r, 413, "too_many_pixels", "files", "pixels")
    assert_nothing_written(client)


BAD_FIELDS = [
    ("missing-camera", {"captured_at": "2026-11-20T10:00:00Z"}, "camera_id", "missing"),
    ("missing-time", {"camera_id": "cam-1"}, "captured_at", "missing"),
    ("time-words", {**GOOD, "captured_at": "yesterday"}, "captured_at", "ISO 8601"),
    ("time-bad-day", {**GOOD, "captured_at": "2026-02-30T10:00:00"}, "captured_at", "ISO 8601"),
    ("time-1900", {**GOOD, "captured_at": "1900-01-01T00:00:00Z"}, "captured_at", "1970"),
    ("time-future", {**GOOD, "captured_at": "2999-01-01T00:00:00Z"}, "captured_at", "future"),
    ("camera-path", {**GOOD, "camera_id": "../../etc/passwd"}, "camera_id", "camera_id"),
    ("camera-long", {**GOOD, "camera_id": "c" * 65}, "camera_id", "1..64"),
    ("camera-space", {**GOOD, "camera_id": "front door"}, "camera_id", "camera_id"),
    ("camera-unicode", {**GOOD, "camera_id": "kamera-ü"}, "camera_id", "camera_id"),
    ("camera-count", {**GOOD, "camera_id": ["a", "b"]}, "camera_id", "one for all"),
    ("camera-newline", {**GOOD, "camera_id": "cam\n"}, "camera_id", "camera_id"),
    ("camera-padded", {**GOOD, "camera_id": " cam"}, "camera_id", "camera_id"),
    ("camera-blank", {**GOOD, "camera_id": "  "}, "camera_id", "camera_id"),
    ("time-iso-week", {**GOOD, "captured_at": "2026-W48-1"}, "captured_at", "ISO 8601"),
    ("time-ordinal-day", {**GOOD, "captured_at": "2026-324"}, "captured_at", "ISO 8601"),
    ("time-basic-format", {**GOOD, "captured_at": "20261120T100000Z"}, "captured_at", "ISO 8601"),
    ("time-padded", {**GOOD, "captured_at": " 2026-11-20T10:00:00Z"}, "captured_at", "ISO 8601"),
    ("ref-count", {**GOOD, "external_ref": ["x", "y"]}, "external_ref", "one per file"),
    ("ref-long", {**GOOD, "external_ref": ["r" * 300] * 3}, "external_ref", "256"),
]


@pytest.mark.parametrize(
    ("data", "field", "mentions"), [b[1:] for b in BAD_FIELDS], ids=[b[0] for b in BAD_FIELDS]
)
def test_bad_ingest_fields_write_nothing(strict_client, data, field, mentions):
    files = upload([identity_image(0, 0), identity_image(0, 1), identity_image(0, 2)])
    r = strict_client.post("/gallery", files=files, data=data, headers=INGEST)
    assert_error(r, 422, field=field, mentions=mentions)
    assert_nothing_written(strict_client)


def test_request_level_file_problems(strict_client):
    r = strict_client.post("/gallery", data=GOOD, headers=INGEST)
    assert_error(r, 422, "missing", "files")
    files = upload([identity_image(0, s) for s in range(4)])
    r = strict_client.post("/gallery", files=files, data=GOOD, headers=INGEST)
    assert_error(r, 422, "too_many_files", "files", "limit is 3")
    r = strict_client.post(
        "/gallery",
        content=b"--xx\r\ngarbage",
        headers={**INGEST, "Content-Type": "multipart/form-data; boundary=xx"},
    )
    assert 400 <= r.status_code < 500 and "error" in r.json()
    r = strict_client.post("/gallery", json={"files": []}, headers=INGEST)
    assert 400 <= r.status_code < 500 and "error" in r.json()
    assert_nothing_written(strict_client)


BAD_SEARCH = [
    ("top_k-0", {"gallery_id": 1, "top_k": 0}, "top_k"),
    ("top_k-1001", {"gallery_id": 1, "top_k": 1001}, "top_k"),
    ("top_k-text", {"gallery_id": 1, "top_k": "many"}, "top_k"),
    ("min_score-2", {"gallery_id": 1, "min_score": 2}, "min_score"),
    ("start-after-end", {"gallery_id": 1, "start": "2026-11-21T00:00Z", "end": "2026-11-20T00:00Z"}, "end"),
    ("bad-start", {"gallery_id": 1, "start": "noon"}, "start"),
    ("bad-camera", {"gallery_id": 1, "camera_id": "a b"}, "camera_id"),
    ("no-query", {"top_k": 5}, "files"),
    ("gallery-id-0", {"gallery_id": 0}, "gallery_id"),
    ("gallery-id-huge", {"gallery_id": 10**30}, "gallery_id"),
    ("min_score-nan", {"gallery_id": 1, "min_score": "nan"}, "min_score"),
    ("too-many-cameras", {"gallery_id": 1, "camera_id": [f"c{i}" for i in range(501)]}, "camera_id"),
    ("top_k-empty", {"gallery_id": 1, "top_k": ""}, "top_k"),
    ("top_k-padded", {"gallery_id": 1, "top_k": " 5"}, "top_k"),
    ("top_k-underscore", {"gallery_id": 1, "top_k": "1_0"}, "top_k"),
    ("top_k-fraction", {"gallery_id": 1, "top_k": "5.0"}, "top_k"),
    ("gallery-id-empty", {"gallery_id": "", "top_k": 5}, "gallery_id"),
    ("gallery-id-padded", {"gallery_id": " 1"}, "gallery_id"),
    ("min_score-empty", {"gallery_id": 1, "min_score": ""}, "min_score"),
    ("min_score-padded", {"gallery_id": 1, "min_score": " 0.5"}, "min_score"),
    ("start-iso-week", {"gallery_id": 1, "start": "2026-W48-1"}, "start"),
]


@pytest.mark.parametrize(("data", "field"), [b[1:] for b in BAD_SEARCH], ids=[b[0] for b in BAD_SEARCH])
def test_bad_search_parameters(strict_client, data, field):
    assert_error(strict_client.post("/search", data=data, headers=SEARCH), 422, field=field)


def test_search_query_problems(strict_client):
    r = strict_client.post("/search", data={"gallery_id": 12345}, headers=SEARCH)
    assert_error(r, 404, "not_found", "gallery_id", "12345")
    both = strict_client.post(  # photos and stored items together are one query; the item must exist
        "/search",
        files=upload([identity_image(0, 0, fmt="JPEG")], mime="image/jpeg"),
        data={"gallery_id": 12345},
        headers=SEARCH,
    )
    assert_error(both, 404, "not_found", "gallery_id", "12345")
    one_bad = strict_client.post("/search", data={"gallery_id": ["1", "two"]}, headers=SEARCH)
    assert_error(one_bad, 422, field="gallery_id")
    many = strict_client.post("/search", data={"gallery_id": [str(i) for i in range(1, 66)]}, headers=SEARCH)
    assert_error(many, 422, "too_many_items", "gallery_id", "limit is 64")
    nine = strict_client.post(
        "/search", files=upload([identity_image(0, s) for s in range(9)]), headers=SEARCH
    )
    assert_error(nine, 422, "too_many_files", "files", "limit is 8")


BAD_METRICS = [
    ("bucket-unit", {"bucket": "15x"}, "bucket"),
    ("bucket-zero", {"bucket": "0m"}, "bucket"),
    ("bucket-empty", {"bucket": ""}, "bucket"),
    ("bucket-spaces", {"bucket": " 2h "}, "bucket"),
    ("bucket-upper-case", {"bucket": "1M"}, "bucket"),
    (
        "too-many-buckets",
        {"start": "2026-01-01T00:00Z", "end": "2026-12-01T00:00Z", "bucket": "1m"},
        "bucket",
    ),
    ("window-too-long", {"start": "2020-01-01T00:00Z", "end": "2026-01-01T00:00Z", "bucket": "1d"}, "end"),
    ("end-before-start", {"start": "2026-11-21T00:00Z", "end": "2026-11-20T00:00Z"}, "end"),
    ("bad-time", {"start": "2026-13-01"}, "start"),
    ("bad-camera", {"camera_id": "x" * 70}, "camera_id"),
    ("camera-newline", {"camera_id": "cam\n"}, "camera_id"),
    ("start-iso-week", {"start": "2026-W48-1"}, "start"),
]


@pytest.mark.parametrize(("params", "field"), [b[1:] for b in BAD_METRICS], ids=[b[0] for b in BAD_METRICS])
def test_bad_metrics_parameters(strict_client, params, field):
    assert_error(strict_client.get("/metrics", params=params, headers=SEARCH), 422, field=field)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/gallery", {"params": {"limit": 0}}, 422),
        ("GET", "/gallery", {"params": {"limit": 501}}, 422),
        ("GET", "/gallery", {"params": {"offset": -1}}, 422),
        ("GET", "/gallery", {"params": {"visitor_id": "me"}}, 422),
        ("GET", "/gallery", {"params": {"start": "soon"}}, 422),
        ("GET", "/gallery/abc", {}, 422),
        ("GET", "/gallery", {"params": {"limit": " 5"}}, 422),
        ("GET", "/gallery", {"params": {"visitor_id": "+1"}}, 422),
        ("GET", "/gallery", {"params": {"camera_id": "cam\n"}}, 422),
        ("GET", "/audit", {"params": {"offset": "1_0"}}, 422),
        ("DELETE", "/visitors/%201", {}, 422),
        ("GET", "/gallery/99999999999999999999999", {}, 422),
        ("GET", "/gallery/5", {}, 404),
        ("GET", "/gallery/5/image", {"params": {"size": "huge"}}, 422),
        ("DELETE", "/visitors/77", {}, 404),
        ("POST", "/visitors/recluster", {"json": {"start": "2026-11-20"}}, 422),
        ("POST", "/visitors/recluster", {"json": {"start": "2026-11-21", "end": "2026-11-20"}}, 422),
        (
            "POST",
            "/visitors/recluster",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            422,
        ),
        ("GET", "/audit", {"params": {"limit": 10**6}}, 422),
        ("GET", "/audit", {"params": {"offset": 10**30}}, 422),
        ("GET", "/gallery", {"params": {"offset": 10**30}}, 422),
        ("GET", "/gallery", {"params": {"visitor_id": 10**30}}, 422),
        ("PUT", "/gallery", {}, 405),
        ("GET", "/no-such-route", {}, 404),
    ],
)
def test_other_bad_requests(strict_client, method, path, kwargs, status):
    headers = {**ADMIN, **kwargs.pop("headers", {})}
    assert_error(strict_client.request(method, path, headers=headers, **kwargs), status)


def test_decoder_crash_on_a_hostile_file_is_a_4xx(strict_client, monkeypatch):
    import service.validation

    def explode(data, name, **limits):
        raise IndexError("decoder bug")

    monkeypatch.setattr(service.validation, "decode_bytes", explode)
    r = strict_client.post("/gallery", files=upload([encoded("PNG")], ["odd.png"]), data=GOOD, headers=INGEST)
    assert_error(r, 422, "bad_image", "files", "odd.png")
    assert_nothing_written(strict_client)


def test_oversized_request_body_is_refused_before_parsing(strict_client):
    limit = 3 * (4096 + 4096) + 1024 * 1024
    big = b"x" * (limit + 1)
    r = strict_client.post("/gallery", files=upload([big], ["huge.png"]), data=GOOD, headers=INGEST)
    assert_error(r, 413, "too_large", mentions=str(limit))

    def chunks():  # no Content-Length: counted while it streams
        yield b'--zz\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
        yield b"Content-Type: image/png\r\n\r\n"
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536

    r = strict_client.post(
        "/gallery", content=chunks(), headers={**INGEST, "Content-Type": "multipart/form-data; boundary=zz"}
    )
    assert_error(r, 413, "too_large")
    assert_nothing_written(strict_client)


@pytest.mark.parametrize("raw", ["%201", "1%20", "+1", "01_0", "1.0", "%0A1"])
def test_malformed_item_ids_are_refused_and_delete_nothing(client, raw):
    """`DELETE /gallery/%201` (id " 1") used to delete item 1."""
    r = client.post(
        "/gallery", files=upload([identity_image(0, 0)]), data={**GOOD, "camera_id": "cam"}, headers=INGEST
    )
    item_id = r.json()["items"][0]["id"]
    assert item_id == 1
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/gallery/{raw}", headers=ADMIN)
        assert_error(response, 422, field="item_id", mentions="item_id")
    assert client.get("/gallery/1/image", headers=ADMIN).status_code == 200
    assert_error(client.get(f"/gallery/{raw}/image", headers=ADMIN), 422, field="item_id")
    assert client.get("/gallery", headers=SEARCH).json()["total"] == 1


def test_camera_ids_are_stored_as_sent(client):
    """`camera_id="cam\\n"` used to be stored as "cam": a value is taken as sent, or refused."""
    r = client.post(
        "/gallery", files=upload([identity_image(0, 0)]), data={**GOOD, "camera_id": "cam\n"}, headers=INGEST
    )
    assert_error(r, 422, field="camera_id", mentions="camera_id")
    assert_nothing_written(client)
    ok = client.post(
        "/gallery",
        files=upload([identity_image(0, 0)]),
        data={**GOOD, "camera_id": "Cam_1.a:b-c"},
        headers=INGEST,
    )
    assert ok.status_code == 200, ok.text
    assert client.get("/gallery/1", headers=SEARCH).json()["camera_id"] == "Cam_1.a:b-c"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20", "2026-11-20T00:00:00+00:00"),
        ("2026-11-20T10:15", "2026-11-20T10:15:00+00:00"),
        ("2026-11-20T10:15Z", "2026-11-20T10:15:00+00:00"),
        ("2026-11-20T10:15:30.250Z", "2026-11-20T10:15:30.250000+00:00"),
        ("2026-11-20t10:15:30z", "2026-11-20T10:15:30+00:00"),
        ("2026-11-20 10:15:30+01:00", "2026-11-20T09:15:30+00:00"),
        ("2026-11-20T10:15:30-05:30", "2026-11-20T15:45:30+00:00"),
    ],
)
def test_the_iso_8601_forms_that_are_accepted(text, expected):
    from service import validation

    assert validation.timestamp(text, "start").isoformat() == expected


def test_an_upload_is_decoded_once(strict_client, monkeypatch):
    """validation.py opened each upload with PIL, then model/images.py opened it again (before: 2)."""
    opened = []
    real_open = PIL.Image.open

    def counting_open(*args, **kwargs):
        opened.append(1)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    r = strict_client.post("/gallery", files=upload([encoded("PNG")], ["one.png"]), data=GOOD, headers=INGEST)
    assert r.status_code == 200, r.text
    assert len(opened) == 1
