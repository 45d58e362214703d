"""What every benchmark records with its numbers: the machine, the exact command, and where it goes.

Benchmarks run from the repository root as modules (`python -m bench.<name>`), so they import this file
and the packages without path edits.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from model.device import cpu_info

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def cpu_model() -> str:
    return cpu_info("model name").get("model name") or platform.processor() or "unknown CPU"


def machine_description(device=None) -> str:
    """CPU model, cores, load average now; plus torch and the GPU (or CPU threads) when given a torch device."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = f"{cpu_model()}, {os.cpu_count()} cores (load average {load:.1f} at the start)"
    if device is not None:
        import torch

        where = (
            f"GPU {torch.cuda.get_device_name(device)}"
            if device.type == "cuda"
            else f"CPU only, {torch.get_num_threads()} threads"
        )
        text += f", torch {torch.__version__}, {where}"
    return text


def command_line(argv: list[str] | None = None) -> str:
    """The command as it was typed, in its `python -m bench.<name>` form, without this machine's paths: an
    absolute path inside the repository becomes relative to it, any other keeps its last part behind `DIR/`
    (BENCHMARKS.md is shared; the folders it ran on are not)."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python -m bench." + Path(sys.argv[0]).stem, *(portable(arg) for arg in args)])


def portable(arg: str) -> str:
    """`arg` (or the value of `--opt=VALUE`) with an absolute path made machine-independent."""
    key, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if not value.startswith("/"):
        return arg
    path = Path(value)
    root = BENCHMARKS.parent
    shown = str(path.relative_to(root)) if path.is_relative_to(root) else f"DIR/{path.name}"
    return f"{key}{eq}{shown}"


def append_section(text: str) -> None:
    """Append one section (it starts with its own `## ` heading) to BENCHMARKS.md."""
    with BENCHMARKS.open("a", encoding="utf-8") as handle:
        handle.write(text)


def append_json_line(path: str | os.PathLike | None, record: dict) -> None:
    """Append one result as a JSON line (no-op without a path): a run stopped part-way keeps what it measured."""
    if path is None:
        return
    import json

    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
