"""Service benchmark over loopback: ingest images/s vs pure embedding, and search latency by gallery size.

    python -m bench.service                                   # CPU smoke: small network, small galleries
    python -m bench.service --variant rgasc --input-size 256 128 --sizes 10000 100000 --clients 8 --record
    python -m bench.service ... --json results.jsonl          # also one JSON line per measurement

1. Pure embedding: the embedder on the same JPEG bytes, in batches of the service's batch size.
2. Ingest: `--clients` concurrent HTTP clients post `--files-per-request` images at a time into an
   empty service; images/s and the overhead of HTTP + validation + database + index over (1).
3. Search: for each gallery size the database is bulk-loaded with random unit vectors (the
   service rebuilds its index from them at start; that time is reported), then `--clients`
   clients send `--searches` searches from a stored item (index + database path) and a few with
   a query photo (adds one embedding); latency p50 / p99 per request, and which search path the
   service's index took (faiss on the GPU, faiss or an exact scan on the CPU), read from the running service.
4. Search under ingest (--under-ingest N): on the first gallery size, `--clients` clients search from
   stored items while N other clients keep posting new images; search p50 / p99 and the ingest rate
   (the audit write of a search and the ingest's commit compete for the database's write lock).
Weights are random unless --weights is given (speed does not depend on their values).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch
import uvicorn
from fastapi import Request
from sqlalchemy import insert

from bench.report import append_json_line, append_section, command_line
from model.embedder import Embedder
from service.app import create_app
from service.db import make_engine, upgrade_database
from service.settings import Settings
from service.tables import GalleryItem
from training.datasets.synthetic import encode_jpeg, render_identity_image

ROOT = Path(__file__).resolve().parents[1]
ADMIN = {"X-API-Key": "dev-admin-key"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveService:
    """The real app under uvicorn in a child process (its own GIL and cores), on a free loopback port."""

    def __init__(self, settings: Settings, model: dict) -> None:
        self.port = _free_port()
        spec = {"settings": settings.model_dump(mode="json"), "model": model, "port": self.port}
        self.command = [sys.executable, "-m", "bench.service", "--serve-child", json.dumps(spec)]

    def __enter__(self) -> str:
        started = time.perf_counter()
        self.process = subprocess.Popen(self.command, cwd=ROOT)
        url = f"http://127.0.0.1:{self.port}"
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with status {self.process.returncode}")
            time.sleep(0.05)
        self.startup_s = time.perf_counter() - started
        return url

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)  # graceful: the index is saved
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def make_embedder(model: dict) -> Embedder:
    if model.get("weights"):
        return Embedder.from_checkpoint(
            model["weights"], device=model["device"], batch_size=model["batch_size"]
        )
    return Embedder.random_init(
        variant=model["variant"],
        input_size=tuple(model["input_size"]),
        device=model["device"],
        batch_size=model["batch_size"],
    )


def serve_child(spec_json: str) -> int:
    spec = json.loads(spec_json)
    settings = Settings(_env_file=None, **spec["settings"])
    app = create_app(settings, embedder=make_embedder(spec["model"]))

    def bench_search_path(request: Request) -> dict:
        return search_path(request.app)

    app.add_api_route("/_bench/search-path", bench_search_path, methods=["GET"])
    uvicorn.run(app, host="127.0.0.1", port=spec["port"], log_level="warning")
    return 0


def search_path(app) -> dict:
    """Which search path the running service's index takes (a benchmark-only route asks this in the child).

    Looks through the context's index wrappers for the faiss-backed store's `use_gpu` flag (it turns
    False when a GPU copy could not be made), so the answer is what searches ran on, not what was asked.
    Asked after the searches. Without a GPU, flat searches of a few queries are an exact matrix-product
    scan on the CPU (service/vectorstore), the other kinds faiss's own CPU search.
    """
    ctx = getattr(app.state, "ctx", None)
    node, chain = getattr(ctx, "index", None), []
    for _ in range(4):  # GalleryIndex -> VectorIndex -> ...
        if node is None:
            break
        chain.append(type(node).__name__)
        if hasattr(node, "use_gpu"):
            break
        node = getattr(node, "index", None) or getattr(node, "store", None)
    use_gpu = getattr(node, "use_gpu", None)
    kind = getattr(node, "kind", None)
    try:
        import faiss

        faiss_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    except ImportError:
        faiss_gpus = None
    storage = getattr(node, "storage", None)
    if use_gpu is None:
        path = "unknown"
    elif use_gpu:
        path = "faiss GPU"
    elif kind == "flat":  # few queries: a matrix product over the stored vectors on the CPU
        path = f"CPU exact scan ({storage or 'fp32'})"
    else:
        path = f"faiss CPU ({kind})"
    return {"path": path, "kind": kind, "storage": storage, "objects": chain, "faiss_gpus": faiss_gpus}


def _images(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        pixels = render_identity_image(pid=1 + i // 4, camid=1 + i % 4, seed=0, index=i)
        out.append(encode_jpeg(pixels))
    return out


def _images_unique(n: int) -> list[bytes]:
    """n images with distinct bytes (other identities than _images), so that each one is stored anew."""
    out = []
    for i in range(n):
        pixels = render_identity_image(pid=100_000 + i, camid=1 + i % 4, seed=1, index=i)
        out.append(encode_jpeg(pixels))
    return out


_local = threading.local()


def _client() -> httpx.Client:
    """One keep-alive client per worker thread (a new connection per request would dominate latency)."""
    if not hasattr(_local, "client"):
        _local.client = httpx.Client(timeout=600)
    return _local.client


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def bench_ingest(url: str | list[str], images: list[bytes], clients: int, per_request: int) -> float:
    """Seconds to ingest all images with `clients` concurrent clients (round-robin over several urls)."""
    urls = [url] if isinstance(url, str) else list(url)
    chunks = [images[i : i + per_request] for i in range(0, len(images), per_request)]

    def post(args):
        index, chunk = args
        files = [("files", (f"{index}-{j}.jpg", data, "image/jpeg")) for j, data in enumerate(chunk)]
        data = {"camera_id": f"cam-{index % 5}", "captured_at": "2026-11-20T10:00:00Z"}
        r = _client().post(f"{urls[index % len(urls)]}/gallery", files=files, data=data, headers=ADMIN)
        r.raise_for_status()
        return r.json()["created"]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        created = sum(pool.map(post, enumerate(chunks)))
    elapsed = time.perf_counter() - started
    if created != len(images):
        raise RuntimeError(f"{created} of {len(images)} images created")
    return elapsed


def bulk_load(settings: Settings, n_total: int, dim: int, seed: int = 0) -> None:
    """Add rows with random unit vectors until the gallery holds n_total items (no image files)."""
    engine = make_engine(settings.resolved_database_url)
    upgrade_database(engine)
    rng = np.random.default_rng(seed)
    with engine.begin() as conn:
        have = conn.exec_driver_sql("select count(*) from gallery_items").scalar()
    start_time = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    for start in range(have, n_total, 5000):
        count = min(5000, n_total - start)
        vectors = rng.standard_normal((count, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = [
            {
                "content_hash": f"bulk{start + i:060d}",
                "camera_id": f"cam-{(start + i) % 5}",
                "captured_at": start_time + dt.timedelta(seconds=start + i),
                "image_path": f"bulk/{start + i}.jpg",
                "thumbnail_path": f"bulk/{start + i}.thumb.jpg",
                "media_type": "image/jpeg",
                "width": 64,
                "height": 128,
                "embedding": vectors[i].tobytes(),
                "embedding_dim": dim,
                "visitor_id": start + i + 1,
            }
            for i in range(count)
        ]
        with engine.begin() as conn:
            conn.execute(insert(GalleryItem), rows)
    engine.dispose()


def bench_search(url: str, clients: int, searches: int, max_id: int, query: bytes | None, top_k: int):
    rng = np.random.default_rng(1)
    ids = rng.integers(1, max_id + 1, size=searches)

    def one(item_id):
        if query is None:
            kwargs = {"data": {"gallery_id": int(item_id), "top_k": top_k}}
        else:
            kwargs = {"files": [("files", ("q.jpg", query, "image/jpeg"))], "data": {"top_k": top_k}}
        started = time.perf_counter()
        r = _client().post(f"{url}/search", headers=ADMIN, **kwargs)
        elapsed = time.perf_counter() - started
        return elapsed if r.status_code == 200 else None

    with ThreadPoolExecutor(clients) as pool:
        times = [t for t in pool.map(one, ids) if t is not None]
    return times


def bench_search_under_ingest(
    url: str,
    images: list[bytes],
    ingest_clients: int,
    per_request: int,
    clients: int,
    searches: int,
    max_id: int,
    top_k: int,
) -> tuple[list[float], int, float]:
    """Search latencies while `ingest_clients` keep posting `images` (each once); returns
    (latencies, images created meanwhile, seconds the searches took)."""
    stop = threading.Event()
    chunks = iter([images[i : i + per_request] for i in range(0, len(images), per_request)])
    lock = threading.Lock()
    created = [0]

    def ingest_loop(worker: int) -> None:
        while not stop.is_set():
            with lock:
                chunk = next(chunks, None)
            if chunk is None:
                return
            files = [("files", (f"u{worker}-{j}.jpg", data, "image/jpeg")) for j, data in enumerate(chunk)]
            data = {"camera_id": f"cam-{worker}", "captured_at": "2026-11-20T10:00:00Z"}
            r = _client().post(f"{url}/gallery", files=files, data=data, headers=ADMIN)
            r.raise_for_status()
            with lock:
                created[0] += r.json()["created"]

    workers = [threading.Thread(target=ingest_loop, args=(w,), daemon=True) for w in range(ingest_clients)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # ingest under way before the first search
    started = time.perf_counter()
    times = bench_search(url, clients, searches, max_id, None, top_k)
    elapsed = time.perf_counter() - started
    with lock:
        during = created[0]
    stop.set()
    for worker in workers:
        worker.join()
    return times, during, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path)
    parser.add_argument(
        "--variant", default="none", help="random-init variant (default none = plain ResNet-50)"
    )
    parser.add_argument("--input-size", type=int, nargs=2, default=(128, 64), metavar=("H", "W"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--index-kind", default="flat", choices=("flat", "ivf", "hnsw"))
    parser.add_argument(
        "--index-storage", default="fp32", choices=("fp32", "fp16"), help="REID_INDEX_STORAGE"
    )
    parser.add_argument("--ingest-images", type=int, default=128)
    parser.add_argument("--files-per-request", type=int, default=8)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--searches", type=int, default=100)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument(
        "--under-ingest",
        type=int,
        default=0,
        metavar="N",
        help="also measure search while N clients ingest (on the first gallery size)",
    )
    parser.add_argument("--under-ingest-images", type=int, default=2000)
    parser.add_argument("--record", action="store_true", help="append the results to BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="append one JSON line per measurement to this file")
    parser.add_argument("--serve-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_child:
        return serve_child(args.serve_child)

    model = {
        "weights": str(args.weights) if args.weights else None,
        "variant": args.variant,
        "input_size": list(args.input_size),
        "device": args.device,
        "batch_size": args.batch_size,
    }
    embedder = make_embedder(model)
    images = _images(args.ingest_images)
    embedder.embed(images[: args.batch_size])  # warm-up
    runs = []
    for _ in range(3):  # the best of three: the machine may be shared
        started = time.perf_counter()
        for i in range(0, len(images), args.batch_size):
            embedder.embed(images[i : i + args.batch_size])
        runs.append(time.perf_counter() - started)
    pure_s = min(runs)

    lines = []
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        settings = Settings(
            _env_file=None,
            dev_mode=True,
            data_dir=Path(tmp),
            batch_size=args.batch_size,
            index_kind=args.index_kind,
            index_storage=args.index_storage,
            retention_days=0,
            max_files_per_request=max(64, args.files_per_request),
        )
        with LiveService(settings, model) as url:
            ingest_s = bench_ingest(url, images, args.clients, args.files_per_request)
        overhead = (ingest_s - pure_s) / pure_s
        append_json_line(
            args.json,
            {
                "kind": "ingest",
                "device": str(embedder.device),
                "images": len(images),
                "clients": args.clients,
                "files_per_request": args.files_per_request,
                "batch_size": args.batch_size,
                "ingest_s": ingest_s,
                "pure_embedding_s": pure_s,
                "ingest_images_per_s": len(images) / ingest_s,
                "pure_images_per_s": len(images) / pure_s,
                "overhead": overhead,
            },
        )
        lines.append(
            f"ingest {len(images)} images, {args.clients} clients x {args.files_per_request}/request: "
            f"{len(images) / ingest_s:.1f} images/s over HTTP vs {len(images) / pure_s:.1f} images/s pure "
            f"embedding (overhead {overhead * 100:+.1f}%)"
        )
        for size in args.sizes:
            bulk_load(settings, size, embedder.dim)
            settings.index_path.unlink(missing_ok=True)
            live = LiveService(settings, model)
            with live as url:
                by_id = bench_search(url, args.clients, args.searches, size, None, args.top_k)
                by_photo = bench_search(
                    url, args.clients, max(10, args.searches // 10), size, images[0], args.top_k
                )
                path = httpx.get(f"{url}/_bench/search-path", timeout=30).json()
            append_json_line(
                args.json,
                {
                    "kind": "search",
                    "gallery": size,
                    "startup_s": live.startup_s,
                    "clients": args.clients,
                    "top_k": args.top_k,
                    "index_kind": args.index_kind,
                    "index_storage": args.index_storage,
                    "searches": len(by_id),
                    "item_p50_ms": _percentile(by_id, 50) * 1000,
                    "item_p99_ms": _percentile(by_id, 99) * 1000,
                    "photo_searches": len(by_photo),
                    "photo_p50_ms": _percentile(by_photo, 50) * 1000,
                    "photo_p99_ms": _percentile(by_photo, 99) * 1000,
                    "search_path": path,
                },
            )
            lines.append(
                f"gallery {size}: start-up (process, model, index rebuild) {live.startup_s:.1f} s; search from an item "
                f"p50 {_percentile(by_id, 50) * 1000:.1f} ms p99 {_percentile(by_id, 99) * 1000:.1f} ms; "
                f"from a photo p50 {_percentile(by_photo, 50) * 1000:.1f} ms p99 "
                f"{_percentile(by_photo, 99) * 1000:.1f} ms ({args.clients} clients, top_k {args.top_k}, "
                f"{args.index_kind} {args.index_storage}, {path['path']})"
            )
            if args.under_ingest and size == args.sizes[0]:
                fresh = _images_unique(args.under_ingest_images)
                with LiveService(settings, model) as url:
                    times, during, elapsed = bench_search_under_ingest(
                        url,
                        fresh,
                        args.under_ingest,
                        args.files_per_request,
                        args.clients,
                        args.searches,
                        size,
                        args.top_k,
                    )
                load = os.getloadavg()
                lines.append(
                    f"gallery {size}, search from an item while {args.under_ingest} clients ingest "
                    f"({args.files_per_request}/request): p50 {_percentile(times, 50) * 1000:.1f} ms p99 "
                    f"{_percentile(times, 99) * 1000:.1f} ms over {len(times)} searches ({args.clients} "
                    f"clients); {during / elapsed:.1f} images/s ingested meanwhile; load average "
                    f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
                )
    device = embedder.device
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.machine()} CPU, {os.cpu_count()} cores"
    )
    header = (
        f"service ({dt.date.today().isoformat()}, {machine}, torch {torch.__version__}, "
        f"{embedder.meta.variant} {embedder.input_size[0]}x{embedder.input_size[1]}, batch {args.batch_size})"
    )
    print(header)
    for line in lines:
        print("  " + line)
    if args.record:
        bullets = "".join(f"- {line}\n" for line in lines)
        append_section(f"\n### {header}\n\n`{command_line()}`\n\n{bullets}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
