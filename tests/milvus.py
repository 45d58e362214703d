"""A throwaway Milvus server for the tests: the PyPI ``milvus`` package's real binaries (standalone mode with
embedded etcd and local storage) on 127.0.0.1, every port free-picked, in a temporary folder.

The package's own launcher (``milvus-server``) leaves the embedded etcd on its default ports 2379/2380, so two
servers on one machine (two test runs, two worktrees) would collide; here etcd gets its own free ports through
an embedded-etcd config file (``ETCD_CONFIG_PATH``). The server is stopped by its PID at the end (SIGTERM, then
SIGKILL) and its folder removed.

Configuration: the overrides the deployment gives Milvus (docker/milvus-user.yaml: segment sizing, time tick) apply
here too, except the time tick (20 ms here, see ``start``), so the tests and benchmarks run the production layout;
``MilvusServer(overrides={...})`` adds or replaces dotted milvus.yaml keys (only keys present in the package's
milvus.yaml take effect: its launcher rewrites existing lines). Without the package the tests that need it are skipped, except under CI=1
(the CI machine installs the dev extra, which has it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from itertools import count
from pathlib import Path

import yaml

DEPLOYMENT_OVERRIDES = Path(__file__).resolve().parents[1] / "docker" / "milvus-user.yaml"
START_TIMEOUT_S = 180.0  # the first start on a machine unpacks ~400 MB of binaries; later ones ~10 s


def package_present() -> bool:
    try:
        import milvus  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError:
        return False
    return True


def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _binaries() -> Path:
    """The package's binaries, unpacked once per version into the user's cache (about 400 MB, 15-20 s),
    under a file lock so that two test runs starting together unpack them once."""
    import fcntl

    import milvus

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reid-tests"
    folder = cache / f"milvus-{milvus.__version__}"
    folder.mkdir(parents=True, exist_ok=True)
    with (cache / f"milvus-{milvus.__version__}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        milvus._initialize_data_files(str(folder))  # skips files whose checksum already matches
    return folder / "bin" / "milvus"


def deployment_overrides() -> dict[str, object]:
    """docker/milvus-user.yaml as dotted keys (``{"dataCoord.segment.maxSize": 2048, ...}``)."""
    flat: dict[str, object] = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            flat[prefix] = node

    walk("", yaml.safe_load(DEPLOYMENT_OVERRIDES.read_text()) or {})
    return flat


def check_applied(config_file: Path, overrides: dict[str, object]) -> None:
    """ValueError naming the overrides the written milvus.yaml does not hold (a key this Milvus version does not
    have is silently dropped by the package's launcher: never guess a key)."""
    written = yaml.safe_load(config_file.read_text())
    missing = []
    for key, value in overrides.items():
        node = written
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None or str(node) != str(value):
            missing.append(f"{key}={value} (written: {node!r})")
    if missing:
        raise ValueError(f"Milvus config keys not applied (not in this version's milvus.yaml?): {missing}")


class MilvusServer:
    """``start()`` brings one Milvus standalone up; ``uri`` is its gRPC address; ``collection()`` a fresh name."""

    def __init__(self, root: Path | None = None, overrides: dict[str, object] | None = None) -> None:
        # Every Strong-consistency call waits for the next time tick: 200 ms by default, 20 ms here so that a
        # test's many small writes and searches do not each wait 0.2 s (a production server keeps 200 ms).
        tests_own = {"proxy.timeTickInterval": 20, "common.gracefulStopTimeout": 2}
        self.overrides = {**deployment_overrides(), **tests_own, **(overrides or {})}
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="reid-milvus-"))
        self.pid: int | None = None
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.health_port: int | None = None
        self.started_in_s: float | None = None
        self._names = count()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def collection(self) -> str:
        """A collection name no other test of this run uses."""
        return f"t{os.getpid()}_{next(self._names)}"

    def start(self) -> MilvusServer:
        from milvus import MilvusServerConfig

        began = time.monotonic()
        config = MilvusServerConfig(data_dir=str(self.root))
        keys = [key for key in config.configurable_items if key.endswith("_port")]
        ports = _free_ports(len(keys) + 3)
        for key, port in zip(keys, ports, strict=False):
            config.set(key, port)
        etcd_peer, self.health_port = ports[len(keys)], ports[len(keys) + 1]
        for key, value in self.overrides.items():
            config.set(key, value)
        config.resolve()  # writes configs/milvus.yaml with those ports, data and log folders under root
        check_applied(self.root / "configs" / "milvus.yaml", self.overrides)
        binary = _binaries()
        self.port = int(config.get("proxy_port"))
        etcd_client = int(config.get("etcd_port"))
        embed_etcd = self.root / "configs" / "embedEtcd.yaml"
        embed_etcd.write_text(
            f"listen-client-urls: http://127.0.0.1:{etcd_client}\n"
            f"advertise-client-urls: http://127.0.0.1:{etcd_client}\n"
            f"listen-peer-urls: http://127.0.0.1:{etcd_peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{etcd_peer}\n"
            f"initial-cluster: default=http://127.0.0.1:{etcd_peer}\n"
        )
        env = dict(os.environ)
        env.update(
            DEPLOY_MODE="STANDALONE",
            METRICS_PORT=str(self.health_port),
            MILVUS_RUN_DIR=str(self.root / "run"),
            ETCD_CONFIG_PATH=str(embed_etcd),
            MILVUSCONF=str(self.root / "configs"),
            LD_LIBRARY_PATH=f"{binary.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        )
        log = (self.root / "logs" / "milvus-stdout.log").open("wb")
        try:
            self.process = subprocess.Popen(
                [str(binary), "run", "standalone"],
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self.pid = self.process.pid
        try:
            self._wait_healthy(began + START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - began
        return self

    def _wait_healthy(self, deadline: float) -> None:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"milvus exited with {self.process.returncode}; logs in {self.root / 'logs'}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if b"OK" in response.read():
                        break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise TimeoutError(f"milvus did not become healthy in {START_TIMEOUT_S} s")
        from pymilvus import MilvusClient

        while time.monotonic() < deadline:  # healthy is not yet serving: wait for a real call to answer
            try:
                MilvusClient(uri=self.uri, timeout=5).list_collections()
                return
            except Exception:
                time.sleep(0.3)
        raise TimeoutError(f"milvus did not answer in {START_TIMEOUT_S} s")

    def rss_mb(self) -> float | None:
        """Resident memory of the server process (MB), for reports."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except (OSError, TypeError):
            return None
        return None

    def stop(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                deadline = time.monotonic() + 2  # throwaway data: Milvus 2.3 takes >30 s to stop cleanly
                while time.monotonic() < deadline and self.process.poll() is None:
                    time.sleep(0.05)
                if self.process.poll() is None:
                    os.kill(self.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
            self.pid = None
        shutil.rmtree(self.root, ignore_errors=True)


class CollectionPool:
    """Collection names for tests: a fresh name, or one a finished test gave back, emptied (a delete of every
    row takes ~0.2 s where creating and loading a collection takes 2-3 s). A test's store opens the named
    collection as it finds it (creating it when missing), so a reused one must hold the same dim: the
    service tests all use the session's one network."""

    def __init__(self, server: MilvusServer) -> None:
        self.server = server
        self.free: list[str] = []

    def take(self) -> str:
        return self.free.pop() if self.free else self.server.collection()

    def give_back(self, name: str) -> None:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=self.server.uri, timeout=30)  # not closed: pymilvus shares the connection
        try:
            if not client.has_collection(name):
                return
            client.delete(name, filter="id >= 0 or id < 0")
            rows = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
            if rows and int(rows[0]["count(*)"]) == 0:
                self.free.append(name)
            else:
                client.drop_collection(name)
        except Exception:  # a broken collection is not reused
            with contextlib.suppress(Exception):
                client.drop_collection(name)


def drop_collection(server: MilvusServer, name: str) -> None:
    """Drop a test's collection if it exists (a server already gone is ignored)."""
    from pymilvus import MilvusClient

    with contextlib.suppress(Exception):
        client = MilvusClient(uri=server.uri, timeout=30)  # not closed: pymilvus shares the connection
        if client.has_collection(name):
            client.drop_collection(name)
