"""`reid serve` start-up: what can fail is one line with what to do, a hint when no API key exists, and the
INFO chatter of faiss and alembic hidden unless --verbose."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import uvicorn

from model import ModelMeta, build_model, save_checkpoint
from reid.cli import main

SECRET = "ops:admin:a-long-enough-secret-0123456789"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def weights(tmp_path) -> Path:
    path = tmp_path / "w.pt"
    save_checkpoint(path, build_model("none", input_size=(64, 32)), ModelMeta(variant="none", input_size=(64, 32)))
    return path


@pytest.fixture
def served(monkeypatch):
    """uvicorn.run replaced: records the app it would serve instead of serving it."""
    calls = []

    def run(app, **kwargs):
        calls.append((app, kwargs))
        app.state.stopped_cleanly = True

    monkeypatch.setattr(uvicorn, "run", run)
    return calls


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("REID_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env from the checkout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(capsys, *args) -> tuple[int, str]:
    code = main(["serve", *args])
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("reid serve: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_weights_file(tmp_path, capsys, served, monkeypatch):
    monkeypatch.setenv("REID_API_KEYS", SECRET)
    code, err = _serve(capsys, "--weights", str(tmp_path / "nope.pt"), "--data-dir", str(tmp_path / "d"), "--port", str(free_port()))
    line = _one_error_line(err)
    assert code == 2 and not served
    assert "weights file not found" in line and "nope.pt" in line and "--weights FILE" in line


def test_corrupt_weights_file(tmp_path, capsys, served, monkeypatch):
    monkeypatch.setenv("REID_API_KEYS", SECRET)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04 definitely not a checkpoint")
    code, err = _serve(capsys, "--weights", str(corrupt), "--data-dir", str(tmp_path / "d"), "--port", str(free_port()))
    line = _one_error_line(err)
    assert code == 2 and not served
    assert "damaged, truncated or not a PyTorch checkpoint" in line and "reid train" in line


def test_port_taken(tmp_path, capsys, served):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = _serve(capsys, "--dev", "--port", str(port), "--data-dir", str(tmp_path / "d"))
    line = _one_error_line(err)
    assert code == 2 and not served
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port N" in line


def test_database_unreachable(tmp_path, capsys, served, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a folder should be")
    monkeypatch.setenv("REID_DATABASE_URL", f"sqlite:///{blocker}/reid.db")
    code, err = _serve(capsys, "--dev", "--port", str(free_port()), "--data-dir", str(tmp_path / "d"))
    line = _one_error_line(err)
    assert code == 2 and not served
    assert "cannot open the database sqlite:///" in line and "REID_DATABASE_URL" in line


def test_database_password_is_not_printed(tmp_path, capsys, served, monkeypatch):
    monkeypatch.setenv("REID_DATABASE_URL", "postgresql+nosuchdriver://ops:hunter2-secret@127.0.0.1:1/reid")
    code, err = _serve(capsys, "--dev", "--port", str(free_port()), "--data-dir", str(tmp_path / "d"))
    line = _one_error_line(err)
    assert code == 2 and "hunter2-secret" not in err and "cannot open the database" in line


def test_no_api_key_hint(tmp_path, capsys, served, weights, caplog):
    data = tmp_path / "d"
    with caplog.at_level(logging.WARNING, logger="service.cli"):
        code, _ = _serve(capsys, "--weights", str(weights), "--data-dir", str(data), "--port", str(free_port()))
    assert code == 0 and len(served) == 1  # it starts (health checks work) but says why requests fail
    hints = [r.getMessage() for r in caplog.records if "no API key exists" in r.getMessage()]
    assert len(hints) == 1 and "reid keys create" in hints[0]

    caplog.clear()
    assert main(["keys", "create", "ops", "--role", "admin", "--data-dir", str(data)]) == 0
    with caplog.at_level(logging.WARNING, logger="service.cli"):
        code, _ = _serve(capsys, "--weights", str(weights), "--data-dir", str(data), "--port", str(free_port()))
    assert code == 0 and len(served) == 2
    assert not [r for r in caplog.records if "no API key exists" in r.getMessage()]


def _run_reid(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("REID_")}
    done = subprocess.run(
        [sys.executable, "-m", "reid", *args], capture_output=True, text=True, env=env, timeout=300, check=True
    )
    return done.stderr


@pytest.mark.slow
def test_faiss_and_alembic_info_lines_only_with_verbose(tmp_path):
    # `reid purge` migrates the database (alembic) and opens the saved index (imports faiss)
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "gallery.faiss").write_bytes(b"unreadable: the service rebuilds it")
    quiet = _run_reid("purge", "--older-than-days", "1", "--data-dir", str(tmp_path))
    assert " faiss.loader:" not in quiet and " alembic." not in quiet
    assert "service.db" in quiet  # our own INFO lines stay
    verbose = _run_reid("-v", "purge", "--older-than-days", "1", "--data-dir", str(tmp_path))
    assert "INFO faiss.loader" in verbose and "INFO alembic.runtime.migration" in verbose
