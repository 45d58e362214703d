"""`reid export`: write the embedding network of a checkpoint as a self-describing ONNX file.

    reid export --weights final.pt --format onnx --out final.onnx [--opset 17] [--dynamic-batch]
    reid export --weights final.pt --format onnx --int8 --calibration data/store/bounding_box_train --out final.int8.onnx
    reid export ... --check-images DIR     # torch vs ONNX Runtime cosine on up to 32 images of DIR

The file is checked with onnx.checker; `reid embed --weights final.onnx` and REID_WEIGHTS=final.onnx
run it with ONNX Runtime (docs/onnx.md).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from model.errors import ReidError

logger = logging.getLogger(__name__)

MIN_COSINE = 0.9999


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `reid export`."""
    p = subparsers.add_parser(
        "export", help="export the embedding network to ONNX", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--weights", type=Path, required=True, help="checkpoint: ours or the official RGA one")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", type=Path, required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--dynamic-batch", action="store_true", help="a dynamic batch axis (default: fixed batch)")
    p.add_argument("--batch-size", type=int, default=1, help="the fixed batch size without --dynamic-batch")
    p.add_argument("--int8", action="store_true", help="static int8 quantization (needs --calibration)")
    p.add_argument("--calibration", type=Path, help="folder of person images to calibrate int8 on")
    p.add_argument("--calibration-images", type=int, default=128, help="at most this many calibration images")
    p.add_argument("--check-images", type=Path, help="folder: compare torch and ONNX Runtime vectors on it")
    p.set_defaults(func=run_export)


def _images(folder: Path, limit: int) -> list[Path]:
    from model.cli import collect_images

    files = collect_images([str(folder)])
    if len(files) > limit:  # spread over the folder, not its first identities only
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    return files


def compare_runtimes(weights: Path, onnx_path: Path, images: list[Path]) -> float:
    """Smallest cosine between torch and ONNX Runtime vectors of the same images (both features' default)."""
    from model.embedder import Embedder

    torch_vectors = Embedder.from_checkpoint(weights, runtime="torch", device="cpu", batch_size=16).embed(images)
    onnx_vectors = Embedder.from_checkpoint(onnx_path, device="cpu", batch_size=16).embed(images)
    return float((torch_vectors * onnx_vectors).sum(axis=1).min())


def run_export(args: argparse.Namespace) -> int:
    from model.builder import load_checkpoint
    from model.onnx_export import DEFAULT_OPSET, export_onnx

    if args.out.suffix.lower() != ".onnx":
        raise ReidError(f"--out must end in .onnx, got {args.out}")
    if args.batch_size < 1:
        raise ReidError("--batch-size must be at least 1")
    if args.int8 and args.calibration is None:
        raise ReidError("--int8 needs --calibration DIR (a folder of person images to set the int8 ranges)")
    if args.int8 and not args.dynamic_batch:
        args.dynamic_batch = True  # calibration runs any batch; the embedder chunks as it likes
    opset = args.opset or DEFAULT_OPSET
    net, meta = load_checkpoint(args.weights, device="cpu", for_inference=True)
    if not args.int8:
        export_onnx(net, meta, args.out, opset=opset, dynamic_batch=args.dynamic_batch, batch_size=args.batch_size)
    else:
        from model.onnx_quantize import quantize_int8

        calibration = _images(args.calibration, args.calibration_images)
        with tempfile.TemporaryDirectory(prefix="rga-export-") as tmp:
            fp32 = export_onnx(net, meta, Path(tmp) / "fp32.onnx", opset=opset, dynamic_batch=True)
            quantize_int8(fp32, args.out, calibration)
    print(f"wrote {args.out} ({meta.variant}, {meta.input_size[0]}x{meta.input_size[1]}, "
          f"{'int8' if args.int8 else 'fp32'}, opset {opset})")
    if args.check_images is not None:
        images = _images(args.check_images, 32)
        cosine = compare_runtimes(args.weights, args.out, images)
        print(f"torch vs ONNX Runtime on {len(images)} images: smallest cosine {cosine:.6f}")
        if cosine < MIN_COSINE and not args.int8:
            raise ReidError(f"ONNX Runtime vectors differ from torch (cosine {cosine:.6f} < {MIN_COSINE})")
    return 0
