"""Evaluation under the standard re-ID protocol: embed query and gallery, rank by cosine distance.

    report = evaluate_checkpoint("runs/market1501/final.pt", "market1501", "data/market1501", out_dir="eval")

Embeddings come from ``model.Embedder`` (the checkpoint's preprocessing, L2-normalised, optional flip
TTA); distances are cosine (1 - dot product of unit vectors), or k-reciprocal re-ranked (k1=20, k2=6,
lambda=0.3); CMC / mAP / mINP come from ``training.retrieval_metrics.evaluate_rank``. Both features are
scored from one pass over the images, as the official evaluator prints both: ``feat_`` (pooled) and
``feat`` (after the BNNeck) under ``by_feature``; the top-level numbers are the embedder's feature's.
The output folder gets ``<name>.json`` (the report) and ``ranked_lists.png`` (a few queries and their
top 10, green = same person, red = not).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model.embedder import Embedder
from model.errors import ReidError
from training.data import build_eval_loader, check_batch
from training.datasets import load_dataset
from training.datasets.base import ImageRecord, ReIDDataset
from training.rerank import k_reciprocal_rerank
from training.retrieval_metrics import evaluate_rank
from training.visualize import draw_ranked_lists

logger = logging.getLogger(__name__)

FEATURES = ("feat_", "feat")
SUMMARY_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")


@dataclass
class EvaluationResult:
    report: dict[str, Any]  # JSON-ready summary (rank1/5/10, mAP, mINP, counts, settings)
    distmat: np.ndarray  # (Q, G) distances used for ranking
    query: list[ImageRecord]
    gallery: list[ImageRecord]


def extract_features(
    embedder: Embedder,
    records: Sequence[ImageRecord],
    workers: int = 2,
    desc: str = "embed",
    features: Sequence[str] = FEATURES,
) -> dict[str, np.ndarray]:
    """{feature name: (N, D) float32 unit-norm embeddings of the records' images, in order}."""
    loader = build_eval_loader(records, embedder.input_size, batch_size=embedder.batch_size, workers=workers)
    out = {name: np.empty((len(records), embedder.dim), dtype=np.float32) for name in features}
    with tqdm(total=len(records), desc=desc, unit="img", leave=False, disable=None) as bar:  # terminal only
        for batch in loader:
            batch = check_batch(batch)
            vectors = embedder.embed_features(batch.pixels, features)
            for name in features:
                out[name][batch.indices] = vectors[name]
            bar.update(len(batch.indices))
    return out


def cosine_distance(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """1 - cosine similarity of unit vectors: (Q, D), (G, D) -> (Q, G) float32 in [0, 2]."""
    return (1.0 - query @ gallery.T).astype(np.float32)


def evaluate_embedder(
    embedder: Embedder,
    dataset: ReIDDataset,
    *,
    rerank: bool = False,
    workers: int = 2,
) -> EvaluationResult:
    """Embed the dataset's query and gallery and score the ranking (see the module docstring)."""
    if not dataset.query or not dataset.gallery:
        raise ReidError(f"{dataset.name} has no query/gallery split to evaluate on")
    start = time.perf_counter()
    query = extract_features(embedder, dataset.query, workers, "query")
    gallery = extract_features(embedder, dataset.gallery, workers, "gallery")
    embed_seconds = time.perf_counter() - start
    ids = (
        np.array([r.pid for r in dataset.query]),
        np.array([r.pid for r in dataset.gallery]),
        np.array([r.camid for r in dataset.query]),
        np.array([r.camid for r in dataset.gallery]),
    )
    by_feature, distmats = {}, {}
    for name in FEATURES:
        if rerank:
            # on the embedder's device: the GPU when there is one (chunked: the CPU copes with large galleries)
            distmats[name] = k_reciprocal_rerank(
                query[name], gallery[name], k1=20, k2=6, lambda_value=0.3, device=embedder.device
            )
        else:
            distmats[name] = cosine_distance(query[name], gallery[name])
        by_feature[name] = _summary(evaluate_rank(distmats[name], *ids))
    scores = by_feature[embedder.feature]
    distmat = distmats[embedder.feature]
    report = {
        "dataset": dataset.name,
        "root": str(dataset.root),
        "model": embedder.meta.to_dict(),
        "feature": embedder.feature,
        "flip": embedder.flip,
        "rerank": rerank,
        "distance": "k-reciprocal (k1=20, k2=6, lambda=0.3) on cosine features" if rerank else "cosine",
        "num_query": len(dataset.query),
        "num_gallery": len(dataset.gallery),
        **scores,
        "by_feature": by_feature,
        "embed_seconds": round(embed_seconds, 2),
        "device": str(embedder.device),
    }
    return EvaluationResult(report, distmat, list(dataset.query), list(dataset.gallery))


def _summary(scores: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready rank-1/5/10, mAP, mINP, the CMC head and query counts of ``evaluate_rank``'s result."""
    cmc = scores["cmc"]
    return {
        "num_valid_queries": scores["num_valid_queries"],
        "num_skipped_queries": scores["num_skipped_queries"],
        "rank1": float(cmc[0]),
        "rank5": float(cmc[min(4, len(cmc) - 1)]),
        "rank10": float(cmc[min(9, len(cmc) - 1)]),
        "mAP": float(scores["mAP"]),
        "mINP": float(scores["mINP"]),
        "cmc": [float(v) for v in cmc[:20]],
    }


def write_report(
    result: EvaluationResult, out_dir: str | Path, name: str = "eval", ranked_lists: int = 6
) -> dict[str, Path]:
    """Write ``<name>.json`` and (when ``ranked_lists`` > 0) ``ranked_lists.png``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"report": out_dir / f"{name}.json"}
    paths["report"].write_text(json.dumps(result.report, indent=2) + "\n", encoding="utf-8")
    if ranked_lists > 0:
        paths["picture"] = draw_ranked_lists(
            result.distmat,
            result.query,
            result.gallery,
            out_dir / "ranked_lists.png",
            num_queries=ranked_lists,
        )
    return paths


def evaluate_checkpoint(
    weights: str | Path,
    dataset: str,
    root: str | Path,
    *,
    feature: str | None = None,
    flip: bool = False,
    rerank: bool = False,
    out_dir: str | Path | None = None,
    device: str | None = None,
    precision: str = "fp32",
    batch_size: int = 128,
    workers: int = 2,
    ranked_lists: int = 6,
    dataset_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint (ours or official) on a dataset; write the report and picture to ``out_dir``.

    Returns the report dict, with ``report_path`` and ``picture_path`` when written.
    """
    embedder = Embedder.from_checkpoint(
        weights, device=device, flip=flip, feature=feature, batch_size=batch_size, precision=precision
    )
    data = load_dataset(dataset, root, **(dataset_options or {}))
    logger.info(
        "evaluating %s on %s (%d queries, %d gallery)", weights, dataset, len(data.query), len(data.gallery)
    )
    result = evaluate_embedder(embedder, data, rerank=rerank, workers=workers)
    result.report["weights"] = str(weights)
    report = dict(result.report)
    if out_dir is not None:
        paths = write_report(result, out_dir, ranked_lists=ranked_lists)
        report["report_path"] = str(paths["report"])
        if "picture" in paths:
            report["picture_path"] = str(paths["picture"])
    return report
