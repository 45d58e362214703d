"""The faiss vector store: inner product over L2-normalised float32 vectors, in this process.

Kinds:

- ``flat``: exact search (``IndexIDMap2(IndexFlatIP)``), the default.
- ``ivf``: ``IndexIVFFlat`` with the item ids stored in the inverted lists. Until enough vectors exist to
  train the coarse quantiser (``train_if_needed`` or ``add`` past 39 vectors per list) it stays exact.
- ``hnsw``: ``IndexIDMap2(IndexHNSWFlat)``. HNSW cannot delete, so removed ids become tombstones that
  searches skip; the graph is rebuilt when they exceed a tenth of the vectors.

Filtered search (``allowed_ids``) returns the top k among the allowed ids, filled whenever k allowed
ids exist: small allowed sets are scored exactly from the stored vectors (faster and exact), larger
ones go through faiss ``IDSelectorBatch``; an approximate kind that comes back short falls back to exact.

Storage (flat kind): ``fp32`` keeps the vectors as given and scans them in float32; ``bf16`` keeps
them as given too (same file) and scans a bfloat16 copy (1.5x the memory; half the bytes each scan
reads, and oneDNN's AMX / AVX512-BF16 matrix product on CPUs that have them), then re-scores the
best candidates exactly from the float32 vectors held; ``fp16`` keeps only half precision (faiss
``IndexScalarQuantizer`` QT_fp16: half the memory), scans it with a float16 matrix product and
re-scores the candidates in float32 from the attached vector source (the database) or, without one,
from the stored values widened to float32 (scores then differ from float32 by about 1e-5).
``int8`` keeps float32 too and scans per-row int8 codes (1.25x fp32's memory, a quarter of its bytes
per scan) with a compiled kernel (``int8``: AVX-512 VNNI / AVX2 / C, both cores), re-scoring like bf16;
without the compiled extension it falls back to bf16's scan (logged). A reduced (16-bit / int8) scan
takes the best ``rescore_candidates(k)``; when the k-th re-scored score does not clear
the last candidate's scan score by the scan's worst-case error (``scan.score_error_bound``,
``int8.error_bound``), an
item outside the candidates could still belong in the top k, and the scan is repeated with 8x the
candidates (counted in ``widened``): the answer is float32 exact search's.

Unfiltered flat searches of a few queries go through a coalescer: concurrent searches share one
scan (``coalesce.Coalescer``). On a GPU build with a visible GPU, unfiltered flat / IVF searches of
fp32 storage run on a GPU copy made lazily.
The file format is ``persistence``'s container with the ``faiss.write_index`` stream as payload.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading

import faiss
import numpy as np
import torch

from service.vectorstore import int8, persistence
from service.vectorstore.base import (
    VectorSource,
    VectorStore,
    VectorStoreFileError,
    check_ids,
    check_vectors,
)
from service.vectorstore.coalesce import Coalescer
from service.vectorstore.scan import as_tensor, int8_topc, scan_topc, score_error_bound, top_c
from service.vectorstore.topk import TopK, empty, pad, topk

logger = logging.getLogger(__name__)

KINDS = ("flat", "ivf", "hnsw")
STORAGES = ("fp32", "bf16", "fp16", "int8")
SCAN_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TRAIN_POINTS_PER_LIST = 39  # faiss warns below this many training points per centroid
EXACT_SUBSET_FLAT = 4096  # allowed sets up to this size are scored by gathering their vectors (flat)
EXACT_SUBSET_APPROX = 20_000  # the same for ivf / hnsw, where filtered approximate search may come back short
EXACT_CHUNK = 65_536  # candidates scored per block in exact search over an id subset
HNSW_COMPACT_FRACTION = 0.1
SUBSET_GATHER_FRACTION = 4  # 16-bit scans: allowed sets under 1/4 of the rows are gathered (fp16) or
# searched in float32 (bf16), larger ones scanned with a mask
COALESCE_MAX_QUERIES = 64  # query rows one shared scan takes at most
COALESCE_LINGER_S = 0.002  # after a shared scan, the next waits this long at most for its callers
INT8_KEPT_SCORES = 1 << 24  # int8 scans keeping up to this many scores (64 MB) widen without a second scan


def rescore_candidates(k: int, storage: str = "fp16") -> int:
    """How many 16-bit-scan candidates are re-scored in float32 for a top-k answer, at first.

    float16 scores carry about 3 decimal digits (+-2.4e-4 near 0.5), bfloat16 about 2 (+-2e-3): the
    true top k are among the best k + 64 (bf16: k + 128) unless more items than that score within a
    few of those steps of the k-th; the search checks this and widens when it fails (module doc).
    """
    return max(2 * k, k + 64) if storage == "fp16" else max(4 * k, k + 128)  # bf16, int8


# faiss parallelises over queries: below its BLAS threshold a search runs on one thread anyway, and the
# OpenMP team it would start costs more than the search on a busy machine (12 ms vs 0.07 ms measured).
FEW_QUERIES = 20


@contextlib.contextmanager
def _omp_threads(count: int | None):
    """Run faiss with `count` OpenMP threads in this thread (the setting is per calling thread)."""
    if count is None:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def gpu_available() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def default_nlist(n: int) -> int:
    """A coarse-quantiser size for n vectors: about 4 sqrt(n), a power of two, at least 1."""
    if n <= 0:
        return 1
    return max(1, 2 ** round(math.log2(max(1.0, 4 * math.sqrt(n)))))


class FaissVectorStore(VectorStore):
    """faiss flat / IVF / HNSW behind the VectorStore interface. One lock serialises calls (faiss
    parallelises each search internally)."""

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 80,
        use_gpu: bool | None = None,
        storage: str = "fp32",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"index kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if storage not in STORAGES:
            raise ValueError(f"index storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        if storage != "fp32" and kind != "flat":
            raise ValueError(f"{storage} storage is for the flat (exact) kind, not {kind!r}")
        if int(dim) <= 0:
            raise ValueError(f"index dim must be positive, got {dim}")
        self.dim = int(dim)
        self.kind = kind
        self.storage = storage
        self._scan_storage = storage  # what the scan reads: int8 falls back to bf16 without its kernel
        if storage == "int8" and not int8.available():
            logger.warning(
                "int8 index storage: the compiled scan kernel (service.vectorstore._int8scan) is not built "
                "(reinstall with a C compiler: pip install -e .); scanning a bfloat16 copy instead"
            )
            self._scan_storage = "bf16"
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = int(hnsw_m)
        self.ef_search = int(ef_search)
        self.ef_construction = int(ef_construction)
        if use_gpu and not gpu_available():
            raise ValueError("use_gpu=True but this faiss build has no GPU support or no GPU is visible")
        self.use_gpu = gpu_available() if use_gpu is None else bool(use_gpu)
        self._lock = threading.RLock()
        self._index = self._new_base()
        self._sorted_ids = np.empty(0, dtype=np.int64)  # live ids, sorted
        self._tombstones = np.empty(0, dtype=np.int64)  # hnsw: removed ids still in the graph, sorted
        self._positions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # see _storage_rows
        self._gpu_res = None
        self._gpu_index = None
        self._generation = 0
        self._source: VectorSource | None = None
        self._scan_copy: torch.Tensor | None = None  # bf16: bfloat16 rows, [:_scan_rows] mirror faiss's rows
        self._scan_rows = 0
        self._int8_copy: int8.Int8Rows | None = None  # int8: codes of faiss's rows, in the same order
        self._row_norm: float | None = 0.0  # the largest stored vector norm (None: not known yet)
        self.widened = 0  # 16-bit scans repeated with more candidates (observable)
        self._coalescer = Coalescer(self._search_now, COALESCE_MAX_QUERIES, COALESCE_LINGER_S)

    # ----------------------------------------------------------------- construction
    def _new_base(self):
        if self.kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = self.ef_construction
            return faiss.IndexIDMap2(hnsw)
        if self.storage == "fp16":
            half = faiss.IndexScalarQuantizer(
                self.dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
            return faiss.IndexIDMap2(half)
        # flat, and ivf until trained
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    @property
    def is_ivf_trained(self) -> bool:
        return isinstance(self._index, faiss.IndexIVFFlat)

    def _build_ivf(self, sample: np.ndarray) -> faiss.IndexIVFFlat:
        nlist = self.nlist or default_nlist(len(sample))
        nlist = max(1, min(nlist, len(sample) // TRAIN_POINTS_PER_LIST))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = 10  # k-means iterations: 25 (faiss default) costs 2.5x for little recall
        ivf.train(sample)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct / remove by item id
        ivf.nprobe = self._nprobe_for(nlist)
        self.nlist = nlist
        logger.info("trained an IVF index with %d lists on %d vectors", nlist, len(sample))
        return ivf

    def _nprobe_for(self, nlist: int) -> int:
        return max(1, min(nlist, self.nprobe or max(16, nlist // 16)))

    def train_if_needed(self, sample_vectors: np.ndarray) -> bool:
        """Train an ``ivf`` index's coarse quantiser on a sample (and move existing vectors into it).

        Returns True if it trained. No-op for other kinds, an already trained index, or a sample (plus
        the vectors already held) too small to train on.
        """
        if self.kind != "ivf":
            return False
        sample = check_vectors(sample_vectors, self.dim)
        with self._lock:
            if self.is_ivf_trained:
                return False
            held = self._all_vectors()
            if len(held[0]):
                sample = np.concatenate([sample, held[1]])
            if len(sample) < TRAIN_POINTS_PER_LIST * 2:
                return False
            self._convert_to_ivf(sample, held)
            return True

    def _convert_to_ivf(self, sample: np.ndarray, held: tuple[np.ndarray, np.ndarray]) -> None:
        ivf = self._build_ivf(sample)
        ids, vectors = held
        if len(ids):
            ivf.add_with_ids(vectors, ids)
        self._index = ivf
        self._changed()

    def attach_vector_source(self, source: VectorSource | None) -> None:
        self._source = source

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None, **_) -> None:
        """Trade speed for recall: IVF lists probed per query, HNSW candidate list size."""
        with self._lock:
            if nprobe is not None:
                if nprobe < 1:
                    raise ValueError(f"nprobe must be >= 1, got {nprobe}")
                self.nprobe = int(nprobe)
                if self.is_ivf_trained:
                    self._index.nprobe = self._nprobe_for(self._index.nlist)
                    self._gpu_index = None
            if ef_search is not None:
                if ef_search < 1:
                    raise ValueError(f"ef_search must be >= 1, got {ef_search}")
                self.ef_search = int(ef_search)

    # ----------------------------------------------------------------- bookkeeping
    def __len__(self) -> int:
        return int(self._sorted_ids.size)

    def ids(self) -> np.ndarray:
        with self._lock:
            return self._sorted_ids.copy()

    def __contains__(self, item_id: int) -> bool:
        held = self._sorted_ids
        position = np.searchsorted(held, item_id)
        return bool(position < held.size and held[position] == item_id)

    @property
    def generation(self) -> int:
        return self._generation

    def _changed(self) -> None:
        self._positions = None
        self._gpu_index = None

    def _member_mask(self, ids: np.ndarray) -> np.ndarray:
        if self._sorted_ids.size == 0:
            return np.zeros(ids.shape, dtype=bool)
        positions = np.minimum(np.searchsorted(self._sorted_ids, ids), self._sorted_ids.size - 1)
        return self._sorted_ids[positions] == ids

    def _storage_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For IndexIDMap2 kinds: (id_map ids sorted, their row in the flat storage, id of each row)."""
        if self._positions is None:
            id_map = faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
            order = np.argsort(id_map, kind="stable")
            self._positions = (id_map[order], order, id_map)
        return self._positions

    def _storage_matrix(self) -> np.ndarray:
        """The flat storage's vectors as a (ntotal, dim) float32 or float16 numpy view (no copy; valid
        until the next change, so used under the lock)."""
        storage = self._flat_storage()
        if storage.ntotal == 0:
            return np.empty((0, self.dim), dtype=np.float16 if self.storage == "fp16" else np.float32)
        if self.storage == "fp16":  # QT_fp16 codes are the IEEE half-precision values, row by row
            codes = faiss.rev_swig_ptr(storage.codes.data(), storage.ntotal * storage.code_size)
            return codes.view(np.float16).reshape(storage.ntotal, self.dim)
        return faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * self.dim).reshape(
            storage.ntotal, self.dim
        )

    def _flat_storage(self):
        inner = faiss.downcast_index(self._index.index)
        return faiss.downcast_index(inner.storage) if isinstance(inner, faiss.IndexHNSW) else inner

    def _vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors for ids that are in the index (caller checks membership)."""
        if len(ids) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        if self.is_ivf_trained:
            return self._index.reconstruct_batch(ids)
        return widen(self._stored_rows(ids))

    def _stored_rows(self, ids: np.ndarray) -> np.ndarray:
        """flat / hnsw: the stored rows (float32 or float16) of ids that are in the index."""
        sorted_ids, rows, _ = self._storage_rows()
        return self._storage_matrix()[rows[np.searchsorted(sorted_ids, ids)]]

    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        return self._sorted_ids.copy(), self._vectors_of(self._sorted_ids)

    # ----------------------------------------------------------------- mutation
    def add(self, ids, vectors, attributes=None) -> None:  # attributes: not kept (filters resolve to ids)
        ids = check_ids(ids)
        vectors = check_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError(f"got {len(ids)} ids for {len(vectors)} vectors")
        if len(ids) == 0:
            return
        unique = np.unique(ids)
        if unique.size != ids.size:
            raise ValueError("ids repeat within one add call")
        with self._lock:
            present = self._member_mask(ids)
            if present.any():
                raise ValueError(f"ids already in the index: {ids[present][:10].tolist()}")
            self._generation += 1
            if self.kind == "hnsw" and self._tombstones.size and np.isin(ids, self._tombstones).any():
                self._compact()  # a removed id comes back: drop the tombstones first
            if self.kind == "ivf" and not self.is_ivf_trained:
                total = len(self) + len(ids)
                wanted = self.nlist or default_nlist(total)
                if total >= max(TRAIN_POINTS_PER_LIST * wanted, TRAIN_POINTS_PER_LIST * 2):
                    held = self._all_vectors()
                    all_ids = np.concatenate([held[0], ids])
                    all_vectors = np.concatenate([held[1], vectors])
                    self._convert_to_ivf(all_vectors, (all_ids, all_vectors))
                    self._sorted_ids = np.sort(all_ids)
                    return
            self._index.add_with_ids(vectors, ids)
            self._positions = None
            if self._row_norm is not None:
                self._row_norm = max(self._row_norm, float(np.linalg.norm(vectors, axis=1).max()))
            if self._gpu_index is not None:
                try:
                    self._gpu_index.add_with_ids(vectors, ids)
                except Exception as exc:
                    logger.warning("could not add to the GPU copy of the index (%s); it will be rebuilt", exc)
                    self._gpu_index = None
            self._sorted_ids = np.union1d(self._sorted_ids, unique)

    def upsert(self, ids, vectors, attributes=None) -> int:
        """Replace the held rows of these ids and add the others, under one hold of the lock (a search sees
        the old rows or the new ones); checked before anything is removed."""
        ids = check_ids(ids)
        vectors = check_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError(f"got {len(ids)} ids for {len(vectors)} vectors")
        if np.unique(ids).size != ids.size:
            raise ValueError("ids repeat within one upsert call")
        with self._lock:
            self.remove(ids)
            self.add(ids, vectors)
        return int(ids.size)

    def remove(self, ids) -> int:
        ids = np.unique(check_ids(ids))
        with self._lock:
            ids = ids[self._member_mask(ids)]
            if ids.size == 0:
                return 0
            self._generation += 1
            if self.kind == "hnsw":
                self._tombstones = np.union1d(self._tombstones, ids)
            else:
                keep = self._scan_copy_keep(ids)
                keep_int8 = self._int8_copy_keep(ids)
                selector = faiss.IDSelectorArray(ids) if self.is_ivf_trained else faiss.IDSelectorBatch(ids)
                removed = self._index.remove_ids(selector)
                if removed != ids.size:
                    raise RuntimeError(f"faiss removed {removed} of {ids.size} ids")
                self._compact_scan_copy(keep)
                if keep_int8 is not None and not keep_int8.all():
                    self._int8_copy.keep(keep_int8)
            self._sorted_ids = np.setdiff1d(self._sorted_ids, ids, assume_unique=True)
            self._changed()
            if self.kind == "hnsw" and self._tombstones.size > HNSW_COMPACT_FRACTION * max(
                1, self._index.ntotal
            ):
                self._compact()
            return int(ids.size)

    def _compact(self) -> None:
        """hnsw: rebuild the graph without the tombstoned vectors."""
        ids, vectors = self._all_vectors()
        logger.info("rebuilding the HNSW index without %d removed vectors", self._tombstones.size)
        self._index = self._new_base()
        if len(ids):
            self._index.add_with_ids(vectors, ids)
        self._tombstones = np.empty(0, dtype=np.int64)
        self._changed()

    # ----------------------------------------------------------------- search
    def search(self, queries, k: int, allowed_ids=None, where=None) -> tuple[np.ndarray, np.ndarray]:
        if where is not None and where.restricts:
            raise ValueError("the faiss store filters by ids only: resolve `where` to allowed_ids")
        queries = check_vectors(queries, self.dim, "queries")
        k = int(k)
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        gpu_scan = self.use_gpu and self.storage != "fp16"
        if allowed_ids is None and self.kind == "flat" and len(queries) < FEW_QUERIES and not gpu_scan:
            return self._coalescer.submit(queries, k)  # concurrent searches share one scan
        return self._search_now(queries, k, allowed_ids)

    @property
    def _scans_reduced(self) -> bool:
        """True when searches scan a 16-bit copy and re-score (bf16 on a GPU scans float32 there)."""
        return self.storage == "fp16" or (self.storage in ("bf16", "int8") and not self.use_gpu)

    def _search_now(self, queries: np.ndarray, k: int, allowed_ids=None) -> tuple[np.ndarray, np.ndarray]:
        with self._lock, _omp_threads(1 if len(queries) < FEW_QUERIES else None):
            allowed = None
            if allowed_ids is not None:
                allowed = np.unique(check_ids(allowed_ids, "allowed_ids"))
                allowed = allowed[self._member_mask(allowed)]
                if not self._scans_reduced:
                    return self._search_allowed(queries, k, allowed)
                if self.storage in ("bf16", "int8") and allowed.size * SUBSET_GATHER_FRACTION <= len(self):
                    # float32 rows at hand, and a filtered float32 search reads only the allowed rows
                    # (10 % allowed: 29 ms against a masked bf16 scan's 136, measured under load)
                    return self._search_allowed(queries, k, allowed)
            elif len(self) == 0:
                return empty(len(queries), k)
            elif not self._scans_reduced:
                return self._search_all(queries, k)
        return self._reduced_search(queries, k, allowed)

    def _reduced_search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None):
        if self._scan_storage == "int8" and len(queries) * len(self) <= INT8_KEPT_SCORES:
            return self._int8_search(queries, k, allowed)
        return self._widening_search(queries, k, allowed)

    def _int8_search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None):
        """int8: one scan that keeps every row's score; the best c are re-scored in float32, and for a
        query whose k-th exact score does not clear the c-th candidate's scan score by the error bound,
        every row whose scan score comes within the bound of that k-th score is re-scored as well (a
        superset of the true top k: the same answer as a wider scan, without scanning again)."""
        query_codes = int8.QueryCodes(queries)
        with self._lock:
            _, _, row_ids = self._storage_rows()  # a snapshot: replaced, never changed, by add / remove
            matrix = self._scan_matrix()
            scores = matrix.scores(query_codes, 0, len(matrix))
            if allowed is not None:
                scores[:, ~np.isin(row_ids, allowed, assume_unique=True)] = -np.inf
            bound = int8.error_bound(query_codes, self._row_norm_bound(), matrix.max_error, self.dim)
        candidate_scores, candidates = top_c(scores, row_ids, rescore_candidates(k, "int8"))
        answer = self._rescore(queries, candidate_scores, candidates, k)
        kth = answer[0][:, k - 1]
        unsure = (candidates >= 0).all(axis=1) & ~(kth > candidate_scores[:, -1] + bound)
        if unsure.any():
            self.widened += 1
        for i in np.flatnonzero(unsure).tolist():
            within = (scores[i] >= kth[i] - bound[i]) & (scores[i] > -np.inf)
            with self._lock:
                wanted = row_ids[within]
                wanted = wanted[self._member_mask(wanted)]  # removed since the scan: dropped
                answer[0][i], answer[1][i] = (row[0] for row in self._exact(queries[i : i + 1], k, wanted))
        return answer

    def _widening_search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None):
        """A 16-bit scan for candidates, re-scored in float32; repeated with 8x the candidates while an
        item outside them could still belong in the top k (see the module doc)."""
        c = rescore_candidates(k, self._scan_storage)
        query_codes = int8.QueryCodes(queries) if self._scan_storage == "int8" else None
        while True:
            with self._lock:
                scanned = len(self) if allowed is None else allowed.size
                scores, ids = self._candidates(queries, c, allowed, query_codes)
                row_norm = self._row_norm_bound()
                row_error = self._int8_copy.max_error if query_codes is not None else 0.0
            answer = self._rescore(queries, scores, ids, k)  # outside the lock: it may read the database
            full = (ids >= 0).all(axis=1)  # c candidates came back: rows outside them exist
            if not full.any() or c >= scanned:
                return answer
            boundary = scores[:, -1]  # the c-th candidate's scan score: no other row scanned higher
            if query_codes is not None:
                reach = boundary + int8.error_bound(query_codes, row_norm, row_error, self.dim)
            else:
                reach = boundary + score_error_bound(
                    SCAN_DTYPES[self._scan_storage],
                    boundary,
                    np.linalg.norm(queries, axis=1),
                    row_norm,
                    self.dim,
                )
            if not (full & ~(answer[0][:, k - 1] > reach)).any():
                return answer
            self.widened += 1
            c = min(8 * c, scanned)

    def _candidates(self, queries: np.ndarray, c: int, allowed: np.ndarray | None, query_codes=None):
        """The best c by the reduced scan (among ``allowed`` if given), best first."""
        _, _, row_ids = self._storage_rows()
        matrix = self._scan_matrix()
        if isinstance(matrix, int8.Int8Rows):
            mask = None if allowed is None else np.isin(row_ids, allowed, assume_unique=True)
            return int8_topc(query_codes, matrix, row_ids, c, mask)
        if allowed is None:
            return scan_topc(queries, matrix, row_ids, c)
        if allowed.size * SUBSET_GATHER_FRACTION > len(row_ids):  # most rows: one masked scan
            mask = np.isin(row_ids, allowed, assume_unique=True)
            return scan_topc(queries, matrix, row_ids, c, mask)
        best = TopK(len(queries), c)  # fewer rows: gather and scan only them, block by block
        sorted_ids, rows, _ = self._storage_rows()
        for start in range(0, allowed.size, EXACT_CHUNK):
            chunk = allowed[start : start + EXACT_CHUNK]
            picked = torch.from_numpy(rows[np.searchsorted(sorted_ids, chunk)])
            best.push(*scan_topc(queries, as_tensor(matrix)[picked], chunk, c))
        return best.result()

    def prepare(self) -> None:
        """The bf16 / int8 scan copy of every row, made now instead of by the first search (1M x 2048 int8:
        ~6 s on 2 cores)."""
        if self._scan_storage in ("bf16", "int8") and self.kind == "flat":
            with self._lock:
                self._scan_matrix()

    def _scan_matrix(self) -> np.ndarray | torch.Tensor | int8.Int8Rows:
        """The rows a reduced scan reads, aligned with faiss's rows: fp16 the stored codes, bf16 the
        bfloat16 copy, int8 the int8 codes (copies brought up to date here: added rows are converted
        on the first scan after)."""
        if self._scan_storage == "int8":
            return self._int8_matrix()
        if self._scan_storage != "bf16":
            return self._storage_matrix()
        total = self._index.ntotal
        if self._scan_copy is None or self._scan_rows > total:
            self._scan_copy, self._scan_rows = None, 0
        if total == 0:  # an empty gallery (a new store prepared at start-up): nothing to copy yet
            return torch.empty((0, self.dim), dtype=torch.bfloat16)
        if self._scan_rows < total:
            if self._scan_copy is None or len(self._scan_copy) < total:
                # exact size when built (after a load or bulk add), room for a quarter more when grown
                size = total if self._scan_copy is None else max(total, (total * 5) // 4)
                grown = torch.empty((size, self.dim), dtype=torch.bfloat16)
                if self._scan_copy is not None:
                    grown[: self._scan_rows] = self._scan_copy[: self._scan_rows]
                self._scan_copy = grown
            fresh = self._storage_matrix()[self._scan_rows : total]
            for start in range(0, len(fresh), EXACT_CHUNK):  # bounded float32 temporaries
                stop = min(len(fresh), start + EXACT_CHUNK)
                self._scan_copy[self._scan_rows + start : self._scan_rows + stop] = torch.from_numpy(
                    fresh[start:stop]
                )
            self._scan_rows = total
        return self._scan_copy[:total]

    def _int8_matrix(self) -> int8.Int8Rows:
        total = self._index.ntotal
        if self._int8_copy is None or len(self._int8_copy) > total:
            self._int8_copy = int8.Int8Rows(self.dim)
        held = len(self._int8_copy)
        if held < total:
            self._int8_copy.reserve(total)
            fresh = self._storage_matrix()[held:total]
            for start in range(0, len(fresh), EXACT_CHUNK):  # bounded temporaries
                self._int8_copy.append(fresh[start : start + EXACT_CHUNK])
        return self._int8_copy

    def _int8_copy_keep(self, removed: np.ndarray) -> np.ndarray | None:
        """int8: which rows of the int8 copy survive removing ``removed`` (None: no copy to keep)."""
        if self._int8_copy is None:
            return None
        _, _, row_ids = self._storage_rows()
        return ~np.isin(row_ids[: len(self._int8_copy)], removed)

    def _scan_copy_keep(self, removed: np.ndarray) -> np.ndarray | None:
        """bf16: which rows of the scan copy survive removing ``removed`` (None: no copy to keep)."""
        if self._scan_copy is None:
            return None
        _, _, row_ids = self._storage_rows()
        return ~np.isin(row_ids[: self._scan_rows], removed)

    def _compact_scan_copy(self, keep: np.ndarray | None) -> None:
        """Remove rows from the scan copy as faiss removes them from its storage (order kept)."""
        if keep is None:
            return
        if keep.all():
            return
        kept = self._scan_copy[: self._scan_rows][torch.from_numpy(keep)]
        self._scan_copy, self._scan_rows = kept, len(kept)

    def _row_norm_bound(self) -> float:
        """The largest norm of a stored row (computed once after a load, then kept up to date by add)."""
        if self._row_norm is None:
            matrix = self._storage_matrix()
            largest = 0.0
            for start in range(0, len(matrix), EXACT_CHUNK):
                block = widen(matrix[start : start + EXACT_CHUNK])
                largest = max(largest, float(np.linalg.norm(block, axis=1).max()))
            self._row_norm = largest
        return self._row_norm

    def _rescore(self, queries: np.ndarray, scores: np.ndarray, ids: np.ndarray, k: int):
        """Exact float32 scores for candidate ids (q, c) -> top k. Vectors come from the float32 rows
        held (bf16) or the attached source (fp16: the database; candidates it no longer has are
        dropped); fp16 without a source: the stored values."""
        wanted = np.unique(ids[ids >= 0])
        if wanted.size == 0:
            return empty(len(queries), k)
        if self._source is not None and self.storage == "fp16":
            found = self._source(wanted)
            held = np.array([i for i in wanted.tolist() if i in found], dtype=np.int64)
            vectors = (
                np.stack([np.asarray(found[int(i)], dtype=np.float32) for i in held])
                if held.size
                else np.empty((0, self.dim), np.float32)
            )
        else:
            with self._lock:
                held = wanted[self._member_mask(wanted)]
                vectors = self._vectors_of(held)
        if held.size == 0:
            return empty(len(queries), k)
        rows = np.minimum(np.searchsorted(held, ids), held.size - 1)
        valid = (ids >= 0) & (held[rows] == ids)
        # one dot product per candidate, on this thread: a BLAS call this small costs more in thread
        # hand-offs than in arithmetic on a busy machine (1 ms vs 14-35 ms measured under load)
        exact = np.einsum("qd,qcd->qc", queries, vectors[rows])
        return topk(np.where(valid, exact, -np.inf), np.where(valid, ids, -1), k)

    def _search_all(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        kk = min(k, len(self))
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.ef_search, kk)
            removed = exclude = None  # locals keep the selectors alive during the search
            if self._tombstones.size:
                removed = faiss.IDSelectorBatch(self._tombstones)
                exclude = faiss.IDSelectorNot(removed)
                params.sel = exclude
            scores, ids = self._index.search(queries, kk, params=params)
            del removed, exclude
        elif self.use_gpu and self._gpu() is not None:
            scores, ids = self._gpu_index.search(queries, kk)
        elif not self.is_ivf_trained and len(queries) < FEW_QUERIES:
            return self._flat_scan(queries, k)
        else:
            scores, ids = self._index.search(queries, kk)
        if self.kind == "hnsw" and (ids < 0).any() and len(self) >= kk:
            # the graph search came back short (heavily tombstoned neighbourhood): answer exactly
            return self._exact(queries, k, self._sorted_ids)
        return pad(scores, ids, k)

    def _flat_scan(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the whole flat storage with a BLAS matrix product.

        For a few queries faiss scans on one thread; the matrix product splits the rows across the
        cores, which roughly halves the memory-bound scan on 2 cores (100k x 2048: 18 ms vs 33 ms),
        and a batch of coalesced queries reads the matrix once.
        """
        _, _, row_ids = self._storage_rows()
        return scan_topc(queries, self._storage_matrix(), row_ids, k)

    def _search_allowed(self, queries: np.ndarray, k: int, allowed: np.ndarray):
        if allowed.size == 0:
            return empty(len(queries), k)
        exact_limit = (
            EXACT_SUBSET_FLAT if self.kind == "flat" or not self._approximate() else EXACT_SUBSET_APPROX
        )
        if allowed.size <= max(exact_limit, k):
            return self._exact(queries, k, allowed)
        kk = min(k, allowed.size)
        selector = faiss.IDSelectorBatch(allowed)
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.ef_search, kk)
        elif self.is_ivf_trained:
            params = faiss.SearchParametersIVF()
            params.nprobe = self._index.nprobe
        else:
            params = faiss.SearchParameters()
        params.sel = selector
        scores, ids = self._index.search(queries, kk, params=params)
        if (ids < 0).any():  # an approximate index missed allowed items: fall back to exact
            return self._exact(queries, k, allowed)
        return pad(scores, ids, k)

    def _approximate(self) -> bool:
        return self.kind == "hnsw" or self.is_ivf_trained

    def _exact(self, queries: np.ndarray, k: int, candidate_ids: np.ndarray):
        """Exact top-k over candidate ids (all held), chunked to bound memory."""
        best = TopK(len(queries), k)
        for start in range(0, candidate_ids.size, EXACT_CHUNK):
            chunk = candidate_ids[start : start + EXACT_CHUNK]
            best.push(queries @ self._vectors_of(chunk).T, chunk)
        return best.result()

    def _gpu(self):
        """A GPU copy for unfiltered flat / ivf searches, made lazily and dropped on removal."""
        if self.kind == "hnsw":
            return None
        if self._gpu_index is None:
            try:
                if self._gpu_res is None:
                    self._gpu_res = faiss.StandardGpuResources()
                self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_res, 0, self._index)
            except Exception as exc:  # a GPU build that cannot take this index: stay on the CPU
                logger.warning("faiss GPU index unavailable (%s); searching on the CPU", exc)
                self.use_gpu = False
                return None
        return self._gpu_index

    # ----------------------------------------------------------------- persistence
    def _settings(self) -> dict:
        return {
            "dim": self.dim,
            "kind": self.kind,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "hnsw_m": self.hnsw_m,
            "ef_search": self.ef_search,
            "ef_construction": self.ef_construction,
            "storage": self.storage,
            "tombstones": self._tombstones.tolist(),
        }

    def save(self, path: str | os.PathLike) -> None:
        with self._lock:
            persistence.write_atomic(
                path,
                self._settings(),
                lambda write: faiss.write_index(self._index, faiss.PyCallbackIOWriter(write)),
            )
        logger.info("saved %s index of %d vectors to %s", self.kind, len(self), path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, use_gpu: bool | None = None) -> FaissVectorStore:
        settings, index = persistence.read_verified(
            path, lambda _header, read: faiss.read_index(faiss.PyCallbackIOReader(read))
        )
        try:
            self = cls(
                settings["dim"],
                settings["kind"],
                nlist=settings["nlist"],
                nprobe=settings["nprobe"],
                hnsw_m=settings["hnsw_m"],
                ef_search=settings["ef_search"],
                ef_construction=settings["ef_construction"],
                use_gpu=use_gpu,
                storage=settings.get("storage", "fp32"),
            )
            if index.d != self.dim:
                raise ValueError(f"faiss index has dim {index.d}, header says {self.dim}")
            if isinstance(index, faiss.IndexIVFFlat):
                index.set_direct_map_type(faiss.DirectMap.Hashtable)
                index.nprobe = self._nprobe_for(index.nlist)
                all_ids = _ivf_ids(index)
            elif isinstance(index, faiss.IndexIDMap2):
                all_ids = faiss.vector_to_array(index.id_map).astype(np.int64)
                inner = faiss.downcast_index(index.index)
                wanted = faiss.IndexScalarQuantizer if self.storage == "fp16" else faiss.IndexFlat
                if self.kind == "flat" and not isinstance(inner, wanted):
                    raise ValueError(
                        f"header says {self.storage} storage, the index holds {type(inner).__name__}"
                    )
            else:
                raise ValueError(f"unexpected faiss index type {type(index).__name__}")
            self._index = index
            self._row_norm = None  # measured on the first 16-bit scan
            self._tombstones = np.asarray(settings.get("tombstones", []), dtype=np.int64)
            self._sorted_ids = np.setdiff1d(np.unique(all_ids), self._tombstones)
            if np.unique(all_ids).size != all_ids.size:
                raise ValueError("the index holds duplicate ids")
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise VectorStoreFileError(f"index file {path} is inconsistent: {exc}") from exc
        logger.info("loaded %s index of %d vectors from %s", self.kind, len(self), path)
        return self


def widen(rows: np.ndarray) -> np.ndarray:
    """Stored rows as float32 (float16 through torch: numpy converts half precision about 10x slower)."""
    if rows.dtype == np.float16:
        return torch.from_numpy(np.ascontiguousarray(rows)).float().numpy()
    return rows


def _ivf_ids(index: faiss.IndexIVFFlat) -> np.ndarray:
    invlists = index.invlists
    parts = []
    for list_no in range(index.nlist):
        size = invlists.list_size(list_no)
        if size:
            ptr = invlists.get_ids(list_no)
            parts.append(faiss.rev_swig_ptr(ptr, size).astype(np.int64).copy())
            invlists.release_ids(list_no, ptr)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
