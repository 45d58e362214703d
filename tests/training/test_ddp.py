"""DDP keeps the recipe's global batch: two gloo ranks on the CPU give one rank's loss and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from model.resnet_rga import ReIDOutput
from training.losses import ReIDLoss
from training.runtime import Distributed
from training.train import forward_and_loss

GLOBAL_BATCH = 8  # 4 identities x 2 images
NUM_CLASSES = 6


class StandIn(nn.Module):
    """A small re-ID-shaped network (no BatchNorm: each sample's output depends on it alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.proj = nn.Linear(8, 16)
        self.cls = nn.Linear(16, NUM_CLASSES, bias=False)

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        feat_ = self.proj(torch.relu(self.conv(x)).mean(dim=(2, 3)))
        feat = feat_ * 2.0
        return ReIDOutput(feat_, feat, self.cls(feat))


def make_batch():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(GLOBAL_BATCH, 3, 8, 4, generator=g)
    pids = torch.tensor([0, 0, 3, 3, 1, 1, 5, 5])
    return images, pids


def make_model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return StandIn()


def one_step(model, images, pids, distributed):
    losses, _, _ = forward_and_loss(model, ReIDLoss(0.1, 0.3), images, pids, distributed)
    losses.total.backward()
    return float(losses.total.detach()), {name: p.grad.clone() for name, p in model.named_parameters()}


def _rank_main(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        images, pids = make_batch()
        share = GLOBAL_BATCH // world
        mine = slice(rank * share, (rank + 1) * share)
        model = nn.parallel.DistributedDataParallel(make_model())
        loss, grads = one_step(model, images[mine], pids[mine], Distributed(rank, world, rank))
        grads = {name.removeprefix("module."): g for name, g in grads.items()}
        torch.save({"loss": loss, "grads": grads}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_give_the_loss_and_gradients_of_one_rank_at_the_same_global_batch(tmp_path):
    images, pids = make_batch()
    loss, grads = one_step(make_model(), images, pids, Distributed())

    out = str(tmp_path / "rank")
    mp.start_processes(_rank_main, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True, start_method="spawn")
    for rank in range(2):
        result = torch.load(f"{out}.{rank}", weights_only=True)
        assert result["loss"] == pytest.approx(loss, rel=1e-6)
        assert result["grads"].keys() == grads.keys()
        for name, grad in grads.items():
            assert torch.allclose(result["grads"][name], grad, rtol=1e-5, atol=1e-7), name
