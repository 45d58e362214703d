"""Static int8 quantization of an exported fp32 ONNX file, calibrated on a folder of person images.

ONNX Runtime's `quantize_static` in QDQ format: weights int8 per output channel, activations uint8
with ranges from MinMax calibration over the given images, preprocessed exactly as the embedder
does. The result is another model (its vectors differ from fp32 by ~1e-2 in cosine), so it gets
its own fingerprint and is never the default; BENCHMARKS.md reports its cosine to fp32 and its
rank-1 / mAP change.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from model.errors import ReidError
from model.images import ImageLike
from model.onnx_export import INPUT_NAME, read_onnx_info, save_onnx_model, set_metadata

logger = logging.getLogger(__name__)


def quantize_int8(
    fp32_path: str | os.PathLike,
    out: str | os.PathLike,
    calibration_images: Sequence[ImageLike],
    batch_size: int = 8,
    op_types: Sequence[str] | None = ("Conv", "MatMul"),
) -> Path:
    """Write an int8 (QDQ) copy of an fp32 rga-reid ONNX file, calibrated on `calibration_images`."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from model.embedder import Embedder

    if len(calibration_images) == 0:
        raise ReidError("int8 calibration needs at least one image")
    source = onnx.load(str(fp32_path), load_external_data=False)
    info = read_onnx_info(source, str(fp32_path))
    if info.precision != "fp32":
        raise ReidError(f"{fp32_path} is already {info.precision}; quantize the fp32 export")
    if info.batch is not None:
        raise ReidError(f"{fp32_path} has a fixed batch of {info.batch}; quantize a --dynamic-batch export")
    props = {p.key: p.value for p in source.metadata_props}
    del source
    embedder = Embedder.from_checkpoint(fp32_path, device="cpu", batch_size=batch_size)
    images = list(calibration_images)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.start = 0

        def get_next(self):
            if self.start >= len(images):
                return None
            chunk = images[self.start : self.start + batch_size]
            self.start += batch_size
            return {INPUT_NAME: embedder.preprocess(chunk).contiguous().numpy()}

        def rewind(self) -> None:
            self.start = 0

    with tempfile.TemporaryDirectory(prefix="rga-int8-") as tmp:
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(fp32_path),
            str(quantized),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=list(op_types) if op_types else None,
        )
        model = onnx.load(str(quantized))
    set_metadata(model, {**props, "rga_reid.precision": "int8", "rga_reid.calibration_images": str(len(images))})
    path = save_onnx_model(model, out)
    logger.info("wrote %s (int8, calibrated on %d images)", path, len(images))
    return path
