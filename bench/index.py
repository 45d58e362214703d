"""Vector store benchmark (service/vectorstore/): exact search latency, approximate recall@10 and latency.

    python -m bench.index                                            # 10k and 100k exact, 100k IVF + HNSW
    python -m bench.index --sizes 10000 100000 --approx-sizes 1000000 --approx ivf --record
    python -m bench.index --sizes 10000 100000 1000000 --storage fp32 bf16 fp16 --large-storage bf16 \
        --clients 1 4 --approx-sizes --record                     # storages side by side (issue 14)
    python -m bench.index --sizes 10000 100000 --storage fp32 bf16 int8 --clients 1 4 --approx-sizes \
        --record                                                  # the int8 scan kernel against both

Exact (flat) rows are given per storage (``--storage``: fp32; bf16 = float32 held plus a bfloat16
scan copy, the best candidates re-scored exactly from the float32 rows; fp16 = half precision held,
the best k + 64 re-scored in float32 from ``--rescore-source``; int8 = float32 held plus int8 codes
scanned by the compiled kernel, re-scored like bf16) and per number of concurrent clients
(``--clients``: threads, each a closed loop of single-query searches; concurrent searches share
scans through the store's coalescer). Sizes above 100,000 run only ``--large-storage`` (1,000,000 x
2048 is 8 GB in fp32, 12 GB in bf16) with ``--large-queries`` searches. fp16 re-scores from
``--rescore-source``: ``memory`` = a float32 copy held by the benchmark (standing in for the
database, which the service reads), ``none`` = the stored half-precision values. Recall@10 of every
exact row is measured against float32 ground truth (computed in the first bulk load's pass);
"widened" counts the 16-bit scans repeated with more candidates (int8: the searches whose rows within
the error bound were re-scored beyond the first candidates; see faiss_store). "bulk load s" is
the time in ``add`` (not the data generation); "first search s" includes building the bf16 copy.

Gallery vectors are random clustered unit vectors (sightings around identity centres, identities
around shared "looks"; see Gallery), generated in chunks from a seed and bulk-loaded through `VectorIndex.add`. Queries come from
the same identities with fresh noise. Latency is per single-query `search(q, k=10)` call (what one
POST /search does), p50 / p99 over `--queries` calls, after a warm-up; also with a camera/time-style
filter (`allowed_ids`: 1,000 ids -> exact gather path; 10 % of the ids -> faiss IDSelectorBatch, or
a masked 16-bit scan).
Approximate kinds report build time and recall@10 against exact search (the ground truth is computed
chunk by chunk, so the 1,000,000 x 2048 case needs the IVF index's 8 GB but not a second copy).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import logging
import os
import threading
import time

import faiss
import numpy as np

from bench.report import append_section, command_line, machine_description
from service.vectorstore import int8
from service.vectorstore.faiss_store import STORAGES, default_nlist
from service.vectorstore.faiss_store import FaissVectorStore as VectorIndex

logger = logging.getLogger("bench.index")
BYTES_PER_VALUE = {"fp32": 4, "bf16": 6, "fp16": 2, "int8": 5}  # bf16 / int8: float32 plus the scan copy
CHUNK = 50_000
LARGE = 100_000  # exact sizes above this use --large-storage and --large-queries


IDENTITY_BLOCK = 10_000  # identity centres are drawn this many at a time (one random stream each)


class Gallery:
    """Deterministic clustered unit vectors, produced chunk by chunk.

    Two levels, so that neighbours are not trivially one tight cluster: identity centres scatter
    (``group_spread``) around one of n / 1000 "look" centres (people dressed alike), and each sighting
    scatters (``noise``) around its identity's centre. Item i is a sighting of identity
    i // per_identity (an identity's sightings are neighbours in id order, as a store's crops of
    one visit are). Identity centres come in blocks of IDENTITY_BLOCK from one random stream per
    block, so that 1,000,000 vectors take seconds, not minutes.
    """

    def __init__(
        self, n: int, dim: int, seed: int, noise: float, per_identity: int = 5, group_spread: float = 1.0
    ) -> None:
        self.n, self.dim, self.seed, self.noise = n, dim, seed, noise
        self.per_identity = per_identity
        self.identities = max(1, -(-n // per_identity))
        self.groups = max(1, n // 1000)
        self.group_spread = group_spread
        looks = np.random.default_rng([seed, 0]).standard_normal((self.groups, dim), dtype=np.float32)
        self.looks = looks / np.linalg.norm(looks, axis=1, keepdims=True)
        self._block: tuple[int, np.ndarray] | None = None  # the last identity block drawn

    def _identity_block(self, block: int) -> np.ndarray:
        if self._block is None or self._block[0] != block:
            rng = np.random.default_rng([self.seed, 1, block])
            x = rng.standard_normal((IDENTITY_BLOCK, self.dim), dtype=np.float32)
            self._block = (block, x / np.linalg.norm(x, axis=1, keepdims=True))
        return self._block[1]

    def centres(self, which: np.ndarray) -> np.ndarray:
        out = np.empty((len(which), self.dim), dtype=np.float32)
        for block in np.unique(which // IDENTITY_BLOCK).tolist():
            rows = np.flatnonzero(which // IDENTITY_BLOCK == block)
            own = self._identity_block(block)[which[rows] % IDENTITY_BLOCK]
            out[rows] = self.looks[which[rows] % self.groups] + self.group_spread * own
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def _make(self, rng: np.random.Generator, identity: np.ndarray) -> np.ndarray:
        x = self.centres(identity)
        x += rng.standard_normal(x.shape, dtype=np.float32) * (self.noise / np.sqrt(self.dim))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def chunks(self):
        for start in range(0, self.n, CHUNK):
            stop = min(self.n, start + CHUNK)
            rng = np.random.default_rng([self.seed, 2, start])
            ids = np.arange(start, stop, dtype=np.int64)
            yield ids, self._make(rng, ids // self.per_identity)

    def queries(self, count: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 3])
        return self._make(rng, rng.integers(0, self.identities, count))


class TruthPass:
    """Float32 exact top-k ids of some queries, fed the gallery chunk by chunk."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.queries, self.k = queries, k
        self.best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        self.best_i = np.empty((len(queries), 0), dtype=np.int64)

    def push(self, ids: np.ndarray, x: np.ndarray) -> None:
        s = np.concatenate([self.best_s, self.queries @ x.T], axis=1)
        i = np.concatenate([self.best_i, np.broadcast_to(ids, (len(self.queries), len(ids)))], axis=1)
        top = np.argpartition(-s, self.k - 1, axis=1)[:, : self.k]
        self.best_s, self.best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)

    def ids(self) -> np.ndarray:
        return self.best_i


def exact_topk(gallery: Gallery, queries: np.ndarray, k: int) -> np.ndarray:
    """Ground-truth ids (q, k), chunk by chunk."""
    truth = TruthPass(queries, k)
    for ids, x in gallery.chunks():
        truth.push(ids, x)
    return truth.ids()


def latencies(
    index: VectorIndex, queries: np.ndarray, k: int, allowed=None, clients: int = 1
) -> tuple[float, float]:
    """p50 / p99 ms of single-query searches, ``clients`` threads each searching its share in a loop."""
    for q in queries[:5]:
        index.search(q, k, allowed_ids=allowed)
    times: list[float] = []

    def client(rows: range) -> None:
        for row in rows:
            start = time.perf_counter()
            index.search(queries[row], k, allowed_ids=allowed)
            times.append(time.perf_counter() - start)  # list.append is atomic under the GIL

    threads = [
        threading.Thread(target=client, args=(range(i, len(queries), clients),)) for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ms = 1000 * np.array(times)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def recall(index: VectorIndex, queries: np.ndarray, truth: np.ndarray, k: int) -> float:
    _, found = index.search(queries, k)
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def build(
    kind: str, gallery: Gallery, args, storage: str = "fp32", truth_for: np.ndarray | None = None
) -> tuple[VectorIndex, float, np.ndarray | None]:
    """Bulk-load the gallery into a new store: (store, seconds, ground truth of ``truth_for`` queries
    computed in the same pass when given, else None)."""
    start = time.perf_counter()
    index = VectorIndex(
        gallery.dim, kind, nlist=args.nlist, hnsw_m=args.hnsw_m, use_gpu=False, storage=storage
    )
    if kind == "ivf":
        nlist = args.nlist or default_nlist(gallery.n)
        sample_size = min(gallery.n, max(nlist * 40, 20_000))
        sample = []
        for _, x in gallery.chunks():
            sample.append(x[: sample_size - sum(len(s) for s in sample)])
            if sum(len(s) for s in sample) >= sample_size:
                break
        index.nlist = nlist
        index.train_if_needed(np.concatenate(sample))
    truth = None if truth_for is None else TruthPass(truth_for, args.k)
    adding = 0.0
    for ids, x in gallery.chunks():
        started = time.perf_counter()
        index.add(ids, x)
        adding += time.perf_counter() - started
        if truth is not None:
            truth.push(ids, x)
        logger.info(
            "%s %s: %d / %d vectors added (%.0f s)",
            kind,
            storage,
            ids[-1] + 1,
            gallery.n,
            time.perf_counter() - start,
        )
    return index, adding, None if truth is None else truth.ids()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="exact (flat) sizes")
    parser.add_argument("--storage", nargs="+", choices=STORAGES, default=["fp32", "bf16"])
    parser.add_argument(
        "--large-storage",
        nargs="+",
        choices=STORAGES,
        default=["bf16"],
        help=f"storages for exact sizes above {LARGE:,} (1,000,000 x 2048: fp32 8 GB, bf16 12 GB, fp16 4 GB)",
    )
    parser.add_argument("--large-queries", type=int, default=50, help=f"searches per row above {LARGE:,}")
    parser.add_argument("--clients", type=int, nargs="+", default=[1])
    parser.add_argument("--rescore-source", choices=("memory", "none"), default="memory")
    parser.add_argument("--no-filtered", action="store_true", help="skip the allowed-ids latency columns")
    parser.add_argument("--approx-sizes", type=int, nargs="*", default=[100_000])
    parser.add_argument("--approx", nargs="*", choices=("ivf", "hnsw"), default=["ivf", "hnsw"])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.8, help="noise norm around each identity's centre")
    parser.add_argument("--per-identity", type=int, default=5, help="sightings per identity")
    parser.add_argument("--group-spread", type=float, default=1.0, help="identity spread around its look")
    parser.add_argument("--nlist", type=int, help="IVF lists (default about 4 sqrt(n))")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", action="store_true", help="append the tables to BENCHMARKS.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    machine = machine_description() + f", faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads)"
    if "int8" in args.storage + args.large_storage:
        machine += f", int8 kernel: {int8.best_isa() or 'NOT BUILT (int8 rows scan bf16)'}"
    logger.info("machine: %s", machine)
    k = args.k
    exact_rows, approx_rows = [], []
    for n in args.sizes:
        large = n > LARGE
        gallery = Gallery(n, args.dim, args.seed, args.noise, args.per_identity, args.group_spread)
        queries = gallery.queries(args.large_queries if large else args.queries)
        truth = None
        for storage in args.large_storage if large else args.storage:
            started = time.perf_counter()
            index, seconds, built_truth = build(
                "flat", gallery, args, storage, queries if truth is None else None
            )
            truth = truth if built_truth is None else built_truth
            copy = None
            if storage == "fp16" and args.rescore_source == "memory":
                copy = np.concatenate([x for _, x in gallery.chunks()])  # ids are 0..n-1: row = id
                index.attach_vector_source(
                    lambda ids, copy=copy: dict(zip(ids.tolist(), copy[ids], strict=True))
                )
            first = time.perf_counter()
            index.search(queries[:1], k)  # bf16: builds the scan copy (timed apart)
            first = time.perf_counter() - first
            found_recall = recall(index, queries, truth, k)
            rng = np.random.default_rng(args.seed)
            filtered = []
            if not args.no_filtered:
                filtered += latencies(index, queries, k, allowed=rng.choice(n, min(n, 1000), replace=False))
                filtered += latencies(index, queries, k, allowed=rng.choice(n, n // 10, replace=False))
            for clients in args.clients:
                load = os.getloadavg()[0]
                widened = getattr(index, "widened", 0)
                scanned = getattr(index, "_scan_storage", storage)  # int8 without its kernel: bf16
                row = [
                    n,
                    storage if scanned == storage else f"{storage} (scanned {scanned})",
                    clients,
                    seconds,
                    first,
                    found_recall,
                    *latencies(index, queries, k, clients=clients),
                ]
                row += [getattr(index, "widened", 0) - widened, load] + (filtered if clients == 1 else [])
                exact_rows.append(row)
                logger.info("flat %d: %s", n, row)
            logger.info("flat %d %s done in %.0f s", n, storage, time.perf_counter() - started)
            del index, copy
            gc.collect()
    for n in args.approx_sizes:
        gallery = Gallery(n, args.dim, args.seed, args.noise, args.per_identity, args.group_spread)
        queries = gallery.queries(args.queries)
        start = time.perf_counter()
        truth = exact_topk(gallery, queries, k)
        logger.info(
            "ground truth for %d queries over %d vectors in %.0f s",
            len(queries),
            n,
            time.perf_counter() - start,
        )
        for kind in args.approx:
            index, seconds, _ = build(kind, gallery, args)
            settings = (
                [("nprobe", p) for p in args.nprobe]
                if kind == "ivf"
                else [("efSearch", e) for e in args.ef_search]
            )
            for name, value in settings:
                index.set_search_params(**({"nprobe": value} if name == "nprobe" else {"ef_search": value}))
                described = (
                    f"nlist={index.nlist}, nprobe={value}"
                    if kind == "ivf"
                    else f"M={args.hnsw_m}, efSearch={value}"
                )
                row = [
                    n,
                    kind,
                    described,
                    seconds,
                    recall(index, queries, truth, k),
                    *latencies(index, queries, k),
                ]
                approx_rows.append(row)
                logger.info("%s", row)
            del index
            gc.collect()

    lines = [
        f"Vectors: {args.dim}-d clustered unit vectors ({args.per_identity} per identity, noise {args.noise}, "
        f"identities spread {args.group_spread} around n/1000 looks); "
        f"{args.queries} single-query searches, k={k}, after 5 warm-up calls; with several clients, "
        f"{args.queries} searches shared among client threads. fp16 re-scores from: {args.rescore_source} "
        "(memory = a float32 copy standing in for the database). Load = 1-minute load average when the row ran.",
        "",
    ]
    if exact_rows:
        lines += [
            "| exact (flat) | storage | MB held | clients | bulk load s | first search s | recall@10 | p50 ms "
            "| p99 ms | widened | load (1 min) | 1,000 allowed p50 / p99 ms | 10 % allowed p50 / p99 ms |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in exact_rows:
            n, storage, clients, s, first, r, p50, p99, widened, load, *filtered = row
            held = n * args.dim * BYTES_PER_VALUE[storage.split()[0]] / 1e6
            allowed = (
                [f"{filtered[0]:.1f} / {filtered[1]:.1f}", f"{filtered[2]:.1f} / {filtered[3]:.1f}"]
                if filtered
                else ["", ""]
            )
            lines.append(
                f"| {n:,} | {storage} | {held:,.0f} | {clients} | {s:.1f} | {first:.2f} | {r:.4f} | {p50:.1f} "
                f"| {p99:.1f} | {widened} | {load:.1f} | " + " | ".join(allowed) + " |"
            )
        lines.append("")
    if approx_rows:
        lines += [
            "| approximate | kind | settings | build s | recall@10 | p50 ms | p99 ms |",
            "|---:|---|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {n:,} | {kind} | {desc} | {s:.0f} | {r:.3f} | {p50:.1f} | {p99:.1f} |"
            for n, kind, desc, s, r, p50, p99 in approx_rows
        ]
    table = "\n".join(lines)
    print(table)
    if args.record:
        section = (
            f"\n## Vector store (service/vectorstore/) — {dt.date.today().isoformat()}\n\n"
            f"Machine: {machine}  \nCommand: `{command_line()}`  \n{table}\n"
        )
        append_section(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
