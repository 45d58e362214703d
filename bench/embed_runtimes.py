"""CPU embedding side by side, in one run: the official RGA code, our torch path, ONNX Runtime fp32 and int8,
and `reid embed` as a whole command.

    python -m bench.embed --side-by-side --official-root PATH [--batch-sizes 1 16 64] [--images 192] [--record]

PATH is a checkout of the official code (github.com/JDAI-CV/Relation-Aware-Global-Attention-Networks, also
published as microsoft/Relation-Aware-Global-Attention-Networks); it is imported from there at run time and
never copied into this repository. Without --official-root its rows are left out.
The torch rows run what `reid embed` runs (model.fast_network: BatchNorms folded into the convolutions; in
bf16, weights stored in bf16) through `Embedder.embed_tensor`, plus the unfolded network under bf16 autocast
(what `--precision bf16` ran before the folding) for comparison in the same run.
The `reid embed` torch rows run with its default batch workers (one batch per CPU at once, one intra-op
thread each: model/batch_workers.py), plus bf16 with `--workers 1` (one batch over torch's OpenMP threads, the
old way) and with one worker of one thread, so that one quiet run says which is fastest on the machine.
CPU s: user + sys seconds of the pipeline (the `reid embed` process; the official loop in this process),
the figure that survives a loaded machine better than the wall clock. The torch bf16 rows are autocast
(oneDNN's bf16 kernels: AMX / AVX-512 BF16 where the CPU has them, slow emulation where it does not).

Network rows time one forward pass of a normalised batch (random weights: speed does not depend on them):
the official `ResNet50_RGA_Model` (its direct RGA form, fp32, eager), our network (fast form, channels_last),
and our ONNX export on ONNX Runtime (fp32, and int8 calibrated on the rendered crops). Pipeline rows go
from JPEG files to vectors: the official test transform (PIL bilinear resize, ToTensor, Normalize) with its
network in this process, and `reid embed` run as a subprocess (process start, imports, weights, decoding,
embedding, writing the .npy), timed by the wall clock. Images are person crops rendered by the synthetic
store's generator (128x64 JPEGs, resized to the network's 256x128 as a camera crop would be).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.report import append_section, command_line, machine_description


def render_images(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    from training.datasets.synthetic.appearance import identity_look
    from training.datasets.synthetic.camera import camera_look
    from training.datasets.synthetic.render import render_crop

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        rng = np.random.default_rng([11, i])
        crop = render_crop(
            identity_look(0, 1 + i // 4), camera_look(0, i % 5), rng, view=("front", "back", "left", "right")[i % 4],
            kind="person", height=128, width=64,
        )
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(crop).save(path, quality=90)
        files.append(path)
    return files


def load_official(root: Path, variant: str, input_size: tuple[int, int]) -> torch.nn.Module:
    """The official ResNet50_RGA_Model from a checkout, without its package __init__ (Python 2 era imports)."""
    models = root / "reid" / "models"
    if not (models / "rga_model.py").is_file():
        raise SystemExit(f"--official-root {root}: no reid/models/rga_model.py there")
    sys.path.insert(0, str(models / "models_utils"))  # rga_branches does `from rga_modules import ...`
    spec = importlib.util.spec_from_file_location(
        "official_rga_models", models / "__init__.py", submodule_search_locations=[str(models)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["official_rga_models"] = module
    spec.loader.exec_module(module)
    net = module.resnet50_rga(
        pretrained=False, num_classes=0, height=input_size[0], width=input_size[1], branch_name=variant
    )
    return net.eval()


def _stats(times: list[float], batch: int) -> dict:
    median = statistics.median(times)
    p90 = sorted(times)[max(0, int(round(0.9 * len(times))) - 1)]
    return {"images_per_s": batch / median, "median_ms": median * 1e3, "p90_ms": p90 * 1e3}


def _bf16(net, x):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return net(x.contiguous(memory_format=torch.channels_last))


def time_call(fn, batch: int, iters: int, warmup: int) -> dict:
    times = []
    for i in range(warmup + iters):
        start = time.perf_counter()
        fn()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return _stats(times, batch)


def official_pipeline(net, files: list[Path], input_size, batch: int) -> float:
    """Files -> features the way the official evaluation does it (test transform, batches, no_grad); seconds."""
    from PIL import Image
    from torchvision import transforms as T

    transform = T.Compose(
        [
            T.Resize(input_size, interpolation=T.InterpolationMode.BILINEAR),
            T.ToTensor(),
            T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    with torch.no_grad():  # one warm-up batch, not timed (the command rows include their start-up)
        net([torch.stack([transform(Image.open(f).convert("RGB")) for f in files[:batch]])], training=False)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(files), batch):
            x = torch.stack([transform(Image.open(f).convert("RGB")) for f in files[i : i + batch]])
            net([x], training=False)
    return time.perf_counter() - start


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def reid_embed_command(
    weights: Path, folder: Path, batch: int, out: Path, runtime: str | None, precision: str | None = None,
    extra: tuple[str, ...] = (), env_extra: dict | None = None,
) -> tuple[float, float]:
    """Run `reid embed` as a whole command: (wall seconds, CPU seconds of the process, user + sys)."""
    cmd = [sys.executable, "-m", "reid", "embed", str(folder), "--weights", str(weights), "--device", "cpu",
           "--batch-size", str(batch), "--out", str(out)]
    if runtime:
        cmd += ["--runtime", runtime]
    if precision:
        cmd += ["--precision", precision]
    cmd += list(extra)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **(env_extra or {})}
    cpu = _cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side-by-side", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--official-root", type=Path, help="a checkout of the official RGA code")
    parser.add_argument("--variant", default="rgasc")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--images", type=int, default=192, help="rendered crops for the pipeline rows")
    parser.add_argument("--command-batch", type=int, default=16, help="batch of the pipeline rows")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--pipeline-only", action="store_true", help="only the files -> vectors rows (no network rows)"
    )
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args(argv)

    from model import Embedder, ModelMeta, save_checkpoint
    from model.device import resolve_precision
    from model.onnx_export import export_onnx
    from model.onnx_quantize import quantize_int8

    input_size = (256, 128)
    load_start = os.getloadavg()
    machine = machine_description(torch.device("cpu"))
    rows: list[dict] = []
    pipeline: list[dict] = []

    def report(row: dict, table: list[dict]) -> None:
        table.append(row)
        print(f"{row['what']:34s} batch {row['batch']:3d}: {row['images_per_s']:7.1f} img/s  "
              f"{row.get('median_ms', float('nan')):9.1f} ms/batch", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        tmp = Path(tmp)
        # The ONNX exports' optimised graphs (model.ort_cache) go here, not to ~/.cache: the network rows'
        # sessions write them, so the `reid embed` rows below run as a second run of a file does.
        os.environ["REID_CACHE_DIR"] = str(tmp / "cache")
        files = render_images(tmp / "images", args.images)
        torch_embedder = Embedder.random_init(args.variant, input_size=input_size, device="cpu")  # BN folded
        bf16_embedder = Embedder.random_init(args.variant, input_size=input_size, device="cpu", precision="bf16")
        meta = ModelMeta(variant=args.variant, input_size=input_size)
        ckpt = save_checkpoint(tmp / "w.pt", torch_embedder.net, meta)
        fp32 = export_onnx(torch_embedder.net, meta, tmp / "w.onnx", dynamic_batch=True)
        int8 = quantize_int8(fp32, tmp / "w.int8.onnx", files[:32])
        onnx_fp32 = Embedder.from_checkpoint(fp32, device="cpu")
        onnx_int8 = Embedder.from_checkpoint(int8, device="cpu")
        official = load_official(args.official_root, args.variant, input_size) if args.official_root else None

        forwards = [
            ("official code (direct form, fp32)", lambda x: official([x], training=False)),
            ("ours, torch (fast form, fp32, BN folded)", torch_embedder.embed_tensor),
            ("ours, torch (fast form, bf16 autocast, BN not folded)", functools.partial(_bf16, torch_embedder.net)),
            ("ours, torch (fast form, bf16, BN folded, bf16 weights)", bf16_embedder.embed_tensor),
            ("ours, ONNX Runtime fp32", onnx_fp32.net),
            ("ours, ONNX Runtime int8", onnx_int8.net),
        ]
        if official is None:
            forwards = forwards[1:]
        for batch in [] if args.pipeline_only else args.batch_sizes:
            x = torch.randn(batch, 3, *input_size)
            with torch.inference_mode():
                for name, forward in forwards:
                    result = time_call(functools.partial(forward, x), batch, args.iters, args.warmup)
                    report({"what": name, "batch": batch, **result}, rows)
        forwards = onnx_fp32 = onnx_int8 = None  # free their sessions before the subprocesses run

        b = args.command_batch
        if official is not None:
            cpu = _cpu_seconds(resource.RUSAGE_SELF)
            seconds = official_pipeline(official, files, input_size, b)
            report({"what": "official code, files -> features", "batch": b, "images_per_s": len(files) / seconds,
                    "seconds": seconds, "cpu_s": _cpu_seconds(resource.RUSAGE_SELF) - cpu}, pipeline)
        one = {"OMP_NUM_THREADS": "1"}
        auto = resolve_precision("auto", torch.device("cpu"))  # what `reid embed` picks here by default
        for name, weights, runtime, precision, extra, env in (
            (f"reid embed, torch, default precision (auto: {auto} on this CPU)", ckpt, "torch", None, (), None),
            ("reid embed, torch fp32 (--precision fp32)", ckpt, "torch", "fp32", (), None),
            ("reid embed, torch bf16 (--precision bf16)", ckpt, "torch", "bf16", (), None),
            ("reid embed, torch bf16, --workers 1 (2 OpenMP threads)", ckpt, "torch", "bf16", ("--workers", "1"), None),
            ("reid embed, torch bf16, --workers 1, OMP_NUM_THREADS=1", ckpt, "torch", "bf16", ("--workers", "1"), one),
            ("reid embed, ONNX Runtime fp32", fp32, None, None, (), None),
            ("reid embed, ONNX Runtime int8", int8, None, None, (), None),
        ):
            seconds, cpu = reid_embed_command(
                weights, tmp / "images", b, tmp / "out.npy", runtime, precision, extra, env
            )
            report({"what": name, "batch": b, "images_per_s": len(files) / seconds, "seconds": seconds,
                    "cpu_s": cpu}, pipeline)
    load_end = os.getloadavg()

    lines = ["| what | batch | images/s | median ms/batch | p90 ms/batch |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['what']} | {r['batch']} | {r['images_per_s']:.1f} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} |"
              for r in rows]
    lines += ["", f"| files -> vectors ({args.images} JPEG crops) | batch | images/s | seconds | CPU s | vs official |",
              "|---|---:|---:|---:|---:|---:|"]
    base = next((r["images_per_s"] for r in pipeline if r["what"].startswith("official")), None)
    for r in pipeline:
        ratio = f"{r['images_per_s'] / base:.1f}x" if base else "–"
        lines.append(f"| {r['what']} | {r['batch']} | {r['images_per_s']:.1f} | {r['seconds']:.1f} "
                     f"| {r['cpu_s']:.1f} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    loads = (f"load average {load_start[0]:.1f} / {load_start[1]:.1f} / {load_start[2]:.1f} (1/5/15 min) at the start, "
             f"{load_end[0]:.1f} / {load_end[1]:.1f} / {load_end[2]:.1f} at the end")
    print(loads)
    if args.record:
        append_section(
            f"\n## Embedding on the CPU, side by side ({args.variant}, 256x128) — {dt.date.today().isoformat()}\n\n"
            f"Machine: {machine}; {loads}  \nCommand: `{command_line(argv)}`  \n"
            f"Iterations: {args.iters} timed after {args.warmup} warm-up (network rows); one pass (pipeline rows).\n\n"
            f"{table}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
