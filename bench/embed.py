"""Embedding throughput and latency of the RGA-SC network: direct vs fast form, fp32 vs bf16, eager vs compiled.

    python -m bench.embed                        # CPU defaults: batches 1 and 64, fp32, eager
    python -m bench.embed --device cuda --batch-sizes 1 64 256 --precisions fp32 bf16 --modes eager compiled
    python -m bench.embed ... --record           # also append the table to BENCHMARKS.md
    python -m bench.embed ... --json rows.jsonl  # also one JSON line per configuration, as each finishes
    python -m bench.embed --side-by-side --official-root PATH --record
                                                 # CPU: official code, torch, ONNX Runtime fp32/int8, `reid embed`
                                                 # in one run (bench/embed_runtimes.py)

Times the network's forward on preprocessed batches (the embedder's `_run` path:
channels_last, autocast on CUDA), synchronising the device around each call, and
reports images/s plus the median and 90th-percentile latency per batch. Weights are
random (speed does not depend on their values).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.report import append_json_line, append_section, command_line, machine_description
from model import build_model


def _gib(value: float) -> str:
    return "–" if value != value else f"{value:.2f}"  # NaN on the CPU: not tracked


def time_config(net, device, batch, precision, compiled, iters, warmup) -> dict:
    x = torch.randn(batch, 3, *net.input_size, device=device).contiguous(memory_format=torch.channels_last)
    forward = (
        torch.compile(net, mode="reduce-overhead" if device.type == "cuda" else "default")
        if compiled
        else net
    )
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with torch.inference_mode(), autocast:
        for i in range(warmup + iters):
            if compiled and device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            sync()
            start = time.perf_counter()
            forward(x)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    median = statistics.median(times)
    p90 = sorted(times)[max(0, int(round(0.9 * len(times))) - 1)]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"images_per_s": batch / median, "median_ms": median * 1e3, "p90_ms": p90 * 1e3, "peak_gib": peak}


def main(argv: list[str] | None = None) -> int:
    if "--side-by-side" in (sys.argv[1:] if argv is None else argv):
        from bench.embed_runtimes import main as side_by_side

        return side_by_side(argv)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variant", default="rgasc")
    parser.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="default: the network's 256x128",
    )
    parser.add_argument(
        "--ratios", type=int, nargs=3, default=[8, 8, 8], help="RGA ratios (8 4 4 for 128x64 inputs)"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--forms", nargs="+", default=["fast", "direct"], choices=["fast", "direct"])
    parser.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16"])
    parser.add_argument("--modes", nargs="+", default=["eager"], choices=["eager", "compiled"])
    parser.add_argument("--iters", type=int, default=None, help="timed iterations per configuration")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="append one JSON line per configuration to this file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    batch_sizes = args.batch_sizes or ([1, 64, 256] if on_cuda else [1, 64])
    precisions = args.precisions or (["fp32", "bf16"] if on_cuda else ["fp32"])
    iters = args.iters or (50 if on_cuda else 3)
    warmup = args.warmup if args.warmup is not None else (10 if on_cuda else 1)
    if on_cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        torch.backends.cudnn.allow_tf32 = False

    size = {"input_size": tuple(args.input_size)} if args.input_size else {}
    net = (
        build_model(args.variant, ratios=tuple(args.ratios), **size)
        .eval()
        .to(device, memory_format=torch.channels_last)
    )
    rows, failures = [], 0
    for form in args.forms:
        net.set_rga_form(form)
        for precision in precisions:
            for mode in args.modes:
                for batch in batch_sizes:
                    torch._dynamo.reset()
                    config = {"form": form, "precision": precision, "mode": mode, "batch": batch}
                    try:
                        result = time_config(net, device, batch, precision, mode == "compiled", iters, warmup)
                    except Exception as exc:  # e.g. compilation failing: say so and measure the rest
                        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                        print(f"{form} {precision} {mode} batch {batch}: FAILED ({error})", flush=True)
                        append_json_line(args.json, {**config, "error": error, "device": str(device)})
                        failures += 1
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                        continue
                    row = {**config, **result}
                    rows.append(row)
                    append_json_line(args.json, {**row, "device": str(device), "variant": args.variant})
                    print(
                        f"{form:6s} {precision} {mode:8s} batch {batch:4d}: {row['images_per_s']:9.1f} img/s, "
                        f"{row['median_ms']:8.2f} ms/batch (p90 {row['p90_ms']:.2f})",
                        flush=True,
                    )

    header = "| form | precision | mode | batch | images/s | median ms/batch | p90 ms/batch | peak GiB |"
    lines = [header, "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['form']} | {r['precision']} | {r['mode']} | {r['batch']} | {r['images_per_s']:.1f} "
            f"| {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {_gib(r['peak_gib'])} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.record:
        section = (
            f"\n## Embedding ({args.variant}, {net.input_size[0]}x{net.input_size[1]}) — "
            f"{dt.date.today().isoformat()}\n\nMachine: {machine_description(device)}  \n"
            f"Command: `{command_line(argv)}`  \nIterations: {iters} timed after {warmup} warm-up.\n\n{table}\n"
        )
        append_section(section)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
