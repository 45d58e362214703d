"""A source that ends before its end (a live camera gone for good, Ctrl-C or `docker stop` on a live
ingest): the people in view at that moment still count. Their tracks end there and are yielded, then
the error goes on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.video.replay import ReplayDetector
from tests.video.test_track_rules import GREEN_YELLOW, RED_BLUE, START, _dets, _draw
from video.errors import VideoError
from video.pipeline import track_source
from video.sources import Frame


def _two_walkers(stop_at: int, error: BaseException):
    """Two people walking apart for 40 frames at 10 fps; the source raises `error` before frame `stop_at`."""
    scenes, detections = [], []
    for i in range(40):
        a = [150 - 3 * i, 60, 180 - 3 * i, 160]
        b = [200 + 3 * i, 62, 230 + 3 * i, 162]
        scenes.append([(a, RED_BLUE), (b, GREEN_YELLOW)])
        detections.append(_dets([a, b]))

    def frames():
        for i, people in enumerate(scenes):
            if i == stop_at:
                raise error
            yield Frame(i, i / 10, START + timedelta(seconds=i / 10), _draw(people))

    tracks = track_source(
        frames(), camera_id="cam", source_key="k", detector=ReplayDetector(detections), fps=10
    )
    return tracks


@pytest.mark.parametrize(
    "error", [VideoError("rtsp://cam/1: stream unreachable after 5 attempts"), KeyboardInterrupt()]
)
def test_tracks_open_when_the_source_stops_are_yielded_before_the_error(error):
    tracks = _two_walkers(stop_at=25, error=error)
    got = []
    with pytest.raises(type(error)):
        for track in tracks:
            got.append(track)
    assert len(got) == 2  # both people were in view when the camera went away
    for track in got:
        assert len(track.boxes) == 25 and track.last_seen == START + timedelta(seconds=2.4)
        assert track.crops  # with their crops, ready to send


def test_the_same_walk_to_its_end_gives_the_same_two_tracks_longer():
    complete = list(_two_walkers(stop_at=-1, error=VideoError("unused")))
    assert len(complete) == 2 and all(len(t.boxes) == 40 for t in complete)
