"""bench/milvus_direct.py and bench/milvus_ingest.py at toy size against the session's Milvus server: the
direct path's chunked ground truth equals bench.scale's, a toy run fills its table with one row per
(consistency, nprobe) and finds the exact answer when every list is probed, and the insert benchmark measures
every method and leaves no collection behind."""

from __future__ import annotations

import json

from bench import milvus_direct, milvus_ingest, scale
from bench.index import Gallery


def test_chunked_truth_equals_the_scale_benchmarks():
    gallery = Gallery(900, 32, 0, 0.8)
    meta = scale.Metadata.make(900, 3, 0)
    queries = scale.make_queries(gallery, 6, 3, 0)
    truth = milvus_direct.FilteredTruth(queries, 10)
    for ids, x in gallery.chunks():
        truth.push(meta, ids, x)
    assert truth.sets() == scale.filtered_truth(gallery, meta, queries, 10)


def test_a_toy_direct_run(milvus_server, tmp_path, capsys):
    from pymilvus import MilvusClient

    out = tmp_path / "rows.jsonl"
    before = set(MilvusClient(uri=milvus_server.uri).list_collections())
    rc = milvus_direct.main(
        ["--n", "1500", "--dim", "32", "--nlist", "4", "--nprobe", "1", "4", "--queries", "12",
         "--cameras", "2", "--milvus-uri", milvus_server.uri, "--json", str(out)]
    )  # fmt: skip
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["consistency"], r["nprobe"]) for r in rows] == [
        ("Session", 1), ("Session", 4), ("Strong", 1), ("Strong", 4)
    ]  # fmt: skip
    full = [r for r in rows if r["nprobe"] == 4]
    assert all(r["recall"] >= 0.9 for r in full)  # every list probed: only SQ8 rounding can differ
    assert all(r["filtered_p99_ms"] >= r["filtered_p50_ms"] > 0 for r in rows)
    assert "| Session | 4 |" in capsys.readouterr().out
    assert set(MilvusClient(uri=milvus_server.uri).list_collections()) == before  # dropped


def test_the_insert_benchmark_measures_every_method(milvus_server, capsys):
    rc = milvus_ingest.main(["--n", "300", "--dim", "16", "--rounds", "1", "--milvus-uri", milvus_server.uri])
    assert rc == 0
    text = capsys.readouterr().out
    for method in milvus_ingest.METHODS:
        assert f"| {method} |" in text
