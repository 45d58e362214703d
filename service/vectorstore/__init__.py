"""Vector stores: one interface (``base.VectorStore``) and its engines.

- ``base``: the interface, its file error and the shared input checks.
- ``faiss_store``: ``FaissVectorStore``, in-process faiss (flat / IVF / HNSW, GPU copy when available).
- ``persistence``: the atomic, checksummed file a store is saved to.
- ``topk``: the one exact top-k helper every scan uses.

``create_store`` / ``load_store`` are what the service calls, so that it names no engine itself.
"""

from __future__ import annotations

import os

from service.vectorstore.base import VectorStore, VectorStoreFileError
from service.vectorstore.faiss_store import KINDS, FaissVectorStore

__all__ = ["KINDS", "FaissVectorStore", "VectorStore", "VectorStoreFileError", "create_store", "load_store"]


def create_store(dim: int, kind: str = "flat", **options) -> VectorStore:
    """A new, empty store of the configured kind."""
    return FaissVectorStore(dim, kind, **options)


def load_store(path: str | os.PathLike, **options) -> VectorStore:
    """The store saved at ``path`` (VectorStoreFileError when missing or unreadable)."""
    return FaissVectorStore.load(path, **options)
