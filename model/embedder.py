"""Batched inference: images in, L2-normalised float32 embeddings out.

Preprocessing is the official test transform, taken from the checkpoint's metadata
(model.images.resize_to_input, then scale to [0, 1] and normalise by mean/std).
Precision is a choice (model.device): "fp32" as the official code tests, "bf16" autocast as the fast
option on CUDA, "auto" (the default) = bf16 on CUDA, fp32 on the CPU. The network runs channels_last
unless told otherwise (a trainer evaluating its own network passes its training layout, so nothing has
to be undone afterwards), and, opt-in, compiled with CUDA graphs over a fixed batch shape for
steady-state serving. Any number of images is accepted (processed in chunks of `batch_size`), output
order is input order, and the result does not depend on anything but the inputs.

An ONNX file (model.onnx_network) runs without torch: `embed` / `embed_features` then preprocess,
run, flip and normalise in numpy (the same arithmetic, in float32), and torch is imported only if a
torch-facing method (`preprocess`, `embed_tensor*`, `device`) is called. `reid embed --weights
FILE.onnx` saves torch's import that way (about 3 CPU-seconds on the 2-core build machine).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.checkpoint import ModelMeta
from model.device import DeviceError, autocast, resolve_device, resolve_precision
from model.images import ImageLike, resize_to_input
from model.spec import DEFAULT_INPUT_SIZE

if TYPE_CHECKING:
    import torch

    from model.resnet_rga import RGAReID

logger = logging.getLogger(__name__)


class Embedder:
    """Embeds person images with an RGA re-ID network.

    Args:
        net: the network (its classifier is not used).
        meta: the weights' metadata: input size, normalisation, which feature to embed with.
        device: "cpu", "cuda", a torch.device, or None for CUDA when available.
        batch_size: images per forward pass.
        flip: horizontal-flip test-time augmentation (sum of both views, then normalised).
        feature: "feat_" or "feat"; defaults to meta.embed_feature.
        compile: compile the network (CUDA graphs on CUDA); batches are padded to
            `batch_size` so one graph serves every call. For steady-state serving.
        precision: "fp32", "bf16" (autocast) or "auto" (bf16 on CUDA, fp32 on the CPU).
        channels_last: run the network in the channels_last memory format (faster convolutions);
            False keeps the network's parameters in their contiguous layout.
        fold_batchnorm: run a copy of the network taken now, with its BatchNorms folded into the
            convolutions (model.fold; the same function, cosine >= 0.9999 to the unfolded network in
            fp32), and in bf16 on the CPU with bf16 weights (model.fast_network). `net` itself is not
            changed, so the fingerprint and `self.net` are the loaded weights'; but later changes to
            `net` do not reach the copy, and it costs a second copy of the weights in memory. Off here
            (a trainer evaluating its live network), on in `from_checkpoint` and `random_init`, where
            the embedder owns its network.

    `net` may also be a `model.onnx_network.OnnxNetwork` (an exported file run by ONNX Runtime):
    same preprocessing, batching, flip and normalisation; see `from_checkpoint(..., runtime=)`.
    """

    def __init__(
        self,
        net: RGAReID,
        meta: ModelMeta,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        flip: bool = False,
        feature: str | None = None,
        compile: bool = False,
        precision: str | None = "auto",
        channels_last: bool = True,
        fold_batchnorm: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        feature = feature or meta.embed_feature
        if feature not in ("feat_", "feat"):
            raise ValueError(f"feature must be 'feat_' or 'feat', got {feature!r}")
        if tuple(net.input_size) != tuple(meta.input_size):
            raise ValueError(f"network input size {net.input_size} differs from metadata {meta.input_size}")
        self.meta = meta
        self._is_torch = _is_torch_module(net)
        self.batch_size = batch_size
        self.flip = flip
        self.feature = feature
        self.input_size = tuple(meta.input_size)
        self._fingerprint: str | None = None
        self._bf16_weights = False  # torch, bf16 on the CPU: the running copy holds bf16 weights (no autocast)
        self.fold_batchnorm = bool(fold_batchnorm) and self._is_torch  # ONNX Runtime's optimiser folds itself
        self._norm: tuple[torch.Tensor, torch.Tensor] | None = None
        self._mean_np = np.asarray(meta.mean, dtype=np.float32).reshape(1, 3, 1, 1) * np.float32(255.0)
        self._std_np = np.asarray(meta.std, dtype=np.float32).reshape(1, 3, 1, 1) * np.float32(255.0)
        self.compiled = compile
        if not self._is_torch:  # ONNX Runtime: no torch unless a GPU or a torch-facing method asks for it
            if compile:
                raise ValueError("compile=True needs the torch runtime")
            if precision not in (None, "auto", "fp32"):
                raise DeviceError(
                    f"precision {precision!r} applies to the torch runtime; ONNX Runtime runs the file's own "
                    f"precision ({net.info.precision}): export another file (e.g. --int8) instead"
                )
            device = net.default_device() if device in (None, "auto") else device  # CUDA only with a GPU build
            self._device = None if str(device) == "cpu" else resolve_device(device)
            self.device_type = "cpu" if self._device is None else self._device.type
            self.precision = "fp32"
            self.memory_format = None
            self.net = net.eval().to(self._device or "cpu")
            self._forward = self.net
            return
        import torch

        self._device = resolve_device(device)
        self.device_type = self._device.type
        self.precision = resolve_precision(precision, self._device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.eval().to(self._device, memory_format=self.memory_format)
        self._forward = self.net
        if fold_batchnorm:
            from model.fast_network import inference_network

            # A folded copy runs; self.net keeps the weights as loaded (fingerprint, exports, state dict).
            self._forward, self._bf16_weights = inference_network(self.net, self.precision, self._device)
            self._forward = self._forward.to(memory_format=self.memory_format)
        if compile:
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            self._forward = torch.compile(self._forward, mode=mode, dynamic=False)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls, path: str | Path, runtime: str | None = None, cache_dir: str | Path | None = None, **kwargs
    ) -> Embedder:
        """Load our checkpoint, an official RGA checkpoint (see model.builder) or our ONNX export.

        runtime: None picks by file (.onnx -> "onnxruntime", else "torch"); "onnxruntime" with a
        checkpoint exports it to ONNX once and caches the file (see model.runtime).
        """
        from model.runtime import load_network

        net, meta = load_network(path, runtime=runtime, cache_dir=cache_dir)
        return cls(net, meta, **_owned(net, kwargs))

    @classmethod
    def random_init(
        cls,
        variant: str = "rgasc",
        input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
        seed: int = 0,
        runtime: str | None = None,
        cache_dir: str | Path | None = None,
        **kwargs,
    ) -> Embedder:
        """A randomly initialised network (deterministic by `seed`): for tests and smoke runs only."""
        import torch

        from model.resnet_rga import RGAReID

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = RGAReID(variant, 0, input_size)
        meta = ModelMeta(variant=variant, input_size=input_size, source="random-init", code_version="random")
        if runtime == "onnxruntime":
            from model.onnx_network import OnnxNetwork
            from model.runtime import cached_export

            net = OnnxNetwork(cached_export(net.eval(), meta, cache_dir))
        elif runtime not in (None, "torch"):
            raise ValueError(f"unknown runtime {runtime!r}")
        return cls(net, meta, **_owned(net, kwargs))

    @property
    def dim(self) -> int:
        return self.net.feature_dim

    @property
    def runtime(self) -> str:
        return "torch" if self._is_torch else "onnxruntime"

    @property
    def device(self) -> torch.device:
        """The torch device (imports torch for an ONNX Runtime embedder on the CPU; `device_type` does not)."""
        if self._device is None:
            import torch

            self._device = torch.device("cpu")
        return self._device

    @property
    def fingerprint(self) -> str:
        """Which model the vectors come from (model.fingerprint): equal for torch and a faithful fp32 ONNX
        export of the same weights, different for other weights, preprocessing, feature, or int8."""
        if self._fingerprint is None:
            if self._is_torch:
                from model.fingerprint import torch_fingerprint

                self._fingerprint = torch_fingerprint(self.net.state_dict(), self.meta, self.feature)
            else:
                self._fingerprint = self.net.fingerprint(self.feature)
        return self._fingerprint

    # -- preprocessing ----------------------------------------------------------------
    def _pixels(self, images: Sequence[ImageLike]) -> np.ndarray:
        return np.stack([resize_to_input(im, self.input_size) for im in images])  # (N, H, W, 3) uint8

    def preprocess(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Images -> normalised (N, 3, H, W) float32 tensor on the embedder's device (in its memory format)."""
        import torch

        if self._norm is None:
            self._norm = (torch.from_numpy(self._mean_np).to(self.device), torch.from_numpy(self._std_np).to(self.device))
        mean, std = self._norm
        pixels = torch.from_numpy(self._pixels(images))
        x = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()  # (N, 3, H, W)
        x = (x - mean) / std
        return x.contiguous(memory_format=self.memory_format or torch.contiguous_format)

    def preprocess_array(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Images -> normalised (N, 3, H, W) float32 numpy array (what `preprocess` computes, without torch)."""
        x = self._pixels(images).transpose(0, 3, 1, 2).astype(np.float32)  # a contiguous (N, 3, H, W) copy
        x -= self._mean_np
        x /= self._std_np
        return x

    # -- inference --------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._bf16_weights:  # the network casts its input and runs in bf16 itself
            return contextlib.nullcontext()
        return autocast(self.device, self.precision)

    def _run_features(self, x: torch.Tensor, features: Sequence[str]) -> dict[str, torch.Tensor]:
        """One forward pass of a preprocessed batch -> {feature name: (n, D) float32} for each name asked."""
        import torch

        n = x.shape[0]
        if self.compiled and n < self.batch_size:  # static shape: one compiled graph for every call
            x = torch.cat([x, x.new_zeros((self.batch_size - n, *x.shape[1:]))])
        if self.compiled and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        with self._autocast():
            out = self._forward(x)
        return {name: getattr(out, name)[:n].float().clone() for name in features}

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """One forward pass of a preprocessed batch -> the chosen feature, float32."""
        return self._run_features(x, (self.feature,))[self.feature]

    def _check_features(self, features: Sequence[str]) -> tuple[str, ...]:
        features = tuple(features)
        unknown = [name for name in features if name not in ("feat_", "feat")]
        if unknown or not features:
            raise ValueError(f"features must be among 'feat_' and 'feat', got {features!r}")
        return features

    def embed_tensor_features(self, x: torch.Tensor, features: Sequence[str]) -> dict[str, torch.Tensor]:
        """Preprocessed (N, 3, H, W) batch -> {name: (N, D) L2-normalised float32} in one pass per chunk."""
        import torch

        with torch.inference_mode():
            return self._embed_tensor_features(x, features)

    def _embed_tensor_features(self, x: torch.Tensor, features: Sequence[str]) -> dict[str, torch.Tensor]:
        import torch
        import torch.nn.functional as F

        features = self._check_features(features)
        memory_format = self.memory_format or torch.contiguous_format
        if x.shape[0] == 0:
            return {name: torch.empty((0, self.dim), device=self.device) for name in features}
        chunks: dict[str, list[torch.Tensor]] = {name: [] for name in features}
        for start in range(0, x.shape[0], self.batch_size):
            batch = x[start : start + self.batch_size].to(self.device).contiguous(memory_format=memory_format)
            feats = self._run_features(batch, features)
            if self.flip:
                mirrored = self._run_features(batch.flip(3), features)
                feats = {name: feats[name] + mirrored[name] for name in features}
            for name in features:
                chunks[name].append(F.normalize(feats[name], dim=1))
        return {name: torch.cat(parts) for name, parts in chunks.items()}

    def embed_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed (N, 3, H, W) batch -> (N, D) L2-normalised float32 tensor on the device."""
        return self.embed_tensor_features(x, (self.feature,))[self.feature]

    def embed_features(
        self, images: Sequence[ImageLike], features: Sequence[str] = ("feat_", "feat")
    ) -> dict[str, np.ndarray]:
        """Images -> {name: (N, D) float32 unit rows} for several features from one forward pass (evaluation)."""
        features = self._check_features(features)
        images = list(images)
        if not self._is_torch:
            return self._embed_arrays(images, features)
        out = {name: np.empty((len(images), self.dim), dtype=np.float32) for name in features}
        for start, chunk in _chunks(images, self.batch_size):
            vectors = self.embed_tensor_features(self.preprocess(chunk), features)
            for name in features:
                out[name][start : start + len(chunk)] = vectors[name].cpu().numpy()
        return out

    def embed(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Images (PIL, arrays, bytes or paths; any mode) -> (N, D) float32, rows of unit L2 norm."""
        images = list(images)
        if not self._is_torch:
            return self._embed_arrays(images, (self.feature,))[self.feature]
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start, chunk in _chunks(images, self.batch_size):
            out[start : start + len(chunk)] = self.embed_tensor(self.preprocess(chunk)).cpu().numpy()
        return out

    def _embed_arrays(self, images: list, features: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The ONNX Runtime path in numpy: preprocess, run (and the mirrored batch), sum, L2-normalise."""
        out = {name: np.empty((len(images), self.dim), dtype=np.float32) for name in features}
        for start, chunk in _chunks(images, self.batch_size):
            x = self.preprocess_array(chunk)
            feats = self.net.run(x)
            if self.flip:
                mirrored = self.net.run(np.ascontiguousarray(x[..., ::-1]))
                feats = {name: feats[name] + mirrored[name] for name in features}
            for name in features:
                out[name][start : start + len(chunk)] = _l2_normalize(feats[name])
        return out


def _owned(net, kwargs: dict) -> dict:
    """Constructor arguments for a network the embedder owns: a torch network runs BatchNorm-folded."""
    if _is_torch_module(net):
        kwargs.setdefault("fold_batchnorm", True)
    return kwargs


def _is_torch_module(net) -> bool:
    torch = sys.modules.get("torch")  # a torch network means torch is imported; an ONNX one must not import it
    return torch is not None and isinstance(net, torch.nn.Module)


def _l2_normalize(rows: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (at least 1e-12), as torch.nn.functional.normalize."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)


def _chunks(items: list, size: int) -> Iterator[tuple[int, list]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]
