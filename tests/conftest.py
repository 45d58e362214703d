"""Fixtures shared by all test folders: a throwaway PostgreSQL cluster (tests/postgres.py)."""

from __future__ import annotations

import os

import pytest

from tests.postgres import BIN_DIR, PostgresCluster, binaries_present


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
