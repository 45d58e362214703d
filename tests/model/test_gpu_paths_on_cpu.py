"""The GPU code paths, exercised where a CPU can: compiled fast form, static-batch padding, precision switch."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from model import Embedder, RGAModule
from model import device as device_module
from model.device import DeviceError, autocast, resolve_precision
from model.resnet_rga import ReIDOutput

from .conftest import randomize_batchnorm


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a C++ compiler")
def test_compiled_fast_form_equals_eager_on_the_cpu_inductor():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = randomize_batchnorm(RGAModule(32, 8 * 4, cha_ratio=4, spa_ratio=4, down_ratio=4, form="fast"))
        x = torch.randn(2, 32, 8, 4)
    module.eval()
    with torch.no_grad():
        eager = module(x)
        compiled = torch.compile(module, backend="inductor", dynamic=False)(x)
    assert compiled.shape == eager.shape
    assert torch.allclose(compiled, eager, rtol=1e-4, atol=1e-5)


class StandInRunner:
    """Stands in for the compiled network: records the batch shapes it sees; each row's output is a
    function of that row alone, so padding and slicing mistakes show up as wrong values."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.autocast: list[tuple[bool, torch.dtype]] = []

    def __call__(self, x: torch.Tensor) -> ReIDOutput:
        self.shapes.append(tuple(x.shape))
        self.autocast.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        pooled = x.mean(dim=(2, 3))  # (B, 3)
        feat_ = torch.nn.functional.pad(torch.cat([pooled, pooled.square()], dim=1), (0, 2042), value=1.0)
        return ReIDOutput(feat_, feat_ * 2.0 + 1.0, None)


def pictures(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (64, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_static_batch_padding_and_slicing_of_the_compiled_path():
    emb = Embedder.random_init(variant="none", input_size=(64, 32), batch_size=4, compile=True)
    runner = StandInRunner()
    emb._forward = runner  # what torch.compile (CUDA graphs on CUDA) would run
    images = pictures(6)
    x = emb.preprocess(images)
    out = emb.embed(images)  # chunks of 4 and 2: both run at the static batch of 4
    assert [s[0] for s in runner.shapes] == [4, 4]
    expected = torch.nn.functional.normalize(runner(x).feat_, dim=1).numpy()
    assert out.shape == (6, 2048) and np.allclose(out, expected, atol=1e-6)
    one = emb.embed(images[5:])
    assert runner.shapes[-1][0] == 4 and np.allclose(one, expected[5:], atol=1e-6)

    eager = Embedder.random_init(variant="none", input_size=(64, 32), batch_size=4)
    eager._forward = eager_runner = StandInRunner()
    eager.embed(images[:3])
    assert [s[0] for s in eager_runner.shapes] == [3]  # no padding without compile


@pytest.mark.parametrize(
    ("precision", "fold", "expected"),
    [
        ("bf16", False, (True, torch.bfloat16)),
        ("fp32", True, (False, None)),
        # Folded bf16 on the CPU: the running copy holds bf16 weights and casts its input (model.fast_network),
        # so autocast (which would convert every weight on every call) is off.
        ("bf16", True, (False, None)),
    ],
)
def test_the_precision_setting_decides_autocast(precision, fold, expected):
    emb = Embedder.random_init(
        variant="none", input_size=(64, 32), batch_size=4, precision=precision, fold_batchnorm=fold
    )
    emb._forward = runner = StandInRunner()
    emb.embed(pictures(2))
    enabled, dtype = runner.autocast[0]
    assert enabled is expected[0]
    if expected[1] is not None:
        assert dtype == expected[1]
    assert emb.precision == precision


def test_precision_names(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("auto", cuda) == "bf16"
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16", "amx_tile"}))
    assert resolve_precision("auto", cpu) == "bf16" and resolve_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_vnni"}))
    assert resolve_precision(None, cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert resolve_precision("auto", cpu) == "bf16"
    assert resolve_precision(None, cuda) == "bf16" and resolve_precision("fp32", cuda) == "fp32"
    with pytest.raises(DeviceError, match="precision"):
        resolve_precision("fp16", cpu)
    with pytest.raises(DeviceError, match="precision"):
        autocast(cpu, "half")
    with autocast(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu")
    with autocast(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
