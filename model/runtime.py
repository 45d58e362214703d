"""Which runtime runs the network: torch, or ONNX Runtime on an exported file (made on the fly and cached).

    load_network("final.pt")                          -> torch network (RGAReID)
    load_network("final.onnx")                        -> OnnxNetwork
    load_network("final.pt", runtime="onnxruntime")   -> OnnxNetwork on a cached export of final.pt

The cache key is the SHA-256 of the weights, the code, torch and onnx versions and the export options,
so a retrained checkpoint or a code upgrade never reuses a stale file. The cache folder is
`cache_dir`, else $REID_CACHE_DIR, else $XDG_CACHE_HOME/rga-reid (~/.cache/rga-reid), subfolder onnx/.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from model.checkpoint import ModelMeta
from model.errors import ReidError

if TYPE_CHECKING:
    from model.resnet_rga import RGAReID

logger = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime")


def is_onnx_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def default_cache_dir() -> Path:
    if os.environ.get("REID_CACHE_DIR"):
        return Path(os.environ["REID_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rga-reid"


def check_runtime(runtime: str | None) -> str | None:
    if runtime is not None and runtime not in RUNTIMES:
        raise ReidError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    return runtime


def cached_export(net: RGAReID, meta: ModelMeta, cache_dir: str | os.PathLike | None = None, opset: int | None = None) -> Path:
    """The ONNX export of `net` from the cache, exporting it first when missing (dynamic batch, fp32)."""
    from model.fingerprint import weights_sha256
    from model.onnx_export import DEFAULT_OPSET, export_key, export_onnx

    opset = opset or DEFAULT_OPSET
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("cls.")}
    key = export_key(weights_sha256(state), opset, extra=repr(meta.to_dict()))
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / "onnx" / f"{meta.variant}-{meta.input_size[0]}x{meta.input_size[1]}-{key[:20]}.onnx"
    if path.is_file():
        logger.info("using the cached ONNX export %s", path)
        return path
    logger.info("exporting the network to ONNX once (cached as %s)", path)
    return export_onnx(net, meta, path, opset=opset, dynamic_batch=True)


def load_network(
    path: str | os.PathLike,
    runtime: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    ort_options=None,
) -> tuple[object, ModelMeta]:
    """(network, metadata) for a weights file; `runtime` None picks by file type (.onnx -> onnxruntime)."""
    check_runtime(runtime)
    if is_onnx_file(path):
        if runtime == "torch":
            raise ReidError(f"{path} is an ONNX file: it runs with the onnxruntime runtime, not torch")
        from model.onnx_network import OnnxNetwork

        net = OnnxNetwork(path, ort_options, cache_dir=cache_dir)
        return net, net.meta
    from model.builder import load_checkpoint  # torch: not imported for an ONNX file

    net, meta = load_checkpoint(path, device="cpu", for_inference=True)
    if runtime == "onnxruntime":
        from model.onnx_network import OnnxNetwork

        onnx_net = OnnxNetwork(cached_export(net, meta, cache_dir), ort_options, cache_dir=cache_dir)
        return onnx_net, onnx_net.meta
    return net, meta
