"""Fixtures: a real app (create_app) over SQLite in tmp_path, with one small random network per session.

Modules marked `pytest.mark.databases("sqlite", "postgresql", "postgresql+milvus")` run every test that uses
`settings` or `client` once per backend: SQLite + faiss in tmp_path; a fresh database in the session's
throwaway PostgreSQL cluster (tests/postgres.py; skipped without PostgreSQL 15, a failure under CI=1) with
faiss; or that with the vectors in the session's Milvus server (tests/milvus.py; a collection per test).
Helpers the test modules import (keys, settings, images, upload builders) are in service_fixtures.py.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from model.embedder import Embedder
from service.app import create_app
from service.settings import Settings
from tests.service.service_fixtures import make_settings


def pytest_generate_tests(metafunc):
    if "database" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("databases")
        metafunc.parametrize("database", marker.args if marker else ("sqlite",), indirect=True)


@pytest.fixture
def database(request) -> str:
    """Which database engine the test's app runs on: 'sqlite' unless its module asks for more."""
    return request.param


@pytest.fixture
def database_url(database, request) -> str | None:
    """REID_DATABASE_URL for the test's app: None (SQLite in the data folder) or a fresh PostgreSQL database."""
    if database == "sqlite":
        return None
    if database in ("postgresql", "postgresql+milvus"):
        return request.getfixturevalue("postgres_url")
    raise ValueError(f"unknown database {database!r}")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder.random_init(variant="none", input_size=(64, 32), device="cpu", batch_size=16)


@pytest.fixture
def vector_store_settings(database, request) -> dict:
    """Settings of the test's vector store: faiss (none to give) or a Milvus collection of its own."""
    if not database.endswith("+milvus"):
        return {}
    server = request.getfixturevalue("milvus_server")
    return dict(
        vector_store="milvus",
        milvus_uri=server.uri,
        milvus_collection=request.getfixturevalue("milvus_pooled_collection"),
    )


@pytest.fixture
def settings(tmp_path, database_url, vector_store_settings) -> Settings:
    return make_settings(tmp_path, database_url=database_url, **vector_store_settings)


@pytest.fixture
def client(settings, embedder):
    with TestClient(create_app(settings, embedder=embedder)) as c:
        yield c
