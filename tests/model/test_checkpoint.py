"""Weights: our format, the official RGA checkpoint format, torchvision backbones, and the error cases."""

import dataclasses

import pytest
import torch
import torchvision

from model import (
    CheckpointError,
    Embedder,
    InputSizeError,
    ModelMeta,
    build_model,
    load_checkpoint,
    save_checkpoint,
)

from .conftest import randomize_batchnorm


def official_checkpoint(net, path, prefix="module.", drop_batches_tracked=True):
    """Write `net` the way the official RGA trainer saves it (checkpoint_600.pth.tar)."""
    state = {
        prefix + k: v
        for k, v in net.state_dict().items()
        if not (drop_batches_tracked and k.endswith("num_batches_tracked"))
    }
    torch.save({"state_dict": state, "epoch": 600, "best_top1": 0.881, "optimizer": {"param_groups": []}}, path)
    return path


@pytest.fixture(scope="module")
def official_net():
    """A network with the official architecture and non-trivial weights, in the paper's direct form."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        net = randomize_batchnorm(build_model("rgasc", num_classes=751))
    return net.eval().set_rga_form("direct")


def test_official_key_names(official_net):
    keys = official_net.state_dict().keys()
    for key in (
        "backbone.conv1.weight",
        "backbone.layer3.5.bn2.running_var",
        "backbone.rga_att1.gg_spatial.0.weight",
        "backbone.rga_att4.W_channel.3.weight",
        "backbone.rga_att2.theta_channel.1.running_mean",
        "feat_bn.running_mean",
        "cls.weight",
    ):
        assert key in keys


def test_official_checkpoint_gives_the_official_embeddings(official_net, tmp_path):
    path = official_checkpoint(official_net, tmp_path / "checkpoint_600.pth.tar")
    net, meta = load_checkpoint(path)
    assert meta.variant == "rgasc" and meta.input_size == (256, 128) and meta.source == "official-rga"
    assert meta.epoch == 600 and meta.num_classes == 0 and net.cls is None  # classifier dropped for inference
    assert not net.training
    x = torch.randn(2, 3, 256, 128)
    with torch.no_grad():
        expected = official_net(x)
        got = net(x)
    for name in ("feat_", "feat"):
        a, b = getattr(got, name), getattr(expected, name)
        assert ((a - b).norm() / b.norm()) < 1e-5, name


def test_official_checkpoint_without_prefix_and_with_classifier(official_net, tmp_path):
    path = official_checkpoint(official_net, tmp_path / "c.pth.tar", prefix="", drop_batches_tracked=False)
    net, meta = load_checkpoint(path, for_inference=False)
    assert meta.num_classes == 751 and net.cls.weight.shape == (751, 2048)
    assert torch.equal(net.cls.weight, official_net.cls.weight)


@pytest.mark.parametrize("variant", ["rgas", "rgac", "none"])
def test_official_variants_and_input_size_are_inferred(tmp_path, variant):
    src = build_model(variant, num_classes=3, input_size=(192, 96))
    path = official_checkpoint(src, tmp_path / f"{variant}.pth.tar")
    expected_size = (192, 96) if variant != "none" else (256, 128)  # a plain ResNet has no size in its weights
    net, meta = load_checkpoint(path)
    assert meta.variant == variant and meta.input_size == expected_size


def test_own_format_round_trip(tmp_path):
    net = randomize_batchnorm(build_model("rgasc", num_classes=10, input_size=(192, 96))).eval()
    meta = ModelMeta(
        variant="rgasc",
        input_size=(192, 96),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        embed_feature="feat",
        num_classes=10,
        dataset="synthetic",
        epoch=12,
    )
    path = save_checkpoint(tmp_path / "run" / "model.pt", net, meta, extra={"note": "hello"})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "rga-reid/1" and raw["extra"] == {"note": "hello"}
    loaded, loaded_meta = load_checkpoint(path, for_inference=False)
    assert dataclasses.replace(loaded_meta) == meta
    for (k, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    # The embedder takes its preprocessing from the checkpoint: input size, mean/std, feature.
    embedder = Embedder.from_checkpoint(path, device="cpu")
    assert embedder.input_size == (192, 96) and embedder.feature == "feat"
    image = torch.rand(1, 3, 192, 96)
    pixels = (image[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    got = embedder.embed([pixels])
    by_hand = ((torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.25)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(net(by_hand).feat, dim=1).numpy()
    assert abs(got - expected).max() < 1e-5


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found: .*nope.pth"):
        load_checkpoint(tmp_path / "nope.pth")


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="cannot read weights file"):
        load_checkpoint(path)
    good = tmp_path / "good.pth"
    save_checkpoint(good, build_model("none"), ModelMeta(variant="none"))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)


def test_wrong_keys_are_listed_not_partially_loaded(tmp_path, official_net):
    state = dict(official_net.state_dict())
    state.pop("backbone.rga_att2.gg_channel.0.weight")
    state["backbone.extra_head.weight"] = torch.zeros(3)
    state["feat_bn.weight"] = torch.zeros(1024)
    torch.save({"state_dict": state}, tmp_path / "bad.pth.tar")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "bad.pth.tar")
    message = str(info.value)
    assert "missing (1): backbone.rga_att2.gg_channel.0.weight" in message
    assert "unexpected (1): backbone.extra_head.weight" in message
    assert "feat_bn.weight: checkpoint (1024,) vs network (2048,)" in message


def test_not_a_reid_state_dict(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="not an RGA re-ID state dict"):
        load_checkpoint(tmp_path / "x.pth")


def test_wrong_input_size_is_refused():
    net = build_model("rgasc").eval()
    with pytest.raises(InputSizeError, match="built for .*256, 128"):
        net(torch.randn(1, 3, 224, 112))
    with pytest.raises(InputSizeError):
        net.backbone.rga_att1(torch.randn(1, 256, 10, 10))


def test_torchvision_backbone_weights(tmp_path):
    resnet = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50-19c8e357.pth"
    torch.save(resnet.state_dict(), path)
    net = build_model("rgasc", backbone_weights=str(path))
    assert torch.equal(net.backbone.layer4[2].conv3.weight, resnet.layer4[2].conv3.weight)
    assert torch.equal(net.backbone.bn1.running_var, resnet.bn1.running_var)
    assert net.backbone.layer4[0].conv2.stride == (1, 1)  # last stride 1, unlike the ImageNet model


def test_torchvision_backbone_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found: .*resnet50-19c8e357.pth"):
        build_model("rgasc", backbone_weights=str(tmp_path / "resnet50-19c8e357.pth"))
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match="shape mismatch|missing"):
        build_model("none", backbone_weights=str(tmp_path / "r18.pth"))
