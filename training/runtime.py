"""The training process's runtime: distributed set-up, device, seeding and RNG state.

Kept apart from the loop (as torchvision's references keep ``utils.py`` apart from ``train.py``):

    distributed = init_distributed(device_kind)     # torchrun's RANK / WORLD_SIZE / LOCAL_RANK, or one process
    device = training_device(cfg.train.device, distributed)
    seed_everything(cfg.train.seed + distributed.rank)
    state = rng_states(); ...; set_rng_states(state)   # saved with resume.pt
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from model.device import DeviceError, resolve_device
from model.errors import ReidError

logger = logging.getLogger(__name__)


@dataclass
class Distributed:
    """This process's place in the run: rank, world size and local rank (one process: 0, 1, 0)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world_size() -> int:
    """WORLD_SIZE as set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device_kind: str) -> Distributed:
    """Join the process group when launched by torchrun (NCCL on CUDA, gloo on the CPU); one process otherwise."""
    world_size = launched_world_size()
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    if device_kind == "cuda":
        torch.cuda.set_device(local_rank)
    logger.info("distributed: rank %d of %d", rank, world_size)
    return Distributed(rank, world_size, local_rank)


def shutdown_distributed(distributed: Distributed) -> None:
    """Wait for every rank, then leave the process group (a no-op for one process)."""
    if distributed.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def training_device(name: str) -> torch.device:
    """train.device (auto | cpu | cuda | cuda:N) -> this rank's device; under torchrun a GPU is cuda:LOCAL_RANK."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        device = resolve_device(name, local_rank=local_rank)
    except DeviceError as exc:
        raise ReidError(f"train.device={name}: {exc}") from exc
    if device.type == "cuda" and launched_world_size() > 1:
        device = torch.device("cuda", local_rank)  # one GPU per rank, whatever index was configured
    return device


def seed_everything(seed: int) -> None:
    """Seed torch, NumPy and random for this training process (the run's entry point owns them)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    """Every global RNG's state (torch, CUDA, NumPy, random), as tensors and plain values torch.save keeps."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what ``rng_states`` returned."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def budget_spent(deadline: float, device: torch.device, distributed: Distributed) -> bool:
    """Has time.monotonic() passed ``deadline``? Under DDP every rank gets the same answer (any rank's)."""
    spent = time.monotonic() >= deadline
    if distributed.enabled:  # every rank stops at the same iteration
        flag = torch.tensor([1.0 if spent else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        spent = bool(flag.item() > 0)
    return spent


class _GatherBatch(torch.autograd.Function):
    """All ranks' (B_r, ...) tensors concatenated in rank order; the gradient of each rank's slice is the
    sum over ranks of the gradient that reaches it (every rank computes the loss over the whole batch)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.size = dist.get_rank(), tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


def gather_batch(tensor: torch.Tensor, distributed: Distributed) -> torch.Tensor:
    """The global batch from every rank's equal share (rank order), differentiable; one process: as is.

    With every rank computing the same loss over the gathered batch and DDP averaging the gradients over
    ranks, the update equals one process's update on the whole batch: each rank's share receives the sum
    over ranks of its gradient (``world_size`` times the loss's), and DDP divides by ``world_size``.
    """
    if not distributed.enabled:
        return tensor
    if tensor.requires_grad:
        return _GatherBatch.apply(tensor)
    parts = [torch.empty_like(tensor) for _ in range(distributed.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)
