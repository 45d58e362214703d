"""P x K identity batch sampler for re-ID training (the "RandomIdentitySampler" of the RGA recipe).

Each epoch every identity is visited once, in a random order; for each identity K image indices are
drawn (without replacement when it has at least K images, with replacement otherwise); consecutive
groups of P identities form one batch of P * K indices, identity by identity. The last incomplete
batch is dropped. With the default batch 64 and K = 4, P = 16.

Determinism and resume: the batches of an epoch are a pure function of
``(pids, batch_size, num_instances, seed, epoch, rank, world_size)``, drawn from a NumPy PCG64
generator seeded with ``SeedSequence([seed, epoch])``; no global RNG is read or written. To resume
exactly, build the sampler with the same arguments and call ``set_epoch(epoch)``
(``state_dict``/``load_state_dict`` carry seed and epoch and check the rest). To resume in the middle of
an epoch, skip the batches already consumed (``itertools.islice(sampler, done, None)``).
The same seed can give different batches under another NumPy version only if NumPy changes
``Generator.permutation``/``choice``; it has kept them stable so far.

DDP: the batch is global, as in the recipe (64 = 16 identities x 4 images per optimizer step, whatever the
number of GPUs). All ranks draw the same list of batches for an epoch and rank ``r`` of ``world_size``
takes the ``r``-th of ``world_size`` equal slices of each; the trainer gathers the ranks' outputs so the
losses see the whole batch (training.runtime.gather_batch).

Use it as ``DataLoader(dataset, batch_sampler=sampler)`` and call ``sampler.set_epoch(epoch)`` before
each epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


class RandomIdentityBatchSampler(Sampler[list[int]]):
    """Yield batches of dataset indices, ``num_instances`` images for each of ``batch_size // num_instances`` identities.

    Args:
        pids: identity label of every dataset item, ``pids[i]`` for item ``i`` (length = dataset size).
        batch_size: indices per global batch (P * K), over all ranks; a multiple of ``num_instances`` and
            of ``world_size``.
        num_instances: K, images per identity in a batch.
        seed: base seed; the batches of epoch ``e`` depend only on ``(seed, e)`` and the arguments.
        rank, world_size: this process's place in a distributed job (defaults: single process).

    Raises:
        ValueError: empty ``pids``, ``num_instances`` < 1 or > ``batch_size``, ``batch_size`` not a multiple
            of ``num_instances`` or not divisible among ``world_size`` ranks, fewer identities than one batch
            needs, or a bad rank.
    """

    def __init__(
        self,
        pids: Sequence[int],
        batch_size: int = 64,
        num_instances: int = 4,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(pids) == 0:
            raise ValueError("RandomIdentityBatchSampler: the identity list is empty (no training images)")
        if num_instances < 1:
            raise ValueError(f"num_instances must be >= 1, got {num_instances}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_instances > batch_size:
            raise ValueError(f"num_instances ({num_instances}) is larger than batch_size ({batch_size})")
        if batch_size % num_instances != 0:
            raise ValueError(
                f"batch_size ({batch_size}) must be a multiple of num_instances ({num_instances})"
            )
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad distributed placement: rank={rank}, world_size={world_size}")
        if batch_size % world_size != 0:
            raise ValueError(
                f"the global batch of {batch_size} images cannot be split evenly among world_size={world_size} ranks"
            )

        pid_array = np.asarray(pids)
        if pid_array.ndim != 1:
            raise ValueError(f"pids must be a flat sequence of identity labels, got shape {pid_array.shape}")
        # Identities in sorted order, so the epoch does not depend on dict/iteration order.
        self._identities, inverse = np.unique(pid_array, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse, minlength=len(self._identities))
        self._indices_by_identity: list[np.ndarray] = np.split(order, np.cumsum(counts)[:-1])

        self.batch_size = batch_size
        self.num_instances = num_instances
        self.ids_per_batch = batch_size // num_instances
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._num_items = len(pid_array)

        self.share = batch_size // world_size  # images of each batch on this rank
        self._num_batches = len(self._identities) // self.ids_per_batch
        if self._num_batches == 0:
            raise ValueError(
                f"{len(self._identities)} identities cannot fill one batch of {self.ids_per_batch} identities; "
                "lower batch_size or raise num_instances"
            )
        few = int(np.sum(counts < num_instances))
        if few:
            logger.info(
                "%d of %d identities have fewer than %d images; sampled with replacement",
                few,
                len(counts),
                num_instances,
            )

    @property
    def num_identities(self) -> int:
        return len(self._identities)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches (optimizer steps) per epoch, the same on every rank."""
        return self._num_batches

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's part of every batch of ``epoch``: ``len(self)`` lists of ``batch_size / world_size`` indices."""
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, epoch])))
        identity_order = rng.permutation(len(self._identities))
        num_global = self._num_batches
        used = identity_order[: num_global * self.ids_per_batch]
        k = self.num_instances
        chosen = np.empty((len(used), k), dtype=np.int64)
        for row, identity in enumerate(used):
            pool = self._indices_by_identity[identity]
            chosen[row] = rng.choice(pool, size=k, replace=len(pool) < k)
        global_batches = chosen.reshape(num_global, self.batch_size)
        mine = global_batches[:, self.rank * self.share : (self.rank + 1) * self.share]
        return mine.tolist()

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.epoch_batches(self.epoch)

    def state_dict(self) -> dict[str, Any]:
        """What resuming needs: seed and epoch (batches are a pure function of them), plus a fingerprint."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "batch_size": self.batch_size,
            "num_instances": self.num_instances,
            "num_items": self._num_items,
            "num_identities": self.num_identities,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore seed and epoch; raise ValueError if the state was saved for another dataset or batch shape."""
        for key, mine in (
            ("batch_size", self.batch_size),
            ("num_instances", self.num_instances),
            ("num_items", self._num_items),
            ("num_identities", self.num_identities),
        ):
            if key in state and state[key] != mine:
                raise ValueError(
                    f"sampler state does not fit this sampler: {key} was {state[key]}, now {mine}"
                )
        self.seed = int(state["seed"])
        self.set_epoch(int(state["epoch"]))
