"""GET /metrics?format=csv: the same numbers as the JSON answer, as a table."""

from __future__ import annotations

import csv
import io

from tests.service.service_fixtures import INGEST, SEARCH, identity_image, ingest


def test_csv_has_the_same_numbers_as_the_json(client):
    for identity, camera, hour in ((0, "door", 10), (0, "till", 10), (1, "door", 11), (2, "till", 12)):
        r = ingest(
            client,
            [identity_image(identity, hour)],
            camera_id=camera,
            captured_at=f"2026-11-20T{hour}:05:00Z",
        )
        assert r.status_code == 200, r.text
    params = {"start": "2026-11-20T09:00:00Z", "end": "2026-11-20T13:00:00Z", "bucket": "1h"}
    answer = client.get("/metrics", params=params, headers=SEARCH).json()
    r = client.get("/metrics", params={**params, "format": "csv"}, headers=SEARCH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="footfall_20261120T090000Z_20261120T130000Z_1h.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == ["bucket_start", "bucket_end", "camera_id", "sightings", "unique_visitors"]

    def numbers(row):
        return int(row["sightings"]), int(row["unique_visitors"])

    cells = {
        (row["bucket_start"], row["camera_id"]): numbers(row)
        for row in rows
        if (row["bucket_start"], row["bucket_end"]) != (answer["start"], answer["end"])
    }
    buckets = answer["totals"]["by_bucket"]
    assert len(rows) == len(buckets) * (len(answer["cameras"]) + 1) + len(answer["cameras"]) + 1
    for cell in answer["series"]:  # every non-empty cell
        assert cells[(cell["bucket_start"], cell["camera_id"])] == (
            cell["sightings"],
            cell["unique_visitors"],
        )
    sparse = {(c["bucket_start"], c["camera_id"]) for c in answer["series"]}
    for bucket in buckets:  # empty cells are zeros; the all-camera row is totals.by_bucket
        for camera in answer["cameras"]:
            if (bucket["bucket_start"], camera) not in sparse:
                assert cells[(bucket["bucket_start"], camera)] == (0, 0)
        assert cells[(bucket["bucket_start"], "")] == (bucket["sightings"], bucket["unique_visitors"])
    window = [
        row for row in rows if row["bucket_start"] == answer["start"] and row["bucket_end"] == answer["end"]
    ]
    by_camera = {row["camera_id"]: numbers(row) for row in window}
    for camera, counts in answer["totals"]["by_camera"].items():
        assert by_camera[camera] == (counts["sightings"], counts["unique_visitors"])
    assert by_camera[""] == (answer["totals"]["sightings"], answer["totals"]["unique_visitors"])
    assert answer["totals"]["sightings"] > 0 and len(answer["cameras"]) == 2


def test_csv_format_is_checked_and_needs_the_search_role(client):
    r = client.get("/metrics", params={"format": "xlsx"}, headers=SEARCH)
    assert r.status_code == 422 and r.json()["error"]["field"] == "format"
    assert client.get("/metrics", params={"format": "csv"}, headers=INGEST).status_code == 403
