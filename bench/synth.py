"""Benchmark: synthetic dataset generation speed (images/s), written to a temporary folder.

    python -m bench.synth [--preset market] [--workers 2] [--seed 0]     (from the repository root)

Prints one line with images, seconds and images/s. Target: >= 500 images/s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
from pathlib import Path

from training.datasets.synthetic import SyntheticConfig, generate


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the pool workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="market")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = SyntheticConfig.from_preset(args.preset, seed=args.seed)
    before = _cpu_seconds()
    with tempfile.TemporaryDirectory() as tmp:
        result = generate(config, Path(tmp) / "synth", workers=args.workers)
    cpu = _cpu_seconds() - before
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # On a shared machine the wall-clock rate depends on the neighbours; CPU seconds do not (much):
    # images per CPU-second times the worker count estimates the rate on that many idle cores.
    print(
        f"synth preset={args.preset} workers={args.workers} images={result.num_images} "
        f"wall_s={result.seconds:.1f} images_per_s={result.num_images / result.seconds:.0f} "
        f"cpu_s={cpu:.1f} images_per_cpu_s={result.num_images / cpu:.0f} "
        f"est_images_per_s_on_{args.workers}_idle_cores={args.workers * result.num_images / cpu:.0f} "
        f"cpus={os.cpu_count()} load1={load:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
