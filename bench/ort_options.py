"""ONNX Runtime session options for the embedding network on this machine: measured, not guessed.

    python -m bench.ort_options [--batch-sizes 1 16] [--iters 3] [--record]

Times one forward pass of our fp32 export (random weights, 256x128) under each setting of
model.onnx_network.OrtOptions that matters on a small CPU box: intra-op threads, graph optimisation level,
the CPU memory arena, and busy-waiting (spinning) of idle worker threads. The defaults of OrtOptions come
from this table.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import os
import resource
import tempfile
from pathlib import Path

import torch

from bench.embed_runtimes import time_call
from bench.report import append_section, command_line, machine_description

SETTINGS = [
    {},
    {"threads": 1},
    {"spinning": True},
    {"graph_level": "basic"},
    {"graph_level": "extended"},
    {"memory_arena": False},
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="rgasc")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)

    from model import Embedder, ModelMeta
    from model.onnx_export import export_onnx
    from model.onnx_network import OnnxNetwork, OrtOptions

    input_size = (256, 128)
    machine = machine_description(torch.device("cpu"))
    start_load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ort-") as tmp:
        net = Embedder.random_init(args.variant, input_size=input_size, device="cpu").net
        path = export_onnx(net, ModelMeta(variant=args.variant, input_size=input_size), Path(tmp) / "w.onnx")
        del net
        for changes in SETTINGS:
            options = OrtOptions(**changes)
            network = OnnxNetwork(path, options).to("cpu")
            for batch in args.batch_sizes:
                x = torch.randn(batch, 3, *input_size)
                result = time_call(functools.partial(network, x), batch, args.iters, args.warmup)
                label = ", ".join(f"{k}={v}" for k, v in changes.items()) or "defaults"
                rows.append({"setting": label, "batch": batch, **result})
                print(f"{label:28s} batch {batch:3d}: {result['images_per_s']:6.1f} img/s "
                      f"{result['median_ms']:8.1f} ms", flush=True)
    end_load = os.getloadavg()
    defaults = dataclasses.asdict(OrtOptions())
    lines = ["| setting (others at the defaults) | batch | images/s | median ms/batch | p90 ms/batch |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['setting']} | {r['batch']} | {r['images_per_s']:.1f} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} |"
              for r in rows]
    table = "\n".join(lines)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    loads = (f"load average {start_load[0]:.1f} / {start_load[1]:.1f} / {start_load[2]:.1f} at the start, "
             f"{end_load[0]:.1f} / {end_load[1]:.1f} / {end_load[2]:.1f} at the end")
    print(table)
    print(loads, f"peak RSS {rss:.2f} GiB")
    if args.record:
        append_section(
            f"\n## ONNX Runtime session options ({args.variant}, 256x128, fp32) — {dt.date.today().isoformat()}\n\n"
            f"Machine: {machine}; {loads}  \nCommand: `{command_line(argv)}`  \n"
            f"Defaults: {defaults} (threads 0 = the CPUs this process may use). "
            f"Iterations: {args.iters} timed after {args.warmup} warm-up.\n\n{table}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
