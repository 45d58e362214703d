"""ONNX export and the ONNX Runtime path of the embedder: same vectors, self-describing file, fingerprints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from model import Embedder, ModelMeta, build_model, load_checkpoint, save_checkpoint  # noqa: E402
from model.errors import CheckpointError, ReidError  # noqa: E402
from model.onnx_export import export_onnx, read_onnx_info, save_onnx_model  # noqa: E402
from reid.cli import main  # noqa: E402
from tests.model.conftest import randomize_batchnorm  # noqa: E402
from training.datasets.synthetic.appearance import identity_look  # noqa: E402
from training.datasets.synthetic.camera import camera_look  # noqa: E402
from training.datasets.synthetic.render import render_crop  # noqa: E402

# bf16 (AMX / AVX-512 BF16 on the CPU) against fp32 on the crops below: docs/onnx.md, BENCHMARKS.md.
BF16_MIN_COSINE = 0.999

pytestmark = pytest.mark.slow  # exports a ResNet-50-sized network: ~10-20 s each on 2 cores

INPUT = (192, 96)  # the smallest 2:1 size at which RGA-SC's heads have a hidden channel


def person_crops(n: int, size=(128, 64)) -> list[np.ndarray]:
    """Rendered person crops from the synthetic store (clothes, skin, camera tone), several identities."""
    crops = []
    for i in range(n):
        rng = np.random.default_rng([7, i])
        look = identity_look(0, 1 + i // 2)
        crops.append(
            render_crop(look, camera_look(0, i % 3), rng, view=("front", "back")[i % 2], kind="person", height=size[0], width=size[1])
        )
    return crops


def _network(seed: int, crops: list[np.ndarray]):
    """A random RGA-SC whose BatchNorms carry trained-like statistics, the BNNeck's taken from the crops.

    A random network maps every image to nearly one direction (pairwise cosine ~0.99998 for `feat_`), so
    agreement to 0.9999 would prove nothing; a BNNeck with the data's mean and variance (as training
    leaves it) spreads `feat` out like a trained model's (pairwise cosines well below 0.9).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model("rgasc", input_size=INPUT)
    randomize_batchnorm(net, torch.Generator().manual_seed(seed))
    net.eval()
    embedder = Embedder(net, ModelMeta(variant="rgasc", input_size=INPUT), device="cpu")
    with torch.no_grad():
        pooled = net(embedder.preprocess(crops)).feat_
        net.feat_bn.running_mean.copy_(pooled.mean(0))
        net.feat_bn.running_var.copy_(pooled.var(0) + 1e-6)
    return net


@pytest.fixture(scope="module")
def files(tmp_path_factory, crops):
    folder = tmp_path_factory.mktemp("onnx")
    meta = ModelMeta(variant="rgasc", input_size=INPUT, dataset="synthetic", epoch=3, embed_feature="feat")
    ckpt = save_checkpoint(folder / "w.pt", _network(0, crops), meta)
    other = save_checkpoint(folder / "other.pt", _network(1, crops), meta)
    net, loaded = load_checkpoint(ckpt)
    onnx_path = export_onnx(net, loaded, folder / "w.onnx", dynamic_batch=True)
    return {"folder": folder, "ckpt": ckpt, "other": other, "onnx": onnx_path}


@pytest.fixture(scope="module")
def crops():
    return person_crops(10)


def test_file_is_checked_and_self_describing(files):
    model = onnx.load(str(files["onnx"]))
    onnx.checker.check_model(model, full_check=True)
    info = read_onnx_info(model)
    assert info.precision == "fp32" and info.batch is None and info.opset == 17
    assert info.meta.variant == "rgasc" and tuple(info.meta.input_size) == INPUT
    assert info.meta.dataset == "synthetic" and info.meta.epoch == 3 and info.meta.embed_feature == "feat"
    props = {p.key: p.value for p in model.metadata_props}
    assert props["rga_reid.input_size"] == "192x96" and json.loads(props["rga_reid.mean"]) == [0.485, 0.456, 0.406]
    assert len(props["rga_reid.weights_sha256"]) == 64 and props["rga_reid.code_version"]
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["feat_", "feat"]


def test_onnxruntime_gives_the_torch_vectors_on_person_crops(files, crops):
    torch_embedder = Embedder.from_checkpoint(files["ckpt"], device="cpu", batch_size=4)
    onnx_embedder = Embedder.from_checkpoint(files["onnx"], device="cpu", batch_size=4)
    assert torch_embedder.runtime == "torch" and onnx_embedder.runtime == "onnxruntime"
    a, b = torch_embedder.embed(crops), onnx_embedder.embed(crops)  # the checkpoint's feature: feat
    assert b.shape == (10, 2048) and b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    assert (a @ a.T)[~np.eye(10, dtype=bool)].max() < 0.9  # the crops' vectors differ: agreement means something
    assert (a * b).sum(1).min() >= 0.9999
    # feat_ (before the BNNeck) of a random network is nearly one direction for every image; what tells the
    # images apart is the part around the mean, and that agrees too.
    torch_embedder.feature = onnx_embedder.feature = "feat_"
    a, b = torch_embedder.embed(crops), onnx_embedder.embed(crops)
    assert (a * b).sum(1).min() >= 0.9999
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    cos = (centred_a * centred_b).sum(1) / np.linalg.norm(centred_a, axis=1) / np.linalg.norm(centred_b, axis=1)
    assert cos.min() >= 0.999
    flipped = Embedder.from_checkpoint(files["onnx"], device="cpu", flip=True).embed(crops[:3])
    expected = Embedder.from_checkpoint(files["ckpt"], device="cpu", flip=True).embed(crops[:3])
    assert (flipped * expected).sum(1).min() >= 0.9999


def test_fingerprint_is_the_checkpoints_iff_the_vectors_are(files, tmp_path):
    torch_fp = Embedder.from_checkpoint(files["ckpt"], device="cpu").fingerprint
    assert Embedder.from_checkpoint(files["onnx"], device="cpu").fingerprint == torch_fp
    assert Embedder.from_checkpoint(files["onnx"], device="cpu", feature="feat_").fingerprint != torch_fp
    assert Embedder.from_checkpoint(files["other"], device="cpu").fingerprint != torch_fp
    # A graph edited after export (one weight changed) is another model, whatever its metadata says.
    model = onnx.load(str(files["onnx"]))
    init = next(t for t in model.graph.initializer if t.dims and np.prod(t.dims) > 100)
    values = onnx.numpy_helper.to_array(init).copy()
    values.flat[0] += 1.0
    init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
    edited = tmp_path / "edited.onnx"
    onnx.save_model(model, str(edited))
    assert Embedder.from_checkpoint(edited, device="cpu").fingerprint != torch_fp


def test_fixed_batch_file_pads_the_last_chunk(files, crops, tmp_path):
    net, meta = load_checkpoint(files["ckpt"])
    fixed = export_onnx(net, meta, tmp_path / "b4.onnx", dynamic_batch=False, batch_size=4)
    assert read_onnx_info(onnx.load(str(fixed))).batch == 4
    a = Embedder.from_checkpoint(fixed, device="cpu", batch_size=3).embed(crops[:7])
    b = Embedder.from_checkpoint(files["onnx"], device="cpu").embed(crops[:7])
    assert (a * b).sum(1).min() >= 0.99999


def test_runtime_onnxruntime_exports_once_and_caches(files, crops, tmp_path, monkeypatch):
    first = Embedder.from_checkpoint(files["ckpt"], runtime="onnxruntime", cache_dir=tmp_path, device="cpu")
    cached = list((tmp_path / "onnx").glob("*.onnx"))
    assert first.runtime == "onnxruntime" and len(cached) == 1

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("model.onnx_export.export_onnx", no_export)
    again = Embedder.from_checkpoint(files["ckpt"], runtime="onnxruntime", cache_dir=tmp_path, device="cpu")
    assert np.array_equal(first.embed(crops[:2]), again.embed(crops[:2]))
    assert again.fingerprint == Embedder.from_checkpoint(files["ckpt"], device="cpu").fingerprint
    with pytest.raises(ReidError, match="ONNX file"):
        Embedder.from_checkpoint(files["onnx"], runtime="torch")
    with pytest.raises(ReidError, match="unknown runtime"):
        Embedder.from_checkpoint(files["ckpt"], runtime="tensorflow")


def test_files_that_are_not_our_export_are_refused(tmp_path):
    plain = tmp_path / "plain.onnx"
    with pytest.warns(DeprecationWarning):  # the TorchScript exporter, as export_onnx uses it
        torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(plain), dynamo=False)
    with pytest.raises(CheckpointError, match="not an rga-reid ONNX export"):
        Embedder.from_checkpoint(plain)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(CheckpointError, match="cannot read ONNX file|not an rga-reid"):
        Embedder.from_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="not found"):
        Embedder.from_checkpoint(tmp_path / "missing.onnx")


def test_checker_failure_is_an_error_and_writes_nothing(files, tmp_path):
    model = onnx.load(str(files["onnx"]))
    model.graph.node[0].input[0] = "no_such_tensor"
    out = tmp_path / "broken.onnx"
    with pytest.raises(ReidError, match="onnx.checker"):
        save_onnx_model(model, out)
    assert not out.exists() and not list(tmp_path.glob("broken.onnx*"))


def test_reid_export_and_embed_commands(files, crops, tmp_path, capsys):
    from PIL import Image

    images = tmp_path / "imgs"
    images.mkdir()
    for i, crop in enumerate(crops[:4]):
        Image.fromarray(crop).save(images / f"{i}.png")
    out = tmp_path / "cli.onnx"
    args = ["export", "--weights", str(files["ckpt"]), "--format", "onnx", "--out", str(out), "--dynamic-batch"]
    assert main([*args, "--check-images", str(images)]) == 0
    printed = capsys.readouterr().out
    assert float(re.search(r"smallest cosine ([0-9.]+)", printed).group(1)) >= 0.9999
    torch_npy, onnx_npy = tmp_path / "t.npy", tmp_path / "o.npy"
    assert main(["embed", str(images), "--weights", str(files["ckpt"]), "--device", "cpu", "--out", str(torch_npy)]) == 0
    assert main(["embed", str(images), "--weights", str(out), "--device", "cpu", "--out", str(onnx_npy)]) == 0
    assert (np.load(torch_npy) * np.load(onnx_npy)).sum(1).min() >= 0.9999
    sidecar = json.loads((tmp_path / "o.files.json").read_text())
    assert sidecar["runtime"] == "onnxruntime"
    assert sidecar["fingerprint"] == json.loads((tmp_path / "t.files.json").read_text())["fingerprint"]
    assert main(["export", "--weights", str(files["ckpt"]), "--out", str(tmp_path / "x.pt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert main([*args[:-1], "--int8"]) == 2
    assert "--calibration" in capsys.readouterr().err


def test_int8_is_another_model_close_to_fp32(files, crops, tmp_path):
    from model.onnx_quantize import quantize_int8

    int8 = quantize_int8(files["onnx"], tmp_path / "w.int8.onnx", crops[:6], batch_size=3)
    info = read_onnx_info(onnx.load(str(int8)))
    assert info.precision == "int8" and info.meta.variant == "rgasc"
    fp32 = Embedder.from_checkpoint(files["onnx"], device="cpu")
    quantized = Embedder.from_checkpoint(int8, device="cpu")
    assert quantized.fingerprint != fp32.fingerprint and quantized.fingerprint.endswith("int8")
    # On raw pooled features int8 stays close to fp32 (not equal: hence its own fingerprint). A random network's
    # images differ by ~1e-5 in cosine, below int8's resolution, so how int8 ranks people needs a trained model.
    fp32.feature = quantized.feature = "feat_"
    a, b = fp32.embed(crops), quantized.embed(crops)
    assert 0.99 < (a * b).sum(1).min() and not np.allclose(a, b, atol=1e-6)
    with pytest.raises(ReidError, match="already int8"):
        quantize_int8(int8, tmp_path / "again.onnx", crops[:2])


def test_reid_runtime_environment_variable_picks_onnxruntime(tmp_path, monkeypatch):
    from PIL import Image

    weights = save_checkpoint(tmp_path / "none.pt", build_model("none", input_size=(64, 32)), ModelMeta("none", (64, 32)))
    Image.fromarray(person_crops(1)[0]).save(tmp_path / "a.png")
    monkeypatch.setenv("REID_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REID_RUNTIME", "onnxruntime")
    assert main(["embed", str(tmp_path / "a.png"), "--weights", str(weights), "--device", "cpu", "--out", str(tmp_path / "o.npy")]) == 0
    assert json.loads((tmp_path / "o.files.json").read_text())["runtime"] == "onnxruntime"
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 1
    monkeypatch.setenv("REID_RUNTIME", "torch")
    assert main(["embed", str(tmp_path / "a.png"), "--weights", str(weights), "--device", "cpu", "--out", str(tmp_path / "t.npy")]) == 0
    assert json.loads((tmp_path / "t.files.json").read_text())["runtime"] == "torch"
    assert (np.load(tmp_path / "o.npy") * np.load(tmp_path / "t.npy")).sum() >= 0.9999


# -- the fast paths of `reid embed` (issue 14): no torch for an ONNX file, the optimised-graph cache, bf16 --------


def test_numpy_preprocessing_is_the_torch_preprocessing(files, crops):
    embedder = Embedder.from_checkpoint(files["onnx"], device="cpu")
    assert np.array_equal(embedder.preprocess_array(crops[:3]), embedder.preprocess(crops[:3]).numpy())


def _embed_in_a_fresh_process(image, weights, out, cache) -> subprocess.CompletedProcess:
    """`reid embed` in a new interpreter; exit status 10 when it imported torch (or torchvision)."""
    code = (
        "import sys\nfrom reid.cli import main\n"
        f"rc = main(['embed', {str(image)!r}, '--weights', {str(weights)!r}, '--device', 'cpu', '--out', {str(out)!r}])\n"
        "sys.exit(rc or 10 * any(m in sys.modules for m in ('torch', 'torchvision')))"
    )
    env = {**os.environ, "REID_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_reid_embed_of_an_onnx_file_does_not_import_torch(files, crops, tmp_path):
    from PIL import Image

    Image.fromarray(crops[0]).save(tmp_path / "a.png")
    for _ in ("cache miss", "cache hit"):
        done = _embed_in_a_fresh_process(tmp_path / "a.png", files["onnx"], tmp_path / "o.npy", tmp_path / "cache")
        assert done.returncode == 0, done.stderr[-2000:]
    expected = Embedder.from_checkpoint(files["ckpt"], device="cpu").embed(crops[:1])
    assert (np.load(tmp_path / "o.npy") * expected).sum() >= 0.9999
    # The check can fail: a checkpoint runs on torch.
    done = _embed_in_a_fresh_process(tmp_path / "a.png", files["ckpt"], tmp_path / "t.npy", tmp_path / "cache")
    assert done.returncode == 10, done.stderr[-2000:]


def test_optimised_graph_cache_hit_miss_corrupt_and_off(files, crops, tmp_path, monkeypatch, caplog):
    from model.onnx_network import OnnxNetwork, OrtOptions

    first = Embedder.from_checkpoint(files["onnx"], device="cpu", cache_dir=tmp_path)
    assert first.net.cache_hit is False
    assert sorted(p.suffix for p in (tmp_path / "ort").iterdir()) == [".json", ".onnx"]
    expected = first.embed(crops[:3])

    def parse_again(*args, **kwargs):
        raise AssertionError("the file was parsed again on a cache hit")

    with monkeypatch.context() as patch:
        patch.setattr(onnx, "load", parse_again)
        hit = Embedder.from_checkpoint(files["onnx"], device="cpu", cache_dir=tmp_path)
        assert hit.net.cache_hit is True and hit.net.faithful and hit.fingerprint == first.fingerprint
        assert np.allclose(hit.embed(crops[:3]), expected, atol=1e-5)

    graph = next((tmp_path / "ort").glob("*.onnx"))
    graph.write_bytes(b"not a model")
    with caplog.at_level("WARNING", logger="model.onnx_network"):
        fallback = Embedder.from_checkpoint(files["onnx"], device="cpu", cache_dir=tmp_path)
    assert fallback.net.cache_hit is False and "does not load" in caplog.text
    assert np.allclose(fallback.embed(crops[:3]), expected, atol=1e-5)
    assert Embedder.from_checkpoint(files["onnx"], device="cpu", cache_dir=tmp_path).net.cache_hit is True  # rewritten

    next((tmp_path / "ort").glob("*.json")).write_text("{ truncated")
    assert Embedder.from_checkpoint(files["onnx"], device="cpu", cache_dir=tmp_path).net.cache_hit is False

    off = OnnxNetwork(files["onnx"], OrtOptions(cache_graph=False), cache_dir=tmp_path / "off").to("cpu")
    assert off.cache_hit is False and not (tmp_path / "off").exists()
    assert not list((tmp_path / "ort").glob("partial-*"))


def test_bf16_precision_is_a_torch_option_with_the_fp32_fingerprint(files, crops, tmp_path, monkeypatch, capsys):
    from PIL import Image

    with pytest.raises(ReidError, match="applies to the torch runtime"):
        Embedder.from_checkpoint(files["onnx"], device="cpu", precision="bf16")
    fp32 = Embedder.from_checkpoint(files["ckpt"], device="cpu", batch_size=5, feature="feat_")
    bf16 = Embedder.from_checkpoint(files["ckpt"], device="cpu", batch_size=5, feature="feat_", precision="bf16")
    # One model for the service's guard, as bf16 on CUDA (the default there) has always been: docs/onnx.md.
    assert bf16.precision == "bf16" and bf16.fingerprint == fp32.fingerprint
    # Raw pooled features agree. What tells people apart in a random network (~1e-5 in cosine, what `feat`'s
    # BNNeck magnifies) is below bfloat16's resolution, as for int8: how bf16 ranks people needs a trained
    # model (`reid evaluate --precision bf16`), so `feat` is not compared here.
    a, b = fp32.embed(crops), bf16.embed(crops)
    assert (a * b).sum(1).min() >= BF16_MIN_COSINE and not np.array_equal(a, b)

    Image.fromarray(crops[0]).save(tmp_path / "a.png")
    embed = ["embed", str(tmp_path / "a.png"), "--device", "cpu", "--out", str(tmp_path / "o.npy"), "--weights"]
    monkeypatch.setenv("REID_PRECISION", "fp16")
    assert main([*embed, str(files["ckpt"])]) == 2
    assert "precision must be one of" in capsys.readouterr().err
    monkeypatch.setenv("REID_PRECISION", "bf16")
    assert main([*embed, str(files["onnx"])]) == 2
    assert "applies to the torch runtime" in capsys.readouterr().err
    assert main([*embed, str(files["ckpt"]), "--feature", "feat_"]) == 0
    assert json.loads((tmp_path / "o.files.json").read_text())["precision"] == "bf16"
    assert (np.load(tmp_path / "o.npy") * b[:1]).sum() >= 0.99999
