"""model.layers.resnet is torchvision's ResNet-50 without importing torchvision: same names, same seeded
weights (so a seeded RGAReID is the network it was before), same outputs, and the last stride honoured."""

from __future__ import annotations

import subprocess
import sys

import torch
import torchvision

from model.layers.resnet import ResNet50Stages


def _torchvision_stages(last_stride: int) -> torch.nn.Module:
    resnet = torchvision.models.resnet50(weights=None)
    if last_stride == 1:
        resnet.layer4[0].conv2.stride = (1, 1)
        resnet.layer4[0].downsample[0].stride = (1, 1)
    resnet.fc = resnet.avgpool = torch.nn.Identity()
    return resnet


def test_same_weights_draw_for_draw_and_same_rng_state_after():
    torch.manual_seed(123)
    ours = ResNet50Stages(last_stride=1)
    after_ours = torch.random.get_rng_state()
    torch.manual_seed(123)
    theirs = _torchvision_stages(last_stride=1)
    after_theirs = torch.random.get_rng_state()
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)  # names and order: checkpoints load unchanged
    for name, tensor in ours_state.items():
        assert torch.equal(tensor, theirs_state[name]), name
    assert torch.equal(after_ours, after_theirs)  # modules built afterwards (RGA) draw the same numbers


def _stages_forward(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def test_same_outputs_and_last_stride():
    torch.manual_seed(5)
    ours = ResNet50Stages(last_stride=2).eval()
    theirs = _torchvision_stages(last_stride=2).eval()
    theirs.load_state_dict(ours.state_dict(), strict=False)
    x = torch.randn(2, 3, 64, 32)
    with torch.inference_mode():
        a, b = _stages_forward(ours, x), _stages_forward(theirs, x)
        assert a.shape == (2, 2048, 2, 1)
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
        assert _stages_forward(ResNet50Stages(last_stride=1).eval(), x).shape == (2, 2048, 4, 2)


def test_the_network_does_not_import_torchvision():
    code = "import sys, model.embedder, model.builder; sys.exit('torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
