"""Export the embedding network to a self-describing ONNX file.

The graph is the inference network in its fast (reassociated) form: input `images`, a normalised
(N, 3, H, W) float32 batch (the embedder's preprocessing: bilinear resize, /255, mean/std), and two
outputs, `feat_` (pooled, 2048) and `feat` (after the BNNeck); which one embeds is the metadata's
`embed_feature`, and either can be asked for at run time. Vectors are not L2-normalised in the graph
(the embedder does it, after the optional flip sum).

Everything needed to use the file travels in its `metadata_props`: the checkpoint's ModelMeta as
JSON (variant, input size, mean/std, feature, dimension, code version, dataset, epoch), the SHA-256
of the checkpoint's weights, the service fingerprints of both features, the precision, and the
SHA-256 of the graph as written, so a reader can tell a faithful export from an edited file.

Needs the optional `onnx` extra (onnx, onnxruntime).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from model.checkpoint import ModelMeta, code_version
from model.errors import ReidError
from model.files import atomic_output
from model.fingerprint import torch_fingerprint, weights_sha256
from model.onnx_format import (
    INPUT_NAME,
    ONNX_FORMAT,
    OUTPUT_NAMES,
    PRECISIONS,
    OnnxInfo,
    graph_sha256,
    read_onnx_info,
    require_onnx,
    set_metadata,
)
from model.resnet_rga import RGAReID

# The read side (format, names, metadata parsing) lives in model.onnx_format, which needs no torch;
# its names are re-exported here for the callers that import them from this module.
__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "ONNX_FORMAT",
    "OUTPUT_NAMES",
    "PRECISIONS",
    "OnnxInfo",
    "export_key",
    "export_onnx",
    "graph_sha256",
    "onnx_metadata",
    "read_onnx_info",
    "require_onnx",
    "save_onnx_model",
    "set_metadata",
]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17


class _EmbeddingGraph(nn.Module):
    """The part of the network the ONNX file holds: backbone + BNNeck, both features out."""

    def __init__(self, net: RGAReID) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net.forward_head(self.net.backbone(images))
        return out.feat_, out.feat


def onnx_metadata(
    meta: ModelMeta, weights_hash: str, fingerprints: dict[str, str], precision: str, batch: int | None, opset: int
) -> dict[str, str]:
    return {
        "rga_reid.format": ONNX_FORMAT,
        "rga_reid.meta": json.dumps(meta.to_dict()),
        "rga_reid.variant": meta.variant,
        "rga_reid.input_size": f"{meta.input_size[0]}x{meta.input_size[1]}",
        "rga_reid.mean": json.dumps(list(meta.mean)),
        "rga_reid.std": json.dumps(list(meta.std)),
        "rga_reid.embed_feature": meta.embed_feature,
        "rga_reid.feature_dim": str(meta.feature_dim),
        "rga_reid.code_version": meta.code_version,
        "rga_reid.exported_by": f"rga-reid {code_version()}, torch {torch.__version__}",
        "rga_reid.weights_sha256": weights_hash,
        "rga_reid.fingerprints": json.dumps(fingerprints),
        "rga_reid.precision": precision,
        "rga_reid.batch": "dynamic" if batch is None else str(batch),
        "rga_reid.opset": str(opset),
    }


def save_onnx_model(model, out: str | os.PathLike) -> Path:
    """Record the graph hash, check the model with onnx.checker, write atomically (temp file + rename)."""
    onnx = require_onnx()
    set_metadata(model, {"rga_reid.graph_sha256": graph_sha256(model)})
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ReidError(f"the exported ONNX model does not pass onnx.checker: {exc}") from exc
    out = Path(out)
    with atomic_output(out) as tmp:
        onnx.save_model(model, tmp)
    return out


def export_onnx(
    net: RGAReID,
    meta: ModelMeta,
    out: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    batch_size: int = 1,
) -> Path:
    """Write `net` (inference weights, classifier ignored) as an ONNX file with our metadata; returns the path.

    `dynamic_batch=False` fixes the batch axis to `batch_size` (what TensorRT engines built for one shape
    prefer); the embedder pads the last chunk of a run to that size.
    """
    onnx = require_onnx()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if tuple(net.input_size) != tuple(meta.input_size):
        raise ValueError(f"network input size {net.input_size} differs from metadata {meta.input_size}")
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("cls.")}
    weights_hash = weights_sha256(state)
    fingerprints = {feature: torch_fingerprint(state, meta, feature) for feature in OUTPUT_NAMES}
    forms = [m.form for m in net.rga_modules()]
    was_training = net.training
    net.set_rga_form("fast").eval()
    graph = _EmbeddingGraph(net)
    example = torch.zeros(batch_size, 3, *meta.input_size)
    dynamic_axes = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}} if dynamic_batch else None
    with tempfile.TemporaryDirectory(prefix="rga-onnx-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                # The TorchScript exporter: one file, no extra dependency, ~10 s for RGA-SC on 2 cores.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                torch.onnx.export(
                    graph,
                    (example,),
                    str(raw),
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=list(OUTPUT_NAMES),
                    dynamic_axes=dynamic_axes,
                    do_constant_folding=True,
                )
        finally:
            for module, form in zip(net.rga_modules(), forms, strict=True):
                module.form = form
            net.train(was_training)
        model = onnx.load(str(raw))
    model.producer_name = "rga-reid"
    model.doc_string = (
        f"RGA re-ID embedding network ({meta.variant}, {meta.input_size[0]}x{meta.input_size[1]}); "
        f"input '{INPUT_NAME}' normalised NCHW float32; outputs 'feat_' and 'feat' (not L2-normalised)"
    )
    set_metadata(
        model, onnx_metadata(meta, weights_hash, fingerprints, "fp32", None if dynamic_batch else batch_size, opset)
    )
    path = save_onnx_model(model, out)
    logger.info("wrote %s (%s, opset %d, %s batch)", path, meta.variant, opset, "dynamic" if dynamic_batch else batch_size)
    return path


def export_key(weights_hash: str, opset: int, precision: str = "fp32", extra: str = "") -> str:
    """Cache key of an on-the-fly export: weights, code and exporter versions, options."""
    parts = [weights_hash, code_version(), torch.__version__, ONNX_FORMAT, str(opset), "dynamic", precision, extra]
    with contextlib.suppress(ImportError):
        import onnx

        parts.append(onnx.__version__)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()
