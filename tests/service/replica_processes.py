"""Real `reid serve` processes for the replica tests: one small checkpoint, one PostgreSQL database, one
shared data folder (images), each process on its own loopback port, stopped by its PID."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

from model import ModelMeta, RGAReID, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def small_checkpoint(path: Path) -> Path:
    """The tests' small network (variant none, 64 x 32, seed 0: the `embedder` fixture's weights) as a file."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = RGAReID("none", 0, (64, 32))
    return save_checkpoint(path, net, ModelMeta(variant="none", input_size=(64, 32)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def replica_env(weights: Path, data_dir: Path, database_url: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REID_")}
    env.update(
        PYTHONPATH=str(ROOT),
        REID_DEV_MODE="true",
        REID_WEIGHTS=str(weights),
        REID_DATA_DIR=str(data_dir),
        REID_DATABASE_URL=database_url,
        REID_DEVICE="cpu",
        REID_BATCH_WAIT_MS="2",
        REID_VISITOR_THRESHOLD="0.9995",
        REID_VISITOR_HORIZON_S="3600",
        REID_REPLICA_POLL_S="0.2",
    )
    env.update(overrides)
    return env


class Replica:
    """One `python -m reid serve` on 127.0.0.1; its log in `log`."""

    def __init__(self, name: str, env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"{name}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reid", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=folder,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        # the dev admin key passes every role check (ingest, search, admin)
        self.http = httpx.Client(base_url=self.url, timeout=60, headers={"X-API-Key": "dev-admin-key"})

    def wait_ready(self, timeout_s: float = 240) -> Replica:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.log.read_text()[-4000:]}"
            try:
                if self.http.get("/readyz", timeout=5).json().get("status") == "ready":
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            assert time.monotonic() < deadline, f"{self.name} not ready:\n{self.log.read_text()[-4000:]}"
            time.sleep(0.2)

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of GET /metrics/service (this process's own exposition); 0 when absent."""
        text = self.http.get("/metrics/service").text
        pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
        found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
