"""What the service tells operators about its own trustworthiness: model health and warnings in /readyz."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
from fastapi.testclient import TestClient

import service.app
from model.embedder import Embedder
from model.health import similarity_spread
from service.app import create_app
from service.trust import operator_warnings
from tests.service.service_fixtures import make_settings

pytestmark = pytest.mark.databases("sqlite", "postgresql", "postgresql+milvus")

SECRET = "ops:admin:a-long-enough-secret-0123456789"


def test_random_weights_in_dev_mode_are_reported(settings, embedder, caplog):
    with caplog.at_level(logging.INFO, logger="service.app"):
        with TestClient(create_app(settings, embedder=embedder)) as client:
            ready = client.get("/readyz").json()
    assert [w["code"] for w in ready["warnings"]] == ["random_weights", "dev_keys"]
    assert ready["model_health"]["collapsed"] is True and ready["model_health"]["probes"] >= 2
    assert ready["model_health"]["mean_similarity"] > 0.99
    assert any("model health: COLLAPSED" in r.getMessage() for r in caplog.records)


def test_a_collapsed_trained_model_is_flagged_without_dev_mode(tmp_path, embedder):
    trained = Embedder(embedder.net, replace(embedder.meta, source="rga-reid"), device="cpu")
    settings = make_settings(tmp_path, dev_mode=False, weights=tmp_path / "given.pt", api_keys=SECRET)
    with TestClient(create_app(settings, embedder=trained)) as client:
        ready = client.get("/readyz").json()
    assert [w["code"] for w in ready["warnings"]] == ["collapsed_model"]
    assert "nearly the same vector" in ready["warnings"][0]["message"]


def test_a_healthy_model_without_dev_mode_has_no_warnings(tmp_path, embedder, monkeypatch):
    healthy = similarity_spread(np.eye(4))
    monkeypatch.setattr(service.app, "check_model", lambda _embedder: healthy)
    trained = Embedder(embedder.net, replace(embedder.meta, source="rga-reid"), device="cpu")
    settings = make_settings(tmp_path, dev_mode=False, weights=tmp_path / "given.pt", api_keys=SECRET)
    with TestClient(create_app(settings, embedder=trained)) as client:
        ready = client.get("/readyz").json()
    assert ready["warnings"] == [] and ready["model_health"]["collapsed"] is False


def test_warning_rules():
    collapsed = similarity_spread(np.ones((3, 2)) / np.sqrt(2))
    assert [w["code"] for w in operator_warnings(False, "rga-reid", collapsed)] == ["collapsed_model"]
    # random weights say so once, not also "collapsed"
    assert [w["code"] for w in operator_warnings(False, "random-init", collapsed)] == ["random_weights"]
    assert [w["code"] for w in operator_warnings(True, "official-rga", None)] == ["dev_keys"]
    assert "reid keys create" in operator_warnings(True, "official-rga", None)[0]["message"]
