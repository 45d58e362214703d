"""Fixtures shared by all test folders: a throwaway PostgreSQL cluster (tests/postgres.py) and a throwaway
Milvus server (tests/milvus.py), each started once per session on first use."""

from __future__ import annotations

import os

import pytest

from tests import milvus as milvus_testing
from tests.postgres import BIN_DIR, PostgresCluster, binaries_present


@pytest.fixture(autouse=True)
def _cpu_without_native_bf16(monkeypatch):
    """In-process, every test sees a CPU without native bf16, so precision "auto" means fp32 on any CI
    machine and the tests' float32 tolerances hold; tests of that choice set model.device.cpu_flags
    themselves (processes a test starts see the real CPU)."""
    from model import device

    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset())


@pytest.fixture(scope="session")
def postgres_cluster():
    """One PostgreSQL 15 cluster for the whole run, started on first use; stopped by PID at the end."""
    if not binaries_present():
        message = f"PostgreSQL 15 binaries not found in {BIN_DIR} (apt-get install postgresql-15)"
        if os.environ.get("CI") == "1":
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("psycopg", reason="psycopg 3 is in the 'postgres' extra")
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster) -> str:
    """A fresh empty database in the session's cluster."""
    return postgres_cluster.database()


@pytest.fixture(scope="session")
def milvus_server():
    """One Milvus standalone (the `milvus` package's binaries) for the whole run, started on first use on
    free 127.0.0.1 ports; stopped by PID at the end."""
    if not milvus_testing.package_present():
        message = "the milvus server package / pymilvus are not installed (they are in the dev extra)"
        if os.environ.get("CI") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = milvus_testing.MilvusServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def milvus_collections(milvus_server):
    """Collections emptied after use, for reuse by the next test (loading a new one costs 2-3 s). Only for
    tests whose vectors all have one dim (the service tests: the session's network)."""
    return milvus_testing.CollectionPool(milvus_server)


@pytest.fixture
def milvus_collection(milvus_server):
    """A fresh collection name for one test (any dim); the collection is dropped afterwards."""
    name = milvus_server.collection()
    try:
        yield name
    finally:
        milvus_testing.drop_collection(milvus_server, name)


@pytest.fixture
def milvus_pooled_collection(milvus_collections):
    """A collection name for one service test: empty (reused from the pool) or not yet created; emptied
    afterwards. Every user must store vectors of the same dim."""
    name = milvus_collections.take()
    try:
        yield name
    finally:
        milvus_collections.give_back(name)
