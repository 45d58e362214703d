"""BatchNorm folding for inference (model.fold, model.fast_network): same vectors, same fingerprint, net untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from model import Embedder, ModelMeta, build_model
from model.fast_network import Bf16Network, inference_network
from model.fingerprint import torch_fingerprint
from model.fold import fold_batchnorms, fold_conv_bn, folded_copy
from training.datasets.synthetic.appearance import identity_look
from training.datasets.synthetic.camera import camera_look
from training.datasets.synthetic.render import render_crop

from .conftest import randomize_batchnorm

INPUT = (192, 96)  # the smallest 2:1 size at which RGA-SC's heads have a hidden channel
FOLDED_MIN_COSINE = 0.9999  # fp32: the same function, rounded differently
BF16_MIN_COSINE = 0.999  # raw pooled features, as tests/model/test_onnx.py for autocast bf16


def crops(n: int) -> list[np.ndarray]:
    """Rendered person crops from the synthetic store, several identities and cameras."""
    return [
        render_crop(
            identity_look(0, 1 + i // 2), camera_look(0, i % 3), np.random.default_rng([5, i]),
            view=("front", "back")[i % 2], kind="person", height=128, width=64,
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def images():
    return crops(6)


@pytest.fixture(scope="module")
def network():
    """RGA-SC with trained-like BatchNorm statistics everywhere (a fresh network's make folding a no-op)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = build_model("rgasc", input_size=INPUT)
    return randomize_batchnorm(net, torch.Generator().manual_seed(3)).eval()


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return nn.functional.cosine_similarity(a.double(), b.double(), dim=1)


@pytest.mark.parametrize("variant", ["rgasc", "none"])
def test_folded_network_computes_the_unfolded_function_and_leaves_the_original_alone(network, images, variant):
    if variant == "rgasc":
        net = network
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(4)
            net = randomize_batchnorm(build_model("none", input_size=INPUT), torch.Generator().manual_seed(4)).eval()
    before = _state(net)
    x = Embedder(net, ModelMeta(variant=variant, input_size=INPUT), device="cpu").preprocess(images)
    fast = folded_copy(net)
    # Every BatchNorm after a convolution is gone (ResNet-50: 53; RGA-SC adds 7 per branch pair and stage);
    # only the BNNeck, which follows the pooling, is left.
    assert not [m for m in fast.modules() if isinstance(m, nn.BatchNorm2d)]
    assert isinstance(fast.feat_bn, nn.BatchNorm1d) and fast.cls is None and not fast.training
    with torch.no_grad():
        ref, out = net(x), fast(x)
        fast.set_rga_form("direct")
        direct = fast(x)
    for name in ("feat_", "feat"):
        assert _cosines(getattr(ref, name), getattr(out, name)).min() >= FOLDED_MIN_COSINE
        assert _cosines(getattr(ref, name), getattr(direct, name)).min() >= FOLDED_MIN_COSINE
        # Not the identity: the statistics are not trivial, so the folded weights differ from the originals.
    assert not torch.equal(fast.backbone.conv1.weight, net.backbone.conv1.weight)
    after = _state(net)
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(net.backbone.bn1, nn.BatchNorm2d)


def test_embedder_folds_by_default_for_owned_networks_with_the_unfolded_fingerprint(network, images, tmp_path):
    from model import save_checkpoint

    meta = ModelMeta(variant="rgasc", input_size=INPUT, embed_feature="feat")
    ckpt = save_checkpoint(tmp_path / "w.pt", network, meta)
    folded = Embedder.from_checkpoint(ckpt, device="cpu", batch_size=4)
    plain = Embedder.from_checkpoint(ckpt, device="cpu", batch_size=4, fold_batchnorm=False)
    live = Embedder(network, meta, device="cpu")  # a caller's own network: run live, as before
    assert folded.fold_batchnorm and not plain.fold_batchnorm and not live.fold_batchnorm
    # The fingerprint hashes the weights as loaded, BatchNorm statistics included: folding must not move it,
    # or a gallery embedded before folding existed would refuse this service.
    expected = torch_fingerprint({k: v for k, v in network.state_dict().items() if not k.startswith("cls.")},
                                 meta, "feat")
    assert folded.fingerprint == plain.fingerprint == live.fingerprint == expected
    assert any(isinstance(m, nn.BatchNorm2d) for m in folded.net.modules())  # self.net is the loaded network
    a, b = plain.embed(images), folded.embed(images)
    assert a.shape == b.shape == (len(images), 2048) and a.dtype == b.dtype == np.float32
    assert (a * b).sum(1).min() >= FOLDED_MIN_COSINE
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)


def test_bf16_on_the_cpu_runs_bf16_weights_close_to_fp32(network, images):
    meta = ModelMeta(variant="rgasc", input_size=INPUT, embed_feature="feat_")
    fp32 = Embedder(network, meta, device="cpu", fold_batchnorm=True)
    bf16 = Embedder(network, meta, device="cpu", precision="bf16", fold_batchnorm=True)
    assert isinstance(bf16._forward, Bf16Network) and bf16.precision == "bf16"
    assert bf16._forward.net.backbone.conv1.weight.dtype == torch.bfloat16
    assert network.backbone.conv1.weight.dtype == torch.float32  # the caller's network is not converted
    assert bf16.fingerprint == fp32.fingerprint
    a, b = fp32.embed(images), bf16.embed(images)
    assert b.dtype == np.float32 and not np.array_equal(a, b)
    assert (a * b).sum(1).min() >= BF16_MIN_COSINE
    # On CUDA (not here) bf16 stays autocast over the fp32 folded copy.
    forward, bf16_weights = inference_network(network, "bf16", torch.device("meta"))
    assert not bf16_weights and not isinstance(forward, Bf16Network)


def test_folding_refuses_what_it_cannot_fold(network):
    training = build_model("none", input_size=INPUT)  # built in training mode
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batchnorms(training)
    with pytest.raises(ValueError, match="output channels"):
        fold_conv_bn(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="running statistics"):
        fold_conv_bn(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
    # A conv that already has a bias keeps it through the fold.
    conv, bn = nn.Conv2d(3, 4, 1), randomize_batchnorm(nn.BatchNorm2d(4)).eval()
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        expected = bn(conv(x))
        fold_conv_bn(conv, bn)
        torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)
