import numpy as np
import pytest
import torch

from training.rerank import k_reciprocal_rerank


def dense_reference(query: np.ndarray, gallery: np.ndarray, k1: int, k2: int, lam: float) -> np.ndarray:
    """Straightforward dense k-reciprocal re-ranking, step by step as in Zhong et al. 2017."""
    feats = np.concatenate([query, gallery]).astype(np.float64)
    n, num_q = len(feats), len(query)
    dist = ((feats[:, None, :] - feats[None, :, :]) ** 2).sum(-1)
    dist = dist / dist.max(axis=1, keepdims=True)
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, : k + 1]
        return np.array([j for j in forward if i in rank[j, : k + 1]], dtype=int)

    V = np.zeros((n, n))
    for i in range(n):
        members = reciprocal(i, k1)
        expansion = list(members)
        for c in members:
            cand = reciprocal(c, int(np.around(k1 / 2)))
            if len(np.intersect1d(cand, members)) > 2.0 / 3 * len(cand):
                expansion.extend(cand)
        expansion = np.unique(expansion)
        weight = np.exp(-dist[i, expansion])
        V[i, expansion] = weight / weight.sum()
    if k2 != 1:
        V = np.stack([V[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.zeros((num_q, n))
    for i in range(num_q):
        overlap = np.minimum(V[i][None, :], V).sum(axis=1)
        jaccard[i] = 1 - overlap / (2 - overlap)
    final = (1 - lam) * jaccard + lam * dist[:num_q]
    return final[:, num_q:]


def clustered_features(seed: int, num_q: int, num_g: int, dim: int = 16, ids: int = 8):
    """Identities as cluster centres plus noise, so that k-reciprocal sets are non-trivial."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    q_ids, g_ids = rng.integers(0, ids, num_q), rng.integers(0, ids, num_g)
    query = centres[q_ids] + 0.6 * rng.normal(size=(num_q, dim))
    gallery = centres[g_ids] + 0.6 * rng.normal(size=(num_g, dim))
    return query.astype(np.float32), gallery.astype(np.float32)


@pytest.mark.parametrize("k1, k2, lam", [(20, 6, 0.3), (6, 3, 0.5), (5, 1, 0.0), (9, 10, 1.0)])
def test_matches_dense_reference(k1, k2, lam):
    query, gallery = clustered_features(k1 + k2, 12, 50)
    expected = dense_reference(query, gallery, k1, k2, lam)
    got = k_reciprocal_rerank(query, gallery, k1=k1, k2=k2, lambda_value=lam, dtype=np.float64)
    assert got.shape == (12, 50) and got.dtype == np.float64
    assert np.abs(got - expected).max() < 1e-6
    got32 = k_reciprocal_rerank(query, gallery, k1=k1, k2=k2, lambda_value=lam)
    assert got32.dtype == np.float32
    assert np.abs(got32 - expected).max() < 1e-6


def test_reranking_changes_the_order_and_expansion_is_exercised():
    query, gallery = clustered_features(7, 10, 60)
    plain = k_reciprocal_rerank(query, gallery, lambda_value=1.0, dtype=np.float64)
    reranked = k_reciprocal_rerank(query, gallery, dtype=np.float64)
    assert not np.array_equal(np.argsort(plain, axis=1), np.argsort(reranked, axis=1))
    assert ((reranked >= 0) & (reranked <= 1 + 1e-12)).all()


@pytest.mark.parametrize("chunk_size", [1, 5, 17, 1000])
def test_chunk_size_does_not_change_the_result(chunk_size):
    query, gallery = clustered_features(3, 9, 40)
    full = k_reciprocal_rerank(query, gallery, k1=8, k2=4, dtype=np.float64)
    chunked = k_reciprocal_rerank(query, gallery, k1=8, k2=4, chunk_size=chunk_size, dtype=np.float64)
    assert np.abs(full - chunked).max() < 1e-12


def test_small_jaccard_groups_do_not_change_the_result(monkeypatch):
    import training.rerank as rerank

    query, gallery = clustered_features(4, 9, 40)
    full = k_reciprocal_rerank(query, gallery, k1=8, k2=4, dtype=np.float64)
    monkeypatch.setattr(rerank, "_PAIR_BUDGET", 7)  # one query per group, tiny pair chunks
    small = k_reciprocal_rerank(query, gallery, k1=8, k2=4, dtype=np.float64)
    assert np.abs(full - small).max() < 1e-12


def test_accepts_torch_tensors_and_does_not_modify_inputs():
    query, gallery = clustered_features(5, 6, 30)
    q_t, g_t = torch.from_numpy(query.copy()), torch.from_numpy(gallery.copy())
    from_numpy = k_reciprocal_rerank(query, gallery, k1=6, k2=3)
    from_torch = k_reciprocal_rerank(q_t, g_t, k1=6, k2=3, device="cpu")
    assert np.array_equal(from_numpy, from_torch)
    assert np.array_equal(q_t.numpy(), query) and np.array_equal(g_t.numpy(), gallery)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    query, gallery = clustered_features(6, 20, 80)
    cpu = k_reciprocal_rerank(query, gallery, dtype=np.float64)
    gpu = k_reciprocal_rerank(query, gallery, device="cuda", dtype=np.float64)
    assert np.abs(cpu - gpu).max() < 1e-9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(query_features=np.zeros((0, 4)), gallery_features=np.zeros((3, 4))), "at least one"),
        (dict(query_features=np.zeros((2, 4)), gallery_features=np.zeros((3, 5))), "sizes differ"),
        (dict(query_features=np.zeros(4), gallery_features=np.zeros((3, 4))), "query_features"),
        (dict(query_features=np.zeros((2, 4)), gallery_features=np.zeros((3, 4)), k1=5), "k1"),
        (dict(query_features=np.zeros((2, 4)), gallery_features=np.zeros((9, 4)), k1=3, k2=5), "k2"),
        (
            dict(
                query_features=np.zeros((2, 4)), gallery_features=np.zeros((9, 4)), k1=3, k2=2, lambda_value=2
            ),
            "lambda",
        ),
        (dict(query_features=np.zeros((2, 4), int), gallery_features=np.zeros((9, 4)), k1=3), "floating"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        k_reciprocal_rerank(**kwargs)
