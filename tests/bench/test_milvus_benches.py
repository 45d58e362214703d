"""bench/milvus_direct.py and bench/milvus_ingest.py at toy size against the session's Milvus server: the
direct path's chunked ground truth equals bench.scale's, a toy run fills its table with one row per
(consistency, nprobe) and finds the exact answer when every list is probed, and the insert benchmark measures
every method and leaves no collection behind."""

from __future__ import annotations

import json

import numpy as np
import pytest

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


def test_time_only_and_unfiltered_truth_keep_what_their_filter_keeps():
    gallery = Gallery(900, 32, 0, 0.8)
    meta = scale.Metadata.make(900, 3, 0)
    queries = scale.make_queries(gallery, 6, 3, 0)
    truths = {mode: milvus_direct.FilteredTruth(queries, 10, mode) for mode in milvus_direct.MODES}
    for ids, x in gallery.chunks():
        for truth in truths.values():
            truth.push(meta, ids, x)
    everything = np.arange(900)
    for q, query in enumerate(queries):
        s = query.vector @ np.concatenate([x for _, x in gallery.chunks()]).T
        in_window = (meta.times_us >= query.start_us) & (meta.times_us < query.end_us)
        assert truths["none"].sets()[q] == set(np.argsort(-s)[:10].tolist())
        assert truths["time"].sets()[q] == set(everything[in_window][np.argsort(-s[in_window])[:10]].tolist())


@pytest.mark.parametrize("partition_key", [False, True])
def test_a_toy_direct_run(milvus_server, tmp_path, capsys, partition_key):
    from pymilvus import MilvusClient

    out = tmp_path / "rows.jsonl"
    before = set(MilvusClient(uri=milvus_server.uri).list_collections())
    rc = milvus_direct.main(
        ["--n", "2500", "--dim", "32", "--nlist", "4", "--nprobe", "1", "4", "--queries", "12",
         "--cameras", "2", "--milvus-uri", milvus_server.uri, "--json", str(out)]
        + (["--partition-key", "--other-nprobe", "4"] if partition_key else [])
    )  # fmt: skip
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    others = [4] if partition_key else [1, 4]  # --other-nprobe: the time-only / unfiltered rows' nprobe
    assert [(r["mode"], r["consistency"], r["nprobe"]) for r in rows] == [
        ("filtered", "Session", 1), ("filtered", "Session", 4), ("filtered", "Strong", 1),
        ("filtered", "Strong", 4),
    ] + [("time", "Session", n) for n in others] + [("none", "Session", n) for n in others]  # fmt: skip
    full = [r for r in rows if r["nprobe"] == 4]
    assert all(r["recall"] >= 0.9 for r in full)  # every list probed: only SQ8 rounding can differ
    assert all(r["filtered_p99_ms"] >= r["filtered_p50_ms"] > 0 for r in rows)
    assert all(r["partition_key"] is partition_key and sum(r["segments"]) == 2500 for r in rows)
    text = capsys.readouterr().out
    assert "| camera + time (target) | Session | 4 |" in text and "| none | Session | 4 |" in text
    assert set(MilvusClient(uri=milvus_server.uri).list_collections()) == before  # dropped


def test_server_layout_options_need_the_throwaway_server():
    with pytest.raises(SystemExit):
        milvus_direct.main(["--milvus-uri", "http://127.0.0.1:1", "--segment-max-mb", "64"])


def test_the_insert_benchmark_measures_every_method(milvus_server, capsys):
    rc = milvus_ingest.main(["--n", "300", "--dim", "16", "--rounds", "1", "--milvus-uri", milvus_server.uri])
    assert rc == 0
    text = capsys.readouterr().out
    for method in milvus_ingest.METHODS:
        assert f"| {method} |" in text
