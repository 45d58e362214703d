"""Vector stores: one interface (``base.VectorStore``) and its engines.

- ``base``: the interface, its file error and the shared input checks.
- ``faiss_store``: ``FaissVectorStore``, in-process faiss (flat / IVF / HNSW, GPU copy when available).
- ``milvus_store``: ``MilvusVectorStore``, a Milvus collection (imported only when asked for: pymilvus is
  in the ``milvus`` extra).
- ``persistence``: the atomic, checksummed file a store is saved to.
- ``topk``: the one exact top-k helper every scan uses.

``create_store`` / ``load_store`` are what the service calls, so that it names no engine itself.
"""

from __future__ import annotations

import os

from service.vectorstore.base import (
    ItemAttributes,
    ItemFilter,
    SearchIncompleteError,
    VectorStore,
    VectorStoreFileError,
)
from service.vectorstore.faiss_store import KINDS, FaissVectorStore

__all__ = [
    "KINDS",
    "FaissVectorStore",
    "ItemAttributes",
    "ItemFilter",
    "SearchIncompleteError",
    "VectorStore",
    "VectorStoreFileError",
    "create_store",
    "load_store",
]


def create_store(dim: int, kind: str = "flat", engine: str = "faiss", **options) -> VectorStore:
    """A new, empty faiss store of the configured kind; for ``engine="milvus"`` the configured collection
    (created when missing, else opened as it is: Milvus keeps its own data)."""
    if engine == "milvus":
        from service.vectorstore.milvus_store import MilvusVectorStore

        return MilvusVectorStore(dim, **options)
    if engine != "faiss":
        raise ValueError(f"vector store engine must be faiss or milvus, got {engine!r}")
    return FaissVectorStore(dim, kind, **options)


def load_store(path: str | os.PathLike, **options) -> VectorStore:
    """The store saved at ``path`` (VectorStoreFileError when missing or unreadable): a faiss index file,
    or a Milvus collection reference."""
    from service.vectorstore import persistence

    if str(persistence.peek_header(path).get("format", "")).startswith("milvus-reference"):
        from service.vectorstore.milvus_store import MilvusVectorStore

        return MilvusVectorStore.load(path, **options)
    return FaissVectorStore.load(path, **options)
