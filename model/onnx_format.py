"""The rga-reid ONNX file format, read side: names, metadata, graph hash. No torch here (see model.onnx_export
for writing a file): the ONNX Runtime embedder reads files with this module alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from model.checkpoint import ModelMeta
from model.errors import CheckpointError, ReidError

ONNX_FORMAT = "rga-reid-onnx/1"
INPUT_NAME = "images"
OUTPUT_NAMES = ("feat_", "feat")
PRECISIONS = ("fp32", "int8")


def require_onnx():
    """Import onnx, or say how to install it."""
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ReidError("ONNX export needs the 'onnx' extra: pip install 'rga-reid[onnx]'") from exc
    return onnx


@dataclass(frozen=True)
class OnnxInfo:
    """What an ONNX file of ours says about itself (its metadata_props, parsed)."""

    meta: ModelMeta
    precision: str  # "fp32" or "int8"
    batch: int | None  # fixed batch size, None for a dynamic batch axis
    weights_sha256: str  # of the checkpoint it was exported from
    fingerprints: dict[str, str]  # feature -> service fingerprint, as recorded
    graph_sha256: str  # of the graph as written; differs from the file's graph after an edit
    opset: int


def graph_sha256(model) -> str:
    """SHA-256 of the serialised graph (nodes and weights; not the metadata)."""
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def read_onnx_info(model, source: str = "the ONNX file") -> OnnxInfo:
    """Parse our metadata from a loaded onnx.ModelProto; CheckpointError when it is not one of ours."""
    return read_onnx_props({p.key: p.value for p in model.metadata_props}, source)


def read_onnx_props(props: Mapping[str, str], source: str = "the ONNX file") -> OnnxInfo:
    """Parse our metadata from the file's metadata_props as a mapping (onnx's, or ONNX Runtime's
    `custom_metadata_map`); CheckpointError when it is not one of ours."""
    if props.get("rga_reid.format") != ONNX_FORMAT:
        found = props.get("rga_reid.format")
        raise CheckpointError(
            f"{source} is not an rga-reid ONNX export (format {found!r}, expected {ONNX_FORMAT!r}); "
            "write one with `reid export --format onnx`"
        )
    try:
        meta = ModelMeta.from_dict(json.loads(props["rga_reid.meta"]))
        batch = props.get("rga_reid.batch", "dynamic")
        info = OnnxInfo(
            meta=meta,
            precision=props["rga_reid.precision"],
            batch=None if batch == "dynamic" else int(batch),
            weights_sha256=props["rga_reid.weights_sha256"],
            fingerprints=json.loads(props["rga_reid.fingerprints"]),
            graph_sha256=props["rga_reid.graph_sha256"],
            opset=int(props.get("rga_reid.opset", "0")),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{source} has incomplete rga-reid metadata: {exc!r}") from exc
    if info.precision not in PRECISIONS:
        raise CheckpointError(f"{source}: unknown precision {info.precision!r}")
    return info


def set_metadata(model, entries: dict[str, Any]) -> None:
    """Replace our metadata_props entries (others are kept)."""
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    for key, value in [*keep, *entries.items()]:
        prop = model.metadata_props.add()
        prop.key = key
        prop.value = value if isinstance(value, str) else json.dumps(value)
