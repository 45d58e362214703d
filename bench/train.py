"""Training-step throughput and peak memory of the RGA re-ID network at batch 64 (16 ids x 4 images).

    python -m bench.train                                      # CPU: rgasc and none, fp32, 3 steps
    python -m bench.train --device cuda --precisions fp32 bf16 --steps 50 --warmup 10
    python -m bench.train ... --record                         # also append the table to BENCHMARKS.md
    python -m bench.train ... --json rows.jsonl                # also one JSON line per configuration

One step is what training.train does per batch: forward (bf16 autocast for "bf16"), the recipe's loss
(label-smoothed CE on feat + batch-hard triplet on feat_), backward, Adam step; channels_last on CUDA,
the fast RGA form. Inputs are random tensors already on the device (data loading is not timed).
Peak memory: CUDA max_memory_allocated on the GPU; on the CPU the peak resident set size of a fresh
process that runs only that configuration (each CPU configuration runs in its own subprocess).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.report import append_json_line, append_section, command_line, machine_description
from model import build_model
from training.losses import ReIDLoss


def time_training_step(
    variant: str,
    device: torch.device,
    precision: str,
    batch: int,
    ids: int,
    input_size,
    steps: int,
    warmup: int,
    ratios=(8, 8, 8),
) -> dict:
    torch.manual_seed(0)
    num_classes = 751
    net = build_model(variant, num_classes, tuple(input_size), tuple(ratios)).set_rga_form("fast").train()
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    net.to(device, memory_format=memory_format)
    criterion = ReIDLoss()
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=8e-4, weight_decay=5e-4)
    images = torch.randn(batch, 3, *input_size, device=device).contiguous(memory_format=memory_format)
    labels = torch.arange(ids, device=device).repeat_interleave(batch // ids)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(warmup + steps):
        sync()
        start = time.perf_counter()
        with autocast:
            out = net(images)
            loss = criterion(out.logits, out.feat_, labels).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    if device.type == "cuda":
        peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return {"images_per_s": batch / median, "median_s": median, "peak_gib": peak_gib, "loss": float(loss)}


def run_in_subprocess(args: argparse.Namespace, variant: str, precision: str) -> dict:
    command = [
        sys.executable, "-m", "bench.train", "--single", "--device", args.device,
        "--variants", variant, "--precisions", precision, "--batch", str(args.batch), "--ids", str(args.ids),
        "--input-size", *map(str, args.input_size), "--ratios", *map(str, args.ratios), "--steps", str(args.steps), "--warmup", str(args.warmup),
    ]  # fmt: skip
    if args.threads:
        command += ["--threads", str(args.threads)]
    root = Path(__file__).resolve().parents[1]  # `-m bench.train` resolves from the repository root
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"benchmark subprocess failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variants", nargs="+", default=["rgasc", "none"])
    parser.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=64, help="images per step (default 64)")
    parser.add_argument(
        "--ids", type=int, default=16, help="identities per batch (default 16, K = batch / ids)"
    )
    parser.add_argument("--input-size", type=int, nargs=2, default=[256, 128], metavar=("H", "W"))
    parser.add_argument(
        "--ratios", type=int, nargs=3, default=[8, 8, 8], help="RGA ratios (8 4 4 for 128x64 inputs)"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 50 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10 / 1)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="append one JSON line per configuration to this file")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # one config, JSON out
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch % args.ids:
        parser.error("--batch must be a multiple of --ids")
    args.precisions = args.precisions or (["fp32", "bf16"] if on_cuda else ["fp32"])
    args.steps = args.steps or (50 if on_cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (10 if on_cuda else 1)
    if on_cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        torch.backends.cudnn.allow_tf32 = False

    if args.single:
        result = time_training_step(
            args.variants[0],
            device,
            args.precisions[0],
            args.batch,
            args.ids,
            args.input_size,
            args.steps,
            args.warmup,
            args.ratios,
        )
        print(json.dumps(result))
        return 0

    rows = []
    for variant in args.variants:
        for precision in args.precisions:
            if on_cuda:
                result = time_training_step(
                    variant,
                    device,
                    precision,
                    args.batch,
                    args.ids,
                    args.input_size,
                    args.steps,
                    args.warmup,
                    args.ratios,
                )
                torch.cuda.empty_cache()
            else:
                result = run_in_subprocess(args, variant, precision)
            rows.append({"variant": variant, "precision": precision, **result})
            append_json_line(
                args.json,
                {**rows[-1], "batch": args.batch, "input_size": list(args.input_size), "device": str(device)},
            )
            print(
                f"{variant:6s} {precision}: {result['images_per_s']:8.1f} img/s, {result['median_s']:.3f} s/step, "
                f"peak {result['peak_gib']:.2f} GiB",
                flush=True,
            )

    memory = "GPU max allocated" if on_cuda else "process peak RSS"
    lines = [
        f"| variant | precision | batch | input | images/s | median s/step | peak GiB ({memory}) |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    size = f"{args.input_size[0]}x{args.input_size[1]}"
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['precision']} | {args.batch} | {size} | {r['images_per_s']:.1f} "
            f"| {r['median_s']:.3f} | {r['peak_gib']:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.record:
        section = (
            f"\n## Training step (batch {args.batch} = {args.ids} ids x {args.batch // args.ids}) — "
            f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}\n\n"
            f"Machine: {machine_description(device)}  \nCommand: `{command_line(argv)}`  \n"
            f"Steps: {args.steps} timed after {args.warmup} warm-up; forward + CE/triplet loss + backward + Adam; "
            f"random inputs already on the device (no data loading).\n\n{table}\n"
        )
        append_section(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
