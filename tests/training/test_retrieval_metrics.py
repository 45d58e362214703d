import numpy as np
import pytest
import torch

from model.errors import ReidError
from training.retrieval_metrics import EvaluationError, evaluate_rank


def one_query(dist, g_pids, g_cams, q_pid=1, q_cam=0, **kw):
    return evaluate_rank(np.array([dist], dtype=float), [q_pid], g_pids, [q_cam], g_cams, **kw)


def test_hand_worked_single_query_with_junk_removed():
    # sorted by distance: pid 2 | pid 1 same camera (removed) | pid 1 | pid 3 | pid 1
    # valid ranking: neg, pos, neg, pos -> first match at rank 2; AP = (1/2 + 2/4) / 2 = 0.5; INP = 2/4
    r = one_query([0.1, 0.2, 0.3, 0.4, 0.5], [2, 1, 1, 3, 1], [1, 0, 1, 1, 2], max_rank=4)
    assert r["cmc"].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert r["mAP"] == pytest.approx(0.5)
    assert r["mINP"] == pytest.approx(0.5)
    assert r["num_valid_queries"] == 1 and r["num_skipped_queries"] == 0


def test_same_pid_other_camera_counts_and_different_pid_same_camera_stays():
    # pid 1 cam 0 is junk; pid 5 cam 0 is a valid negative; pid 1 cam 3 is the positive
    r = one_query([0.3, 0.1, 0.2], [1, 5, 1], [0, 0, 3], max_rank=3)
    assert r["cmc"].tolist() == [0.0, 1.0, 1.0]
    assert r["mAP"] == pytest.approx(0.5)


def test_ties_are_grouped_for_ap_like_sklearn():
    # valid ranking with distances 0.1 (neg), 0.2 (pos), 0.2 (neg), 0.3 (pos):
    # blocks: {0.1}: 0 pos, {0.2}: 1 pos of 3 seen, {0.3}: 2 of 4 -> AP = 1/2 * 1/3 + 1/2 * 2/4 = 5/12
    r = one_query([0.1, 0.2, 0.2, 0.3], [2, 1, 3, 1], [1, 1, 1, 1], max_rank=4)
    assert r["mAP"] == pytest.approx(5 / 12)
    # swapping the tied entries does not change AP; CMC follows gallery order inside the tie
    swapped = one_query([0.1, 0.2, 0.2, 0.3], [2, 3, 1, 1], [1, 1, 1, 1], max_rank=4)
    assert swapped["mAP"] == pytest.approx(5 / 12)
    assert r["cmc"].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert swapped["cmc"].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_all_tied_gives_positive_fraction():
    r = one_query([0.5] * 5, [1, 2, 1, 3, 4], [1] * 5)
    assert r["mAP"] == pytest.approx(2 / 5)


def test_query_without_valid_match_is_skipped_and_counted():
    dist = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    # query 0 (pid 7, cam 0): its only gallery image is camera 0 -> skipped
    r = evaluate_rank(dist, [7, 8], [7, 8, 9], [0, 0], [0, 1, 1], max_rank=3)
    assert r["num_valid_queries"] == 1 and r["num_skipped_queries"] == 1
    assert np.isnan(r["ap"][0]) and r["ap"][1] == pytest.approx(0.5)
    assert r["mAP"] == pytest.approx(0.5)
    assert r["cmc"].tolist() == [0.0, 1.0, 1.0]


def test_no_valid_query_raises_actionable_error():
    with pytest.raises(EvaluationError, match="no query has a valid match") as info:
        evaluate_rank(np.zeros((1, 2)), [1], [1, 2], [0], [0, 0])
    assert isinstance(info.value, ReidError)


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.zeros((2, 3)), [1], [1, 2, 3], [0], [0, 1, 1]), "query rows"),
        ((np.zeros((1, 3)), [1], [1, 2], [0], [0, 1]), "gallery columns"),
        ((np.array([[0.1, np.nan]]), [1], [1, 2], [0], [1, 1]), "NaN"),
        ((np.zeros(3), [1], [1, 2, 3], [0], [0, 1, 1]), "num_query, num_gallery"),
    ],
)
def test_bad_inputs(args, message):
    with pytest.raises(EvaluationError, match=message):
        evaluate_rank(*args)


def reference_by_loops(dist, q_pids, g_pids, q_cams, g_cams, max_rank):
    """Per-query loops over a stable ranking; AP via explicit tie blocks."""
    cmc = np.zeros(max_rank)
    aps, inps = [], []
    for i in range(len(q_pids)):
        order = sorted(range(len(g_pids)), key=lambda j: (dist[i, j], j))
        kept = [j for j in order if not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        hits = [g_pids[j] == q_pids[i] for j in kept]
        if not any(hits):
            continue
        first = hits.index(True)
        if first < max_rank:
            cmc[first:] += 1
        last = len(hits) - 1 - hits[::-1].index(True)
        inps.append(sum(hits) / (last + 1))
        ap, seen, seen_pos = 0.0, 0, 0
        values = [dist[i, j] for j in kept]
        for v in sorted(set(values)):
            block = [h for h, d in zip(hits, values, strict=True) if d == v]
            seen += len(block)
            seen_pos += sum(block)
            ap += sum(block) / sum(hits) * seen_pos / seen
        aps.append(ap)
    return cmc / len(aps), np.mean(aps), np.mean(inps), len(aps)


def random_problem(seed, num_q=25, num_g=60, levels=None):
    rng = np.random.default_rng(seed)
    dist = rng.random((num_q, num_g))
    if levels:  # quantise to create many ties
        dist = np.round(dist * levels) / levels
    q_pids = rng.integers(0, 8, num_q)
    g_pids = rng.integers(0, 8, num_g)
    q_cams = rng.integers(0, 3, num_q)
    g_cams = rng.integers(0, 3, num_g)
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("levels", [None, 6])
def test_matches_loop_reference_on_random_data(levels):
    problem = random_problem(1, levels=levels)
    r = evaluate_rank(*problem, max_rank=20)
    cmc, m_ap, m_inp, n = reference_by_loops(*problem, max_rank=20)
    assert r["num_valid_queries"] == n
    assert np.allclose(r["cmc"], cmc, atol=1e-12)
    assert r["mAP"] == pytest.approx(m_ap, abs=1e-12)
    assert r["mINP"] == pytest.approx(m_inp, abs=1e-12)


@pytest.mark.parametrize("levels", [None, 4, 10])
def test_ap_matches_sklearn_on_random_data(levels):
    metrics = pytest.importorskip("sklearn.metrics")
    dist, q_pids, g_pids, q_cams, g_cams = random_problem(2, num_q=40, num_g=80, levels=levels)
    r = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    expected = []
    for i in range(len(q_pids)):
        keep = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i]))
        y_true = g_pids[keep] == q_pids[i]
        if not y_true.any():
            assert np.isnan(r["ap"][i])
            continue
        expected.append(metrics.average_precision_score(y_true, -dist[i, keep]))
        assert r["ap"][i] == pytest.approx(expected[-1], abs=1e-6)
    assert r["mAP"] == pytest.approx(np.mean(expected), abs=1e-6)


def test_chunk_size_and_input_types_do_not_change_the_result():
    problem = random_problem(3, levels=5)
    full = evaluate_rank(*problem)
    for chunk in (1, 4, 1000):
        part = evaluate_rank(*problem, chunk_size=chunk)
        assert np.array_equal(part["cmc"], full["cmc"])
        assert np.array_equal(part["ap"], full["ap"], equal_nan=True)
        assert part["mINP"] == full["mINP"]
    as_torch = evaluate_rank(*(torch.as_tensor(a) for a in problem))
    assert as_torch["mAP"] == full["mAP"]


def test_perfect_ranking_scores_one():
    g_pids = np.array([0, 0, 1, 1, 2, 2])
    g_cams = np.array([1, 1, 1, 1, 1, 1])
    q_pids = np.array([0, 1, 2])
    dist = (q_pids[:, None] != g_pids[None, :]).astype(float) + np.arange(6) * 1e-3
    r = evaluate_rank(dist, q_pids, g_pids, [0, 0, 0], g_cams, max_rank=3)
    assert r["cmc"].tolist() == [1.0, 1.0, 1.0]
    assert r["mAP"] == 1.0 and r["mINP"] == 1.0
