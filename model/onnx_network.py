"""An exported ONNX file run by ONNX Runtime, in the place of the torch network inside the Embedder.

`OnnxNetwork` answers what the embedder asks of a network (`input_size`, `feature_dim`, `eval()`,
`.to(device)`, a call on a preprocessed batch returning `feat_` and `feat`), so preprocessing,
batching, flip and normalisation stay the embedder's, identical for both runtimes.

Session options (`OrtOptions`, defaults measured on the 2-core build machine; BENCHMARKS.md,
"ONNX Runtime session options"): intra-op threads = the CPUs this process may use, full graph
optimisation, the CPU memory arena on, and no busy-waiting of idle worker threads between calls
(on a shared box spinning steals the cores other work needs, for no gain at these op sizes).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import ModelMeta
from model.errors import CheckpointError, ReidError
from model.fingerprint import graph_fingerprint
from model.onnx_export import INPUT_NAME, OUTPUT_NAMES, OnnxInfo, graph_sha256, read_onnx_info, require_onnx
from model.resnet_rga import ReIDOutput

logger = logging.getLogger(__name__)

GRAPH_LEVELS = ("disable", "basic", "extended", "all")


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ReidError("the onnxruntime runtime needs the 'onnx' extra: pip install 'rga-reid[onnx]'") from exc
    return onnxruntime


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class OrtOptions:
    """ONNX Runtime session options. threads=0: every CPU this process may use."""

    threads: int = 0
    graph_level: str = "all"
    memory_arena: bool = True
    spinning: bool = False

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.graph_level not in GRAPH_LEVELS:
            raise ValueError(f"graph_level must be one of {GRAPH_LEVELS}, got {self.graph_level!r}")

    def session_options(self):
        ort = require_onnxruntime()
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads or available_cpus()
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_level]
        so.enable_cpu_mem_arena = self.memory_arena
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        so.log_severity_level = 3
        return so


def providers_for(device: torch.device) -> list[str]:
    """Execution providers for a device: CPU, or TensorRT / CUDA (then CPU for what they do not take)."""
    ort = require_onnxruntime()
    available = ort.get_available_providers()
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda":
        gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
        if not gpu:
            raise ReidError(
                "this onnxruntime has no CUDA or TensorRT provider (the 'onnx' extra installs the CPU build); "
                "install onnxruntime-gpu, or use --device cpu"
            )
        return [*gpu, "CPUExecutionProvider"]
    raise ReidError(f"onnxruntime cannot run on device {device}")


class OnnxNetwork:
    """An rga-reid ONNX file behind the network interface the Embedder uses."""

    def __init__(self, path: str | os.PathLike, options: OrtOptions | None = None) -> None:
        onnx = require_onnx()
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX file not found: {self.path}")
        try:
            model = onnx.load(str(self.path))
        except Exception as exc:  # protobuf DecodeError and friends
            raise CheckpointError(f"cannot read ONNX file {self.path}: {exc}".split("\n")[0]) from exc
        self.info: OnnxInfo = read_onnx_info(model, str(self.path))
        self.meta: ModelMeta = self.info.meta
        actual_graph = graph_sha256(model)
        # A file whose graph is the one recorded at export gives the checkpoint's vectors; anything else
        # (int8, or a graph edited after export) is its own model.
        self.faithful = actual_graph == self.info.graph_sha256 and self.info.precision == "fp32"
        if actual_graph != self.info.graph_sha256:
            logger.warning("%s: graph differs from the one recorded at export; treated as another model", path)
        self._graph_sha256 = actual_graph
        del model
        self.options = options or OrtOptions()
        self.input_size = tuple(self.meta.input_size)
        self.feature_dim = self.meta.feature_dim
        self.batch = self.info.batch
        self.device = torch.device("cpu")
        self._session = None

    # -- what the Embedder asks of a network ---------------------------------------------
    def default_device(self) -> str:
        gpu = {"TensorrtExecutionProvider", "CUDAExecutionProvider"} & set(require_onnxruntime().get_available_providers())
        return "cuda" if gpu and torch.cuda.is_available() else "cpu"

    def eval(self) -> OnnxNetwork:
        return self

    def to(self, device: str | torch.device, memory_format=None) -> OnnxNetwork:
        device = torch.device(device)
        if self._session is None or device != self.device:
            self.device = device
            self._session = self._make_session(device)
        return self

    def _make_session(self, device: torch.device):
        ort = require_onnxruntime()
        try:
            session = ort.InferenceSession(
                str(self.path), self.options.session_options(), providers=providers_for(device)
            )
        except ReidError:
            raise
        except Exception as exc:
            raise CheckpointError(f"onnxruntime cannot load {self.path}: {exc}".split("\n")[0]) from exc
        names = [o.name for o in session.get_outputs()]
        if session.get_inputs()[0].name != INPUT_NAME or tuple(names) != OUTPUT_NAMES:
            raise CheckpointError(f"{self.path}: expected input {INPUT_NAME!r} and outputs {OUTPUT_NAMES}, got {names}")
        return session

    def fingerprint(self, feature: str) -> str:
        """The service fingerprint of this file's vectors for `feature` (see model.fingerprint)."""
        if self.faithful:
            return self.info.fingerprints[feature]
        return graph_fingerprint(self._graph_sha256, self.meta, feature, self.info.precision)

    def __call__(self, x: torch.Tensor) -> ReIDOutput:
        """Preprocessed (N, 3, H, W) float32 batch -> ReIDOutput(feat_, feat, None) as float32 CPU tensors."""
        if self._session is None:
            self.to(self.device)
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != self.input_size:
            from model.errors import InputSizeError

            raise InputSizeError(
                f"{self.path.name} was exported for (B, 3, {self.input_size[0]}, {self.input_size[1]}) input, "
                f"got {tuple(x.shape)}"
            )
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        n = array.shape[0]
        if self.batch is None:
            feat_, feat = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: array})
        else:  # a fixed-batch file: run in chunks of its batch, the last one padded
            parts = []
            for start in range(0, n, self.batch):
                chunk = array[start : start + self.batch]
                if chunk.shape[0] < self.batch:
                    pad = np.zeros((self.batch - chunk.shape[0], *chunk.shape[1:]), dtype=np.float32)
                    chunk = np.concatenate([chunk, pad])
                parts.append(self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: chunk}))
            feat_ = np.concatenate([p[0] for p in parts])[:n]
            feat = np.concatenate([p[1] for p in parts])[:n]
        return ReIDOutput(torch.from_numpy(feat_), torch.from_numpy(feat), None)
