"""model.health: the probe-batch similarity spread that flags collapsed models."""

from __future__ import annotations

import numpy as np
import pytest

from model.embedder import Embedder
from model.health import ALIKE_SIMILARITY, check_model, probe_images, similarity_spread


def _unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_identical_vectors_are_collapsed():
    health = similarity_spread(_unit(np.ones((5, 8))))
    assert health.collapsed
    assert health.mean_similarity == pytest.approx(1.0) and health.spread == pytest.approx(0.0)
    assert health.alike_share == 1.0 and "COLLAPSED" in health.verdict


def test_orthogonal_vectors_are_healthy():
    health = similarity_spread(np.eye(6))
    assert not health.collapsed
    assert health.mean_similarity == pytest.approx(0.0) and health.alike_share == 0.0
    assert health.verdict.startswith("ok")


def test_hand_worked_spread():
    # pairs: (a, b) = 1.0, (a, c) = 0.0, (b, c) = 0.0 -> mean 1/3, one pair of three alike
    health = similarity_spread(_unit([[1, 0], [1, 0], [0, 1]]))
    assert health.mean_similarity == pytest.approx(1 / 3, abs=1e-4)
    assert health.min_similarity == pytest.approx(0.0) and health.max_similarity == pytest.approx(1.0)
    assert health.alike_share == pytest.approx(1 / 3, abs=1e-4) and not health.collapsed


def test_mostly_alike_is_collapsed_even_with_one_outlier():
    base = np.zeros((10, 4))
    base[:, 0] = 1.0
    base[:9, 1] = np.linspace(0, 0.05, 9)  # nine nearly identical vectors
    base[9] = [0, 0, 1, 0]  # one different: 9 of 45 pairs are not alike -> 80 % alike
    health = similarity_spread(_unit(base))
    assert health.alike_share == pytest.approx(36 / 45, abs=1e-4)
    assert not health.collapsed  # 80 % < 90 %
    health = similarity_spread(_unit(base[:9]))
    assert health.collapsed and health.min_similarity >= ALIKE_SIMILARITY


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="N >= 2"):
        similarity_spread(np.ones((1, 4)))
    with pytest.raises(ValueError, match="N >= 2"):
        similarity_spread(np.ones(4))


def test_probe_images_are_deterministic_and_different():
    first, again = probe_images((64, 32)), probe_images((64, 32))
    assert [im.size for im in first] == [(32, 64)] * len(first)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again, strict=True))
    means = {tuple(np.asarray(im).reshape(-1, 3).mean(axis=0).round()) for im in first}
    assert len(means) == len(first)


def test_random_network_is_reported_collapsed():
    embedder = Embedder.random_init(variant="none", input_size=(64, 32), device="cpu")
    health = check_model(embedder)
    assert health.collapsed and health.mean_similarity > 0.99


class _ColourEmbedder:
    """A model that tells pictures apart by colour: the mean RGB of three bands, centred."""

    input_size = (64, 32)

    def embed(self, images):
        rows = []
        for image in images:
            pixels = np.asarray(image, dtype=np.float64)
            rows.append(np.concatenate([band.mean(axis=(0, 1)) for band in np.array_split(pixels, 3)]) - 128)
        return _unit(rows)


def test_a_model_that_separates_the_probes_is_healthy():
    health = check_model(_ColourEmbedder())
    assert not health.collapsed and health.min_similarity < 0.5
