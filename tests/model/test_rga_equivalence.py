"""The fast (reassociated) RGA form computes the same function as the paper's direct form."""

import pytest
import torch

from model import RGAModule, build_model
from model.layers.rga import relation_features

from .conftest import randomize_batchnorm

STAGES = [(256, 64, 32), (512, 32, 16), (1024, 16, 8), (2048, 16, 8)]  # RGA-SC at 256x128


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def both_forms(module, x):
    module.form = "fast"
    fast = module(x)
    module.form = "direct"
    direct = module(x)
    return fast, direct


def test_relation_features_match_materialised_conv():
    g = torch.Generator().manual_seed(0)
    theta, phi = torch.randn(3, 5, 40, generator=g, dtype=torch.float64), torch.randn(3, 5, 40, generator=g, dtype=torch.float64)
    weight = torch.randn(7, 80, generator=g, dtype=torch.float64)
    gmat = theta.transpose(1, 2) @ phi  # G[p, k]
    joint = torch.cat([gmat.transpose(1, 2), gmat], dim=1)  # channel k at position p: [G[p,k]; G[k,p]]
    assert rel_err(relation_features(theta, phi, weight), weight @ joint) < 1e-12


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("c,h,w", STAGES)
def test_module_forward_float64(seeded, c, h, w, mode):
    module = randomize_batchnorm(RGAModule(c, h * w)).double()
    getattr(module, mode)()
    x = torch.randn(2, c, h, w, dtype=torch.float64)
    fast, direct = both_forms(module, x)
    assert rel_err(fast, direct) <= 1e-10
    assert not torch.allclose(fast, x)  # the attention did something


@pytest.mark.parametrize("use_spatial,use_channel", [(True, False), (False, True)])
def test_single_attention_variants_float64(seeded, use_spatial, use_channel):
    module = randomize_batchnorm(RGAModule(512, 32 * 16, use_spatial, use_channel)).double().eval()
    x = torch.randn(2, 512, 32, 16, dtype=torch.float64)
    fast, direct = both_forms(module, x)
    assert rel_err(fast, direct) <= 1e-10


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("c,h,w", STAGES)
def test_module_forward_float32(seeded, c, h, w, mode):
    module = randomize_batchnorm(RGAModule(c, h * w))
    getattr(module, mode)()
    x = torch.randn(2, c, h, w)
    fast, direct = both_forms(module, x)
    assert rel_err(fast, direct) <= 1e-4


@pytest.fixture
def two_threads():
    """float32 sums round differently with the number of threads that split them: with one thread (a 1-core
    box, OMP_NUM_THREADS=1) both forms' gradients are ~1e-3 off the float64 ones, with two ~1e-5. The float64
    case checks the equivalence exactly; the float32 case checks it at a fixed thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("c,h,w", STAGES)
def test_module_gradients(seeded, two_threads, c, h, w, dtype, tol):
    module = randomize_batchnorm(RGAModule(c, h * w)).to(dtype).train()
    x = torch.randn(2, c, h, w, dtype=dtype)
    weights = torch.randn(2, c, h, w, dtype=dtype)
    grads = {}
    for form in ("fast", "direct"):
        module.form = form
        module.zero_grad()
        xi = x.clone().requires_grad_(True)
        (module(xi) * weights).sum().backward()
        grads[form] = [xi.grad] + [p.grad.clone() for p in module.parameters()]
    for fast, direct in zip(grads["fast"], grads["direct"], strict=True):
        assert rel_err(fast, direct) <= tol


def test_running_statistics_update_identically(seeded):
    fast = randomize_batchnorm(RGAModule(1024, 128)).double().train()
    direct = randomize_batchnorm(RGAModule(1024, 128)).double().train()
    direct.load_state_dict(fast.state_dict())
    direct.form = "direct"
    x = torch.randn(2, 1024, 16, 8, dtype=torch.float64)
    fast(x), direct(x)
    for (name, a), (_, b) in zip(fast.state_dict().items(), direct.state_dict().items(), strict=True):
        assert torch.allclose(a.double(), b.double(), rtol=1e-10, atol=1e-12), name


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_whole_network_float64(seeded, mode):
    net = randomize_batchnorm(build_model("rgasc", num_classes=5)).double()
    getattr(net, mode)()
    x = torch.randn(2, 3, 256, 128, dtype=torch.float64)
    outs = {}
    for form in ("fast", "direct"):
        net.set_rga_form(form)
        with torch.no_grad():
            outs[form] = net(x)
    for a, b in zip(outs["fast"], outs["direct"], strict=True):
        assert rel_err(a, b) <= 1e-10


def test_whole_network_gradients_float64(seeded):
    net = randomize_batchnorm(build_model("rgasc", num_classes=5)).double().train()
    x = torch.randn(2, 3, 256, 128, dtype=torch.float64)
    grads = {}
    for form in ("fast", "direct"):
        net.set_rga_form(form)
        net.zero_grad()
        out = net(x)
        (out.logits.square().sum() + out.feat_.sum()).backward()
        grads[form] = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    assert grads["fast"].keys() == grads["direct"].keys()
    # Relative error of the whole gradient; per parameter a little looser, since tensors with tiny
    # gradients (deep in a 50-layer network with train-mode BN) amplify float64 rounding.
    flat = {form: torch.cat([g.flatten() for g in grads[form].values()]) for form in grads}
    assert rel_err(flat["fast"], flat["direct"]) <= 1e-10
    for name in grads["fast"]:
        assert rel_err(grads["fast"][name], grads["direct"][name]) <= 1e-9, name
