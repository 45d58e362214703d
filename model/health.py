"""Is this model worth its numbers? A check that needs no labelled data.

A fixed probe batch (deterministic synthetic "people": head, shirt and trousers of different colours and
shapes, with noise) is embedded, and the spread of the pairwise cosine similarities is measured. A network
that maps every picture to nearly the same vector (random weights, a collapsed or barely trained model)
gives similarities all close to 1: every search score is then ~0.999 and every item joins one visitor.
Such a model is reported as collapsed. The check says nothing about accuracy on real people; it catches
the case where the scores cannot mean anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

PROBE_COUNT = 8
PROBE_SEED = 20261130
# "Nearly all alike": at least this share of the probe pairs are at least this similar.
ALIKE_SIMILARITY = 0.95
ALIKE_SHARE = 0.9


@dataclass(frozen=True)
class ModelHealth:
    """Pairwise cosine similarities of the probe batch (off the diagonal) and the verdict."""

    probes: int
    mean_similarity: float
    min_similarity: float
    max_similarity: float
    spread: float  # standard deviation of the pairwise similarities
    alike_share: float  # share of pairs with similarity >= ALIKE_SIMILARITY
    collapsed: bool

    @property
    def verdict(self) -> str:
        if self.collapsed:
            return (
                f"COLLAPSED: {self.alike_share:.0%} of {self.probes} different probe pictures look alike "
                f"(cosine >= {ALIKE_SIMILARITY}, mean {self.mean_similarity:.3f}); search scores and visitor "
                "counts from this model mean nothing"
            )
        return (
            f"ok: probe similarities spread {self.min_similarity:.2f}..{self.max_similarity:.2f} "
            f"(mean {self.mean_similarity:.2f}, sd {self.spread:.3f})"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def probe_images(size: tuple[int, int], count: int = PROBE_COUNT, seed: int = PROBE_SEED) -> list[Image.Image]:
    """``count`` deterministic, clearly different person-like pictures of ``size`` = (height, width)."""
    height, width = size
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        colours = rng.integers(0, 256, size=(4, 3)).astype(np.float32)
        pixels = np.empty((height, width, 3), dtype=np.float32)
        pixels[:] = colours[3]  # background
        head = int(height * rng.uniform(0.12, 0.22))
        waist = int(height * rng.uniform(0.45, 0.6))
        margin = int(width * rng.uniform(0.1, 0.3))
        pixels[:head, margin : width - margin] = colours[0]
        pixels[head:waist, margin // 2 : width - margin // 2] = colours[1]
        pixels[waist:, margin : width - margin] = colours[2]
        pixels += rng.normal(0, 10, size=pixels.shape)
        images.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return images


def similarity_spread(vectors: np.ndarray) -> ModelHealth:
    """(N, D) unit-norm embeddings of N >= 2 different pictures -> their pairwise similarity spread."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) embeddings, got shape {vectors.shape}")
    similarities = vectors @ vectors.T
    pairs = similarities[np.triu_indices(vectors.shape[0], k=1)]
    alike = float(np.mean(pairs >= ALIKE_SIMILARITY))
    return ModelHealth(
        probes=int(vectors.shape[0]),
        mean_similarity=round(float(pairs.mean()), 4),
        min_similarity=round(float(pairs.min()), 4),
        max_similarity=round(float(pairs.max()), 4),
        spread=round(float(pairs.std()), 4),
        alike_share=round(alike, 4),
        collapsed=alike >= ALIKE_SHARE,
    )


def check_model(embedder) -> ModelHealth:
    """Embed the probe batch with ``embedder`` (a model.Embedder) and measure the spread."""
    return similarity_spread(embedder.embed(probe_images(tuple(embedder.input_size))))
