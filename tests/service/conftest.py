"""Fixtures: a real app (create_app) over SQLite in tmp_path, with one small random network per session.

Helpers the test modules import (keys, settings, images, upload builders) are in service_fixtures.py.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from model.embedder import Embedder
from service.app import create_app
from service.settings import Settings
from tests.service.service_fixtures import make_settings


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder.random_init(variant="none", input_size=(64, 32), device="cpu", batch_size=16)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings, embedder):
    with TestClient(create_app(settings, embedder=embedder)) as c:
        yield c
