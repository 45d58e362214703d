"""An exported ONNX file run by ONNX Runtime, in the place of the torch network inside the Embedder.

`OnnxNetwork` answers what the embedder asks of a network (`input_size`, `feature_dim`, `eval()`,
`.to(device)`, a call on a preprocessed batch returning `feat_` and `feat`), so preprocessing,
batching, flip and normalisation stay the embedder's, identical for both runtimes.

Session options (`OrtOptions`, defaults measured on the 2-core build machine; BENCHMARKS.md,
"ONNX Runtime session options"): intra-op threads = the CPUs this process may use, full graph
optimisation, the CPU memory arena on, and no busy-waiting of idle worker threads between calls
(on a shared box spinning steals the cores other work needs, for no gain at these op sizes).

No torch here: `OnnxNetwork.run` takes and returns numpy arrays, and the Embedder runs an ONNX file
without importing torch (about 3 CPU-seconds of every `reid embed --weights FILE.onnx`). The optimised
graph is cached between runs (model.ort_cache, `OrtOptions.cache_graph`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.checkpoint import ModelMeta
from model.device import usable_cpus
from model.errors import CheckpointError, ReidError
from model.fingerprint import graph_fingerprint
from model.onnx_format import (
    INPUT_NAME,
    OUTPUT_NAMES,
    OnnxInfo,
    graph_sha256,
    read_onnx_info,
    read_onnx_props,
    require_onnx,
)
from model.ort_cache import CacheEntry, OrtGraphCache, file_sha256

if TYPE_CHECKING:
    import torch

    from model.resnet_rga import ReIDOutput

logger = logging.getLogger(__name__)

GRAPH_LEVELS = ("disable", "basic", "extended", "all")


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ReidError("the onnxruntime runtime needs the 'onnx' extra: pip install 'rga-reid[onnx]'") from exc
    return onnxruntime


@dataclass(frozen=True)
class OrtOptions:
    """ONNX Runtime session options. threads=0: every CPU this process may use."""

    threads: int = 0
    graph_level: str = "all"
    memory_arena: bool = True
    spinning: bool = False
    cache_graph: bool = True  # reuse ONNX Runtime's optimised graph between runs (model.ort_cache)

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.graph_level not in GRAPH_LEVELS:
            raise ValueError(f"graph_level must be one of {GRAPH_LEVELS}, got {self.graph_level!r}")

    def session_options(self):
        ort = require_onnxruntime()
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads or usable_cpus()
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


def _device_type(device) -> str:
    return str(device).split(":")[0]


def providers_for(device: str | torch.device) -> list[str]:
    """Execution providers for a device: CPU, or TensorRT / CUDA (then CPU for what they do not take)."""
    ort = require_onnxruntime()
    available = ort.get_available_providers()
    if _device_type(device) == "cpu":
        return ["CPUExecutionProvider"]
    if _device_type(device) == "cuda":
        gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
        if not gpu:
            raise ReidError(
                "this onnxruntime has no CUDA or TensorRT provider (the 'onnx' extra installs the CPU build); "
                "install onnxruntime-gpu, or use --device cpu"
            )
        return [*gpu, "CPUExecutionProvider"]
    raise ReidError(f"onnxruntime cannot run on device {device}")


class OnnxNetwork:
    """An rga-reid ONNX file behind the network interface the Embedder uses.

    cache_dir: where the optimised graph is cached (default model.runtime.default_cache_dir()), in its
    `ort/` subfolder; `options.cache_graph=False` turns the cache off.
    """

    def __init__(
        self, path: str | os.PathLike, options: OrtOptions | None = None, cache_dir: str | os.PathLike | None = None
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX file not found: {self.path}")
        self.options = options or OrtOptions()
        self._cache: OrtGraphCache | None = None
        self._cache_key: str | None = None
        self._cached: CacheEntry | None = None
        if self.options.cache_graph and self.options.graph_level != "disable":
            from model.runtime import default_cache_dir

            self._cache = OrtGraphCache(Path(cache_dir if cache_dir is not None else default_cache_dir()) / "ort")
            try:
                self._cache_key = self._cache.key(file_sha256(self.path), self.options.graph_level)
                self._cached = self._cache.lookup(self._cache_key)
            except OSError as exc:
                raise CheckpointError(f"cannot read ONNX file {self.path}: {exc}") from exc
        if self._cached is not None:  # verified on an earlier run of these very bytes
            self._props = self._cached.props
            actual_graph = self._cached.graph_sha256
            self.info: OnnxInfo = read_onnx_props(self._props, str(self.path))
        else:
            onnx = require_onnx()
            try:
                model = onnx.load(str(self.path))
            except Exception as exc:  # protobuf DecodeError and friends
                raise CheckpointError(f"cannot read ONNX file {self.path}: {exc}".split("\n")[0]) from exc
            self._props = {p.key: p.value for p in model.metadata_props}
            self.info = read_onnx_info(model, str(self.path))
            actual_graph = graph_sha256(model)
            del model
        self.meta: ModelMeta = self.info.meta
        # A file whose graph is the one recorded at export gives the checkpoint's vectors; anything else
        # (int8, or a graph edited after export) is its own model.
        self.faithful = actual_graph == self.info.graph_sha256 and self.info.precision == "fp32"
        if actual_graph != self.info.graph_sha256:
            logger.warning("%s: graph differs from the one recorded at export; treated as another model", path)
        self._graph_sha256 = actual_graph
        self.input_size = tuple(self.meta.input_size)
        self.feature_dim = self.meta.feature_dim
        self.batch = self.info.batch
        self.device = "cpu"
        self._session = None
        self.cache_hit: bool | None = None  # after the session is made: whether it came from the cache

    # -- what the Embedder asks of a network ---------------------------------------------
    def default_device(self) -> str:
        gpu = {"TensorrtExecutionProvider", "CUDAExecutionProvider"} & set(require_onnxruntime().get_available_providers())
        if not gpu:
            return "cpu"
        import torch  # a GPU build of onnxruntime: ask whether a GPU is there

        return "cuda" if torch.cuda.is_available() else "cpu"

    def eval(self) -> OnnxNetwork:
        return self

    def to(self, device: str | torch.device, memory_format=None) -> OnnxNetwork:
        device = str(device)
        if self._session is None or device != self.device:
            self.device = device
            self._session = self._make_session(device)
        return self

    def _make_session(self, device: str):
        providers = providers_for(device)
        use_cache = self._cache is not None and self._cache_key is not None and providers == ["CPUExecutionProvider"]
        if use_cache and self._cached is not None:
            options = self.options.session_options()
            options.graph_optimization_level = require_onnxruntime().GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                session = self._open(self._cached.model_path, options, providers)
            except CheckpointError as exc:
                logger.warning("the cached optimised graph of %s does not load (%s); using the file", self.path, exc)
                self._cache.discard(self._cache_key)
                self._cached = None
            else:
                self.cache_hit = True
                return session
        self.cache_hit = False
        options = self.options.session_options()
        partial = None
        if use_cache:
            try:
                partial = self._cache.temporary_model_path()
                options.optimized_model_filepath = str(partial)
            except OSError as exc:  # a read-only cache folder costs speed, not the run
                logger.info("not caching the optimised graph of %s: %s", self.path, exc)
        try:
            session = self._open(self.path, options, providers)
            if partial is not None:
                try:
                    self._cache.store(self._cache_key, partial, self._props, self._graph_sha256)
                    partial = None
                except OSError as exc:
                    logger.info("not caching the optimised graph of %s: %s", self.path, exc)
        finally:
            if partial is not None:
                partial.unlink(missing_ok=True)
        return session

    def _open(self, path: Path, options, providers: list[str]):
        ort = require_onnxruntime()
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except ReidError:
            raise
        except Exception as exc:
            raise CheckpointError(f"onnxruntime cannot load {path}: {exc}".split("\n")[0]) from exc
        names = [o.name for o in session.get_outputs()]
        if session.get_inputs()[0].name != INPUT_NAME or tuple(names) != OUTPUT_NAMES:
            raise CheckpointError(f"{path}: expected input {INPUT_NAME!r} and outputs {OUTPUT_NAMES}, got {names}")
        return session

    def fingerprint(self, feature: str) -> str:
        """The service fingerprint of this file's vectors for `feature` (see model.fingerprint)."""
        if self.faithful:
            return self.info.fingerprints[feature]
        return graph_fingerprint(self._graph_sha256, self.meta, feature, self.info.precision)

    def run(self, array: np.ndarray) -> dict[str, np.ndarray]:
        """Preprocessed (N, 3, H, W) float32 batch -> {"feat_": (N, D), "feat": (N, D)} float32 arrays."""
        if self._session is None:
            self.to(self.device)
        if array.ndim != 4 or array.shape[1] != 3 or tuple(array.shape[-2:]) != self.input_size:
            from model.errors import InputSizeError

            raise InputSizeError(
                f"{self.path.name} was exported for (B, 3, {self.input_size[0]}, {self.input_size[1]}) input, "
                f"got {tuple(array.shape)}"
            )
        array = np.ascontiguousarray(array, dtype=np.float32)
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
        return {"feat_": feat_, "feat": feat}

    def __call__(self, x: torch.Tensor) -> ReIDOutput:
        """Preprocessed (N, 3, H, W) float32 tensor -> ReIDOutput(feat_, feat, None) as float32 CPU tensors."""
        import torch

        from model.resnet_rga import ReIDOutput

        out = self.run(x.detach().to("cpu", torch.float32).numpy())
        return ReIDOutput(torch.from_numpy(out["feat_"]), torch.from_numpy(out["feat"]), None)
