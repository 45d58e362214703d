"""The operator console (service/static) in a real browser against a live service."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        raise
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)

from .live_service import ADMIN_KEY, DAY, INGEST_KEY, SCREENSHOTS, person_image

pytestmark = pytest.mark.slow


def use_key(console, key: str) -> None:
    console.get_by_test_id("api-key").fill(key)
    console.get_by_test_id("save-key").click()


def test_upload_shows_results_and_a_hit_searches_from_itself(console, live_service, tmp_path):
    use_key(console, ADMIN_KEY)
    expect(console.get_by_test_id("key-status")).to_have_text("Key accepted")
    query = tmp_path / "query.png"
    query.write_bytes(person_image(2, 99))
    console.get_by_test_id("search-top-k").fill("5")
    console.get_by_test_id("search-files").set_input_files(str(query))
    console.get_by_test_id("search-submit").click()

    hits = console.get_by_test_id("hit")
    expect(hits).to_have_count(5)
    with live_service.client() as client:
        expected = client.post(
            "/search", files=[("files", ("query.png", query.read_bytes(), "image/png"))], data={"top_k": "5"}
        ).json()["hits"]
    shown_ids = [int(x) for x in hits.evaluate_all("els => els.map(e => e.dataset.id)")]
    assert shown_ids == [hit["id"] for hit in expected]
    shown_scores = [float(s) for s in console.get_by_test_id("hit-score").all_inner_texts()]
    assert shown_scores == pytest.approx([hit["score"] for hit in expected], abs=1e-3)
    assert console.get_by_test_id("hit-camera").all_inner_texts() == [hit["camera_id"] for hit in expected]
    # thumbnails come through fetch + blob: URLs (the key is a header)
    console.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=hit] img')]"
        ".every(img => img.complete && img.naturalWidth > 0 && img.src.startsWith('blob:'))"
    )

    # "Search from this" on the third hit searches from that gallery item (same hits as the API gives)
    third = shown_ids[2]
    hits.nth(2).get_by_test_id("search-from").click()
    expect(console.get_by_test_id("search-gallery-id")).to_have_value(str(third))
    expect(console.get_by_test_id("search-summary")).to_contain_text(f"gallery item {third}")
    with live_service.client() as client:
        expected = client.post("/search", data={"gallery_id": str(third), "top_k": "5"}).json()["hits"]
    expect(hits.first).to_have_attribute("data-id", str(expected[0]["id"]))
    shown_ids = [int(x) for x in hits.evaluate_all("els => els.map(e => e.dataset.id)")]
    assert shown_ids == [hit["id"] for hit in expected]
    shown_scores = [float(s) for s in console.get_by_test_id("hit-score").all_inner_texts()]
    assert shown_scores == pytest.approx([hit["score"] for hit in expected], abs=1e-3)


def test_camera_filter_limits_results(console, live_service):
    use_key(console, ADMIN_KEY)
    expect(console.get_by_test_id("key-status")).to_have_text("Key accepted")
    start_id = live_service.items[0]["id"]
    console.get_by_test_id("search-cameras").get_by_label("checkout").check()
    console.get_by_test_id("search-gallery-id").fill(str(start_id))
    console.get_by_test_id("search-submit").click()
    expect(console.get_by_test_id("search-summary")).to_contain_text("hit")
    cameras = set(console.get_by_test_id("hit-camera").all_inner_texts())
    assert cameras == {"checkout"}


def test_footfall_chart_shows_the_metrics(console, live_service):
    use_key(console, ADMIN_KEY)
    expect(console.get_by_test_id("key-status")).to_have_text("Key accepted")
    console.get_by_test_id("tab-footfall").click()
    start, end = DAY + timedelta(hours=8), DAY + timedelta(hours=13)
    console.get_by_test_id("footfall-start").fill(start.strftime("%Y-%m-%dT%H:%M:%S"))
    console.get_by_test_id("footfall-end").fill(end.strftime("%Y-%m-%dT%H:%M:%S"))
    console.get_by_test_id("footfall-bucket").fill("30m")
    console.get_by_test_id("footfall-submit").click()
    expect(console.get_by_test_id("footfall-svg")).to_be_visible()

    with live_service.client() as client:
        metrics = client.get(
            "/metrics", params={"start": start.isoformat(), "end": end.isoformat(), "bucket": "30m"}
        ).json()
    series = metrics["series"]  # sparse: only the cells with sightings
    buckets = [b["bucket_start"] for b in metrics["totals"]["by_bucket"]]
    assert len(buckets) == 10  # 5 h of 30 min buckets
    assert 0 < len(series) < 10 * len(metrics["cameras"])  # some cells are empty in this scenario
    assert metrics["totals"]["unique_visitors"] > 1

    # one chart point per bucket and camera (a cell without a series row is 0), carrying the same number
    points = console.get_by_test_id("point").evaluate_all(
        "els => els.map(e => [e.dataset.camera, e.dataset.bucket, Number(e.dataset.value)])"
    )
    dense = {(camera, bucket): 0 for camera in metrics["cameras"] for bucket in buckets}
    dense.update({(r["camera_id"], r["bucket_start"]): r["unique_visitors"] for r in series})
    assert sorted(points) == sorted([camera, bucket, value] for (camera, bucket), value in dense.items())
    assert console.get_by_test_id("series").count() == len(metrics["cameras"])

    # the table: a row per bucket, a cell per camera, and the all-camera unique count
    rows = console.get_by_test_id("footfall-row")
    expect(rows).to_have_count(10)
    table = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        bucket = row.get_attribute("data-bucket")
        for cell in row.get_by_test_id("cell").all():
            table[(cell.get_attribute("data-camera"), bucket)] = int(cell.inner_text())
        table[("*", bucket)] = int(row.get_by_test_id("cell-all").inner_text())
    expected = dict(dense)
    expected.update({("*", b["bucket_start"]): b["unique_visitors"] for b in metrics["totals"]["by_bucket"]})
    assert table == expected

    totals = metrics["totals"]
    expect(console.get_by_test_id("total-unique")).to_have_text(str(totals["unique_visitors"]))
    expect(console.get_by_test_id("total-sightings")).to_have_text(str(totals["sightings"]))
    for camera, numbers in totals["by_camera"].items():
        cell = console.locator(f'[data-testid="total-cell"][data-camera="{camera}"]')
        expect(cell).to_have_text(str(numbers["unique_visitors"]))


def test_bad_footfall_window_shows_the_api_message(console, live_service):
    use_key(console, ADMIN_KEY)
    expect(console.get_by_test_id("key-status")).to_have_text("Key accepted")
    console.get_by_test_id("tab-footfall").click()
    console.get_by_test_id("footfall-start").fill("2026-11-02T08:00:00")
    console.get_by_test_id("footfall-end").fill("2026-11-02T07:00:00")  # end before start
    console.get_by_test_id("footfall-submit").click()
    with live_service.client() as client:
        response = client.get(
            "/metrics", params={"start": "2026-11-02T08:00:00", "end": "2026-11-02T07:00:00", "bucket": "1h"}
        )
    assert response.status_code == 422
    expect(console.get_by_test_id("footfall-error")).to_contain_text(response.json()["error"]["message"])


def test_bad_upload_shows_an_error(console, live_service, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    use_key(console, INGEST_KEY)
    expect(console.get_by_test_id("key-status")).to_contain_text("Key accepted")
    with live_service.client() as client:
        before = client.get("/gallery", params={"limit": 1}).json()["total"]

    console.get_by_test_id("tab-ingest").click()
    console.get_by_test_id("ingest-files").set_input_files(str(notes))
    console.get_by_test_id("ingest-camera").fill("entrance")
    console.get_by_test_id("ingest-captured-at").fill("2026-11-02T10:00:00")
    console.get_by_test_id("ingest-submit").click()

    error = console.get_by_test_id("ingest-error")
    expect(error).to_be_visible()
    row = console.get_by_test_id("ingest-row")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-status", "error")
    expect(row).to_contain_text("notes.txt")
    with live_service.client() as client:
        response = client.post(
            "/gallery",
            files=[("files", ("notes.txt", b"not a photo\n", "text/plain"))],
            data={"camera_id": "entrance", "captured_at": "2026-11-02T10:00:00"},
        )
        assert response.status_code in (413, 422)
        expect(error).to_contain_text(response.json()["error"]["message"])
        assert client.get("/gallery", params={"limit": 1}).json()["total"] == before  # nothing stored

    # the same file as a search query
    use_key(console, ADMIN_KEY)
    console.get_by_test_id("tab-search").click()
    console.get_by_test_id("search-files").set_input_files(str(notes))
    console.get_by_test_id("search-submit").click()
    with live_service.client() as client:
        response = client.post("/search", files=[("files", ("notes.txt", b"not a photo\n", "text/plain"))])
    assert response.status_code == 422
    expect(console.get_by_test_id("search-error")).to_have_text(response.json()["error"]["message"])
    expect(console.get_by_test_id("hit")).to_have_count(0)


def test_upload_through_the_console_adds_photos(console, live_service, tmp_path):
    paths = []
    for variant in range(2):
        path = tmp_path / f"visitor_{variant}.png"
        path.write_bytes(person_image(40, 500 + variant))
        paths.append(str(path))
    use_key(console, ADMIN_KEY)
    console.get_by_test_id("tab-ingest").click()
    console.get_by_test_id("ingest-files").set_input_files(paths)
    console.get_by_test_id("ingest-camera").fill("side-door")
    console.get_by_test_id("ingest-captured-at").fill("2026-11-02T15:30:00")
    console.get_by_test_id("ingest-submit").click()
    rows = console.get_by_test_id("ingest-row")
    expect(rows).to_have_count(2)
    expect(console.get_by_test_id("ingest-summary")).to_contain_text("2 added")
    ids = [int(t) for t in rows.locator("td:nth-child(3)").all_inner_texts()]
    with live_service.client() as client:
        for item_id in ids:
            item = client.get(f"/gallery/{item_id}").json()
            assert item["camera_id"] == "side-door"
            assert item["captured_at"].startswith("2026-11-02T15:30:00")
    # uploading the same photos again reports them as already there
    console.get_by_test_id("ingest-files").set_input_files(paths)
    console.get_by_test_id("ingest-submit").click()
    expect(console.get_by_test_id("ingest-summary")).to_contain_text("2 already in the gallery")


def test_wrong_key_is_refused(console, live_service, tmp_path):
    use_key(console, "not-a-real-key-0123456789")
    expect(console.get_by_test_id("key-status")).to_contain_text("Key refused")
    query = tmp_path / "query.png"
    query.write_bytes(person_image(1, 7))
    console.get_by_test_id("search-files").set_input_files(str(query))
    console.get_by_test_id("search-submit").click()
    error = console.get_by_test_id("search-error")
    expect(error).to_contain_text("The API key was refused")
    expect(console.get_by_test_id("hit")).to_have_count(0)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    console.screenshot(path=str(SCREENSHOTS / "wrong_key_refused.png"), full_page=True)
    # the key is remembered across reloads, and replacing it with a good one works
    console.reload()
    expect(console.get_by_test_id("api-key")).to_have_value("not-a-real-key-0123456789")
    use_key(console, ADMIN_KEY)
    expect(console.get_by_test_id("key-status")).to_have_text("Key accepted")


def test_browse_gallery_and_search_from_an_item(console, live_service):
    use_key(console, ADMIN_KEY)
    expect(console.get_by_test_id("key-status")).to_have_text("Key accepted")
    console.get_by_test_id("search-cameras").get_by_label("aisle-3").check()
    console.get_by_test_id("gallery-browse").click()
    with live_service.client() as client:
        listing = client.get("/gallery", params={"camera_id": "aisle-3", "limit": 48}).json()
    items = console.get_by_test_id("gallery-item")
    expect(items).to_have_count(len(listing["items"]))
    assert [int(x) for x in items.evaluate_all("els => els.map(e => e.dataset.id)")] == [
        item["id"] for item in listing["items"]
    ]
    expect(console.get_by_test_id("gallery-summary")).to_contain_text(f"of {listing['total']}.")
    chosen = listing["items"][0]["id"]
    items.first.get_by_test_id("search-from").click()
    expect(console.get_by_test_id("search-gallery-id")).to_have_value(str(chosen))
    expect(console.get_by_test_id("search-summary")).to_contain_text(f"gallery item {chosen}")
    hits = console.get_by_test_id("results").get_by_test_id("hit")
    expect(hits.first).to_be_visible()
    with live_service.client() as client:
        expected = client.post(
            "/search", data={"gallery_id": str(chosen), "camera_id": "aisle-3", "top_k": "20"}
        ).json()["hits"]
    assert [int(x) for x in hits.evaluate_all("els => els.map(e => e.dataset.id)")] == [
        h["id"] for h in expected
    ]
    assert {h["camera_id"] for h in expected} == {"aisle-3"}


def test_banner_warns_about_random_weights_and_dev_keys(console, live_service):
    # before any key is given: /readyz needs none, and the operator must see this first
    banner = console.get_by_test_id("trust-banner")
    expect(banner).to_be_visible()
    with live_service.client() as client:
        ready = client.get("/readyz").json()
    codes = [w["code"] for w in ready["warnings"]]
    assert codes == ["random_weights", "dev_keys"]
    warnings = console.get_by_test_id("trust-warning")
    expect(warnings).to_have_count(len(codes))
    assert warnings.evaluate_all("els => els.map(e => e.dataset.code)") == codes
    expect(warnings.first).to_contain_text("RANDOM weights")
    expect(warnings.nth(1)).to_contain_text("reid keys create")


def _hit_ids(console) -> list[int]:
    return [int(x) for x in console.get_by_test_id("hit").evaluate_all("els => els.map(e => e.dataset.id)")]


def test_lost_child_workflow(console, live_service, tmp_path):
    """Query beside the results, a detail view, verdicts, searching again from the confirmed set, and where
    the person was seen (per camera, latest first, the last sighting highlighted)."""
    use_key(console, ADMIN_KEY)
    expect(console.get_by_test_id("key-status")).to_have_text("Key accepted")
    query = tmp_path / "lost_child.png"
    query.write_bytes(person_image(2, 77))
    console.get_by_test_id("search-top-k").fill("8")
    console.get_by_test_id("search-files").set_input_files(str(query))
    console.get_by_test_id("search-submit").click()
    hits = console.get_by_test_id("hit")
    expect(hits).to_have_count(8)

    # the query photo is shown beside the results
    strip = console.get_by_test_id("query-item")
    expect(strip).to_have_count(1)
    expect(strip.first).to_have_attribute("data-kind", "photo")
    console.wait_for_function(
        "() => document.querySelector('[data-testid=query-item] img').naturalWidth === 64"
    )

    # the detail view: full image, camera, time, visitor, track
    ids = _hit_ids(console)
    with live_service.client() as client:
        item = client.get(f"/gallery/{ids[0]}").json()
    hits.first.get_by_test_id("open-detail").click()
    detail = console.get_by_test_id("detail")
    expect(detail).to_be_visible()
    expect(console.get_by_test_id("detail-camera")).to_have_text(item["camera_id"])
    expect(console.get_by_test_id("detail-time")).to_contain_text(item["captured_at"][:10])
    expect(console.get_by_test_id("detail-visitor")).to_have_text(str(item["visitor_id"]))
    expect(console.get_by_test_id("detail-track")).to_have_text(item["external_ref"] or "—")
    console.wait_for_function(
        "w => document.querySelector('[data-testid=detail-image]').naturalWidth === w", arg=item["width"]
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    console.screenshot(path=str(SCREENSHOTS / "lost_child_detail_view.png"), full_page=True)
    # a verdict given in the detail view shows on the result card
    detail.get_by_test_id("confirm-hit").click()
    console.get_by_test_id("detail-close").click()
    expect(detail).to_be_hidden()
    expect(hits.first).to_have_attribute("data-verdict", "same")

    # confirm one more, rule one out
    hits.nth(1).get_by_test_id("confirm-hit").click()
    hits.nth(2).get_by_test_id("reject-hit").click()
    expect(hits.nth(2)).to_have_attribute("data-verdict", "other")
    expect(console.get_by_test_id("confirmed-count")).to_have_text("2")

    # where was this person seen: from the confirmed sightings, grouped per camera, latest first
    with live_service.client() as client:
        confirmed = [client.get(f"/gallery/{i}").json() for i in ids[:2]]
    latest = max(confirmed, key=lambda c: c["captured_at"])
    expect(console.get_by_test_id("sightings")).to_be_visible()
    expect(console.get_by_test_id("sighting-mark")).to_have_count(2)
    last = console.get_by_test_id("last-sighting")
    expect(last).to_have_count(1)
    expect(last).to_have_attribute("data-id", str(latest["id"]))
    expect(console.get_by_test_id("last-seen")).to_contain_text(f"camera {latest['camera_id']}")
    groups = console.get_by_test_id("sighting-group").evaluate_all("els => els.map(e => e.dataset.camera)")
    by_camera = {}
    for c in sorted(confirmed, key=lambda c: c["captured_at"], reverse=True):
        by_camera.setdefault(c["camera_id"], c)
    assert groups == list(by_camera)  # cameras ordered by their latest sighting
    console.screenshot(path=str(SCREENSHOTS / "lost_child_sightings.png"), full_page=True)

    # search again from the confirmed set (plus the photo): the same hits as the API gives
    console.get_by_test_id("search-confirmed").click()
    expect(console.get_by_test_id("query-item")).to_have_count(3)
    expect(console.get_by_test_id("search-summary")).to_contain_text("1 query photo and 2 gallery items")
    with live_service.client() as client:
        expected = client.post(
            "/search",
            files=[("files", ("lost_child.png", query.read_bytes(), "image/png"))],
            data={"gallery_id": [str(i) for i in ids[:2]], "top_k": "8"},
        ).json()["hits"]
    expect(hits.first).to_have_attribute("data-id", str(expected[0]["id"]))
    assert _hit_ids(console) == [h["id"] for h in expected]
    assert not set(ids[:2]) & set(_hit_ids(console))


def test_gallery_pages(console, live_service):
    day = DAY + timedelta(days=3)
    with live_service.client(INGEST_KEY) as client:
        for batch in range(2):
            files = [
                ("files", (f"page{batch}_{i}.png", person_image(60 + i, batch), "image/png"))
                for i in range(30)
            ]
            at = (day + timedelta(minutes=batch)).isoformat()
            response = client.post(
                "/gallery", files=files, data={"camera_id": "paging-cam", "captured_at": at}
            )
            assert response.status_code == 200, response.text
    with live_service.client() as client:
        total = client.get("/gallery", params={"camera_id": "paging-cam", "limit": 1}).json()["total"]
        pages = [
            client.get("/gallery", params={"camera_id": "paging-cam", "limit": 48, "offset": o}).json()[
                "items"
            ]
            for o in (0, 48)
        ]
    assert total == 60
    use_key(console, ADMIN_KEY)
    expect(console.get_by_test_id("key-status")).to_have_text("Key accepted")
    console.get_by_test_id("search-cameras").get_by_label("paging-cam").check()
    console.get_by_test_id("gallery-browse").click()
    items = console.get_by_test_id("gallery-item")
    expect(items).to_have_count(48)
    expect(console.get_by_test_id("gallery-summary")).to_have_text("Photos 1–48 of 60.")
    expect(console.get_by_test_id("gallery-prev")).to_be_disabled()
    assert [int(x) for x in items.evaluate_all("els => els.map(e => e.dataset.id)")] == [
        i["id"] for i in pages[0]
    ]
    console.get_by_test_id("gallery-next").click()
    expect(console.get_by_test_id("gallery-summary")).to_have_text("Photos 49–60 of 60.")
    expect(items).to_have_count(12)
    expect(console.get_by_test_id("gallery-next")).to_be_disabled()
    assert [int(x) for x in items.evaluate_all("els => els.map(e => e.dataset.id)")] == [
        i["id"] for i in pages[1]
    ]
    expect(console.get_by_test_id("gallery-page")).to_have_text("page 2 of 2")
    console.get_by_test_id("gallery-prev").click()
    expect(console.get_by_test_id("gallery-summary")).to_have_text("Photos 1–48 of 60.")


def test_live_watch_alerts_when_the_person_is_seen_again(console, live_service, tmp_path):
    use_key(console, ADMIN_KEY)
    expect(console.get_by_test_id("key-status")).to_have_text("Key accepted")
    query = tmp_path / "child.png"
    query.write_bytes(person_image(4, 300))
    console.get_by_test_id("search-files").set_input_files(str(query))
    console.get_by_test_id("search-submit").click()
    expect(console.get_by_test_id("hit").first).to_be_visible()
    console.get_by_test_id("watch-threshold").fill("0.99")
    console.get_by_test_id("watch-create").click()
    watch_row = console.get_by_test_id("watch")
    expect(watch_row).to_have_count(1)
    watch_id = int(watch_row.first.get_attribute("data-id"))
    expect(console.get_by_test_id("watch-alert")).to_have_count(0)
    console.wait_for_timeout(1000)  # the event stream is open

    with live_service.client(INGEST_KEY) as client:
        at = (DAY + timedelta(days=4, hours=10)).isoformat()
        response = client.post(
            "/gallery",
            files=[("files", ("seen_again.png", person_image(4, 301), "image/png"))],
            data={"camera_id": "checkout", "captured_at": at},
        )
        new_id = response.json()["items"][0]["id"]
    with live_service.client() as client:
        matches = client.get(f"/watches/{watch_id}/matches").json()["matches"]
    assert new_id in [m["item_id"] for m in matches]
    alert = console.locator(f'[data-testid="watch-alert"][data-item="{new_id}"]')
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("seen on camera checkout")
    assert int(console.evaluate("document.body.dataset.beeps")) >= 1  # the audible alert was sounded
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    console.screenshot(path=str(SCREENSHOTS / "live_watch_alert.png"), full_page=True)
    watch_row.first.get_by_test_id("watch-stop").click()
    expect(console.get_by_test_id("watch")).to_have_count(0)
    with live_service.client() as client:
        assert client.get(f"/watches/{watch_id}").json()["state"] == "deleted"


def test_footfall_opens_on_the_last_day_with_sightings_peak_and_csv(console, live_service, tmp_path):
    use_key(console, ADMIN_KEY)
    expect(console.get_by_test_id("key-status")).to_have_text("Key accepted")
    console.get_by_test_id("tab-footfall").click()  # no button pressed: it loads by itself
    expect(console.get_by_test_id("footfall-svg")).to_be_visible()
    start = console.get_by_test_id("footfall-start").input_value()
    end = console.get_by_test_id("footfall-end").input_value()
    with live_service.client() as client:
        cameras = client.get("/cameras").json()["cameras"]
        last = max(c["last_seen"] for c in cameras)
        params = {"start": start + "+00:00", "end": end + "+00:00", "bucket": "1h"}
        metrics = client.get("/metrics", params=params).json()
        csv_text = client.get("/metrics", params={**params, "format": "csv"}).text
    end_dt = datetime.fromisoformat(end + "+00:00")
    assert end_dt - datetime.fromisoformat(start + "+00:00") == timedelta(days=1)  # the last day
    assert end_dt - timedelta(hours=1) <= datetime.fromisoformat(last) < end_dt  # up to the latest sighting

    # sightings (all cameras) per bucket on the chart, the same numbers as the API
    points = console.get_by_test_id("sightings-point").evaluate_all(
        "els => els.map(e => [e.dataset.bucket, Number(e.dataset.value)])"
    )
    assert points == [[b["bucket_start"], b["sightings"]] for b in metrics["totals"]["by_bucket"]]
    # the peak hour: most unique visitors over all cameras
    peak = max(metrics["totals"]["by_bucket"], key=lambda b: b["unique_visitors"])
    expect(console.get_by_test_id("peak")).to_have_attribute("data-bucket", peak["bucket_start"])
    expect(console.get_by_test_id("footfall-peak")).to_contain_text(
        f"{peak['unique_visitors']} unique visitor"
    )
    # the chart uses the full width of its card
    chart_w = console.get_by_test_id("footfall-svg").bounding_box()["width"]
    card_w = console.get_by_test_id("footfall-chart").bounding_box()["width"]
    assert chart_w >= 0.98 * card_w and chart_w > 1000

    # CSV export: the file the API gives for this window
    with console.expect_download() as download_info:
        console.get_by_test_id("footfall-csv").click()
    download = download_info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert download.suggested_filename.startswith("footfall_") and saved.read_text() == csv_text
