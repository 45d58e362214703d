"""bench/scale.py at toy size: the table has a row per engine, faiss rows are measured (exact filtered search
finds the exact answer), and an engine that cannot run is a skipped row with its reason, not a crash."""

from __future__ import annotations

import json

import numpy as np

from bench import scale
from bench.index import Gallery


def test_filtered_truth_respects_the_filter():
    gallery = Gallery(600, 32, 0, 0.8)
    meta = scale.Metadata.make(600, 3, 0)
    queries = scale.make_queries(gallery, 5, 3, 0)
    truth = scale.filtered_truth(gallery, meta, queries, 10)
    ids = np.arange(600)
    for query, found in zip(queries, truth, strict=True):
        allowed = set(ids[query.mask(meta, ids)].tolist())
        assert found <= allowed and len(found) == min(10, len(allowed))


def test_a_toy_run_measures_faiss_and_reports_unavailable_engines(tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    rc = scale.main(
        [
            "--sizes",
            "800",
            "--dim",
            "32",
            "--queries",
            "12",
            "--cameras",
            "2",
            "--json",
            str(out),
            "--engines",
            "faiss-flat",
            "faiss-ivf",
            "milvus-hnsw",
            "--milvus-uri",
            "http://127.0.0.1:1",
            "--replicas",
        ]
    )
    assert rc == 0
    rows = {r["engine"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["faiss-flat"]["recall"] == 1.0  # exact search over the filtered ids
    assert rows["faiss-flat"]["ingest_per_s"] > 0 and rows["faiss-flat"]["filtered_p99_ms"] > 0
    assert "recall" in rows["faiss-ivf"]
    assert "skipped" in rows["milvus-hnsw"] or "failed" in rows["milvus-hnsw"]
    assert "| 800 | faiss-flat |" in capsys.readouterr().out
