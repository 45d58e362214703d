import pytest
import torch
from torch import nn


def randomize_batchnorm(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    g = generator or torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_((torch.rand(n, generator=g) - 0.5) * 0.6)
    return module


@pytest.fixture
def seeded():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield
