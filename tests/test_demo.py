"""`reid demo` end to end on the small synthetic preset: dataset -> service -> ingest -> search -> footfall.

Random weights keep it fast; what is checked is that every step runs over real HTTP, that the printed
summary carries the search and footfall results, and that a second run reuses what the first made.
"""

from __future__ import annotations

import re
import time

import pytest

from reid.cli import main

pytestmark = pytest.mark.slow


def run_demo(tmp_path, capsys) -> tuple[str, float]:
    start = time.monotonic()
    code = main(
        ["demo", "--data", str(tmp_path), "--preset", "small", "--random-init", "--no-serve", "--port", "0",
         "--video-preset", "store-video-small"]
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert code == 0
    return capsys.readouterr().out, elapsed


def test_demo_runs_every_step_and_a_second_run_reuses_them(tmp_path, capsys):
    out, _ = run_demo(tmp_path, capsys)

    match = re.search(r"(\d+) of the top (\d+) are the right person", out)
    assert match, out
    assert int(match.group(2)) == 10
    rows = re.findall(r"^\s+\d+\s+-?\d\.\d{3}\s+cam\d\s+\S+\s+(yes|no)$", out, flags=re.M)
    assert len(rows) == 10
    assert rows.count("yes") == int(match.group(1))

    visitors = re.search(r"Unique visitors over the day: (\d+) counted by re-ID, (\d+) in truth", out)
    assert visitors, out
    assert int(visitors.group(1)) > 0 and int(visitors.group(2)) > 0
    assert "Console: http://127.0.0.1:" in out
    assert (tmp_path / "small" / "bounding_box_test").is_dir()
    assert any((tmp_path / "service").iterdir())

    # Second run: the dataset is not regenerated and the gallery is not stored twice.
    out2, _ = run_demo(tmp_path, capsys)
    sightings = re.search(r"(\d+) sightings", out).group(1)
    assert re.search(r"(\d+) sightings", out2).group(1) == sightings

    # Every run, not only the first, says what the model is worth: here random weights, at chance.
    for text in (out, out2):
        assert "random weights (--random-init), never trained" in text
        measured = re.search(r"mAP:\s+(\d\.\d{3}) on (\d+) synthetic query photos .*\(chance: (\d\.\d{3})\)", text)
        assert measured, text
        assert int(measured.group(2)) > 0
        assert "health:  COLLAPSED" in text
        assert "VERDICT: AT CHANCE" in text
        assert "this visitor count is not a measurement of footfall" in text
    assert re.search(r"mAP:.*", out).group(0) == re.search(r"mAP:.*", out2).group(0)  # same model, same number

    # The camera step: a rendered store video through detection and tracking into the service
    for text in (out, out2):
        cameras = re.findall(r"^ (cam\d)\s+(\d+)\s+(\d+)\s+[+-]\d+\.\d%$", text, flags=re.M)
        assert [c[0] for c in cameras] == ["cam1", "cam2"], text
        for _, tracks, passes in cameras:
            assert int(passes) == 4 and 1 <= int(tracks) <= 6  # motion detection and tracking of 4 walkers
        linked = re.search(r"Visitors over the 2 cameras: (\d+) counted .*, (\d+) in truth", text)
        assert (
            linked and 1 <= int(linked.group(1)) <= sum(int(c[1]) for c in cameras) and linked.group(2) == "4"
        )
        assert "linking tracks across cameras is not measured here" in text
    assert re.findall(r"^ cam\d.*$", out, flags=re.M) == re.findall(r"^ cam\d.*$", out2, flags=re.M)
    assert (tmp_path / "store-video-small" / "ground_truth.json").is_file()


def test_at_chance_rule():
    from reid.demo import at_chance

    assert at_chance(0.05, 0.05) and at_chance(0.10, 0.05)  # 5 points above chance of 95 possible
    assert not at_chance(0.30, 0.05)
    assert at_chance(0.70, 0.68) and not at_chance(0.80, 0.68)


def test_a_taken_port_is_a_clear_error(tmp_path, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["demo", "--data", str(tmp_path), "--preset", "small", "--random-init", "--no-serve",
                     "--port", str(port)])  # fmt: skip
    assert code == 2
    assert f"could not start on 127.0.0.1:{port}" in capsys.readouterr().err
