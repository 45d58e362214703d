from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from training.sampler import RandomIdentityBatchSampler


def make_pids(counts: list[int]) -> list[int]:
    """Identity i gets counts[i] items; items of different identities interleaved."""
    pids = [pid for pid, n in enumerate(counts) for _ in range(n)]
    # interleave so that indices of one identity are not contiguous
    return pids[::2] + pids[1::2]


def test_batches_are_p_identities_times_k_images():
    pids = make_pids([6, 5, 4, 9, 7, 8, 4, 5] * 5)  # 40 identities
    sampler = RandomIdentityBatchSampler(pids, batch_size=16, num_instances=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 40 // 4
    for batch in batches:
        assert len(batch) == 16
        labels = [pids[i] for i in batch]
        # identity by identity, K consecutive indices each
        groups = [labels[j : j + 4] for j in range(0, 16, 4)]
        assert all(len(set(g)) == 1 for g in groups)
        assert len({g[0] for g in groups}) == 4
        # identities with >= K images: no repeated index
        for g_start in range(0, 16, 4):
            assert len(set(batch[g_start : g_start + 4])) == 4


def test_each_identity_visited_once_per_epoch_and_last_partial_batch_dropped():
    pids = make_pids([5] * 23)
    sampler = RandomIdentityBatchSampler(pids, batch_size=8, num_instances=2, seed=0)
    seen = Counter(pids[i] for batch in sampler for i in batch[::2])
    assert len(sampler) == 5  # 23 // 4
    assert len(seen) == 20 and set(seen.values()) == {1}


def test_small_identities_are_sampled_with_replacement():
    pids = make_pids([1, 2, 6, 6])
    sampler = RandomIdentityBatchSampler(pids, batch_size=16, num_instances=4, seed=1)
    (batch,) = list(sampler)
    by_pid: dict[int, list[int]] = {}
    for i in batch:
        by_pid.setdefault(pids[i], []).append(i)
    assert len(set(by_pid[0])) == 1 and len(by_pid[0]) == 4
    assert len(set(by_pid[1])) <= 2 and len(by_pid[1]) == 4
    assert len(set(by_pid[2])) == 4


def test_deterministic_per_seed_and_epoch():
    pids = make_pids([4, 7, 5, 6] * 8)
    a = RandomIdentityBatchSampler(pids, batch_size=8, num_instances=4, seed=7)
    b = RandomIdentityBatchSampler(pids, batch_size=8, num_instances=4, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)
    c = RandomIdentityBatchSampler(pids, batch_size=8, num_instances=4, seed=8)
    c.set_epoch(3)
    assert list(a) != list(c)
    # iterating twice gives the same epoch again (no hidden state advanced)
    assert list(a) == list(a)


def test_global_rng_is_neither_read_nor_changed():
    pids = make_pids([4] * 12)
    sampler = RandomIdentityBatchSampler(pids, batch_size=8, num_instances=4, seed=5)
    torch.manual_seed(0)
    first = list(sampler)
    state = torch.get_rng_state()
    torch.manual_seed(123)
    assert list(sampler) == first
    torch.set_rng_state(state)


def test_ddp_ranks_split_every_global_batch_and_together_see_one_process_batches():
    pids = make_pids([4] * 37)
    world = 2
    samplers = [
        RandomIdentityBatchSampler(pids, batch_size=8, num_instances=4, seed=2, rank=r, world_size=world)
        for r in range(world)
    ]
    single = RandomIdentityBatchSampler(pids, batch_size=8, num_instances=4, seed=2)
    for s in (*samplers, single):
        s.set_epoch(5)
    per_rank = [list(s) for s in samplers]
    # the global batch stays 8 (as one process) and every rank runs the same number of steps
    assert len(samplers[0]) == len(samplers[1]) == len(single) == 37 // 2
    assert all(len(batch) == 4 for batches in per_rank for batch in batches)
    together = [a + b for a, b in zip(*per_rank, strict=True)]
    assert together == list(single)


def test_state_dict_resumes_exactly_and_rejects_other_dataset():
    pids = make_pids([5, 4, 6, 4] * 6)
    sampler = RandomIdentityBatchSampler(pids, batch_size=8, num_instances=4, seed=11)
    sampler.set_epoch(9)
    expected = list(sampler)
    state = sampler.state_dict()
    fresh = RandomIdentityBatchSampler(pids, batch_size=8, num_instances=4, seed=0)
    fresh.load_state_dict(state)
    assert fresh.epoch == 9 and list(fresh) == expected
    other = RandomIdentityBatchSampler(pids[:-1], batch_size=8, num_instances=4)
    with pytest.raises(ValueError, match="num_items"):
        other.load_state_dict(state)


def test_works_as_dataloader_batch_sampler():
    pids = make_pids([4, 5, 6, 7] * 3)

    class Labels(Dataset):
        def __len__(self):
            return len(pids)

        def __getitem__(self, i):
            return torch.tensor(pids[i])

    sampler = RandomIdentityBatchSampler(pids, batch_size=8, num_instances=4, seed=0)
    loader = DataLoader(Labels(), batch_sampler=sampler)
    labels = [b.tolist() for b in loader]
    assert len(labels) == len(sampler) == 6
    assert all(len(set(b[:4])) == 1 and len(set(b[4:])) == 1 for b in labels)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pids=[]), "empty"),
        (dict(pids=[0, 1], batch_size=4, num_instances=8), "larger than batch_size"),
        (dict(pids=[0, 1], batch_size=6, num_instances=4), "multiple"),
        (dict(pids=[0, 1], batch_size=8, num_instances=0), "num_instances"),
        (dict(pids=[0, 0, 1, 1], batch_size=12, num_instances=4), "cannot fill one batch"),
        (dict(pids=[0, 1, 2, 3], batch_size=4, num_instances=2, rank=2, world_size=2), "rank"),
        (dict(pids=[0, 1, 2, 3], batch_size=4, num_instances=2, world_size=3), "split evenly"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomIdentityBatchSampler(**kwargs)
