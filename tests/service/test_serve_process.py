"""`python -m reid serve` as a real process: how it stops.

A supervisor (systemd, docker stop, Kubernetes) sends SIGTERM and reads the exit status: a complete graceful
stop must exit 0, or the supervisor reports a crash.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, port: int, log: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, "reid serve exited:\n" + log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                if json.loads(response.read())["status"] == "ready":
                    return
        except (urllib.error.URLError, OSError):
            pass
        assert time.monotonic() < deadline, "not ready in time:\n" + log.read_text()
        time.sleep(0.5)


@pytest.mark.slow
def test_sigterm_after_a_graceful_stop_exits_zero(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REID_")}
    env.update(
        REID_DEV_MODE="true",
        REID_DATA_DIR=str(tmp_path / "data"),
        REID_DEVICE="cpu",
        PYTHONPATH=str(ROOT),
    )
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reid", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=out,
        )
        try:
            _wait_ready(proc, port, log)
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert "service stopped" in text, text  # the lifespan's shut-down ran to its end
    assert list((tmp_path / "data").rglob("*.faiss")), text  # ... and saved the index
    assert status == 0, f"exit status {status} after a graceful stop:\n{text}"


def test_serve_exits_nonzero_when_the_shutdown_did_not_complete(tmp_path, monkeypatch):
    """The exit status is the shut-down's outcome: uvicorn returning without the app's shut-down having run
    to its end (here: never started) is a failure."""
    import uvicorn

    from reid.cli import main as reid_main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    for name in list(os.environ):
        if name.startswith("REID_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    assert reid_main(["serve", "--dev", "--data-dir", str(tmp_path / "data"), "--port", "8765"]) == 1
    assert calls and calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8765
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again
