"""Where and in what precision the network runs: one device resolver and one autocast switch for every caller.

    device = resolve_device("auto")                    # CUDA when there is one, else the CPU
    device = resolve_device("cuda", local_rank=1)      # a DDP rank's own GPU
    with autocast(device, "bf16"):                     # "fp32" is a no-op context
        out = net(x)

Precision names: "fp32" (the official recipe trains and tests in float32) and "bf16" (bfloat16: autocast
on CUDA; on the CPU, bf16 weights through oneDNN). "auto" means bf16 on CUDA and on CPUs that compute bf16
in hardware (AMX-BF16 or AVX512-BF16: there it runs the network ~2x faster than fp32 at the same ranking,
BENCHMARKS.md), and fp32 on other CPUs, where bf16 is emulated and slower.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from model.errors import ReidError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask on Linux, else the machine's count); at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class DeviceError(ReidError, RuntimeError):
    """A device or precision that cannot be used here (CUDA asked for without a GPU, unknown name)."""


def resolve_device(device: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """None / "auto" -> CUDA when available, else CPU; "cuda" without a GPU is a DeviceError.

    A CUDA device without an index becomes ``cuda:<local_rank>`` when ``local_rank`` is given (DDP), so
    every rank of a run takes its own GPU; the CPU ignores ``local_rank``.
    """
    import torch  # here, not at the top: `reid --help` and the ONNX Runtime path do without torch

    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA was asked for but no CUDA device is available; use the cpu device")
        if resolved.index is None and local_rank is not None:
            resolved = torch.device("cuda", local_rank)
    elif resolved.type != "cpu":
        raise DeviceError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or auto")
    return resolved


def cpu_info(*names: str) -> dict[str, str]:
    """The first CPU's /proc/cpuinfo fields of these names (e.g. "model name", "flags"), those present;
    empty where there is no such file (not Linux) or it cannot be read."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                name = name.strip()
                if name in names and name not in fields:
                    fields[name] = value.strip()
                    if len(fields) == len(names):
                        break
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags as Linux reports them (/proc/cpuinfo); empty elsewhere or unreadable."""
    return frozenset(cpu_info("flags").get("flags", "").split())


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bfloat16 in hardware (AMX-BF16 or AVX512-BF16)."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """"fp32" / "bf16" as given; None / "auto" -> bf16 on CUDA and on CPUs with native bf16, else fp32.

    DeviceError for anything else.
    """
    if precision is None or precision == "auto":
        if device.type == "cuda":
            return "bf16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if precision not in PRECISIONS:
        raise DeviceError(f"precision must be one of {', '.join(PRECISIONS)} or auto, got {precision!r}")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward-pass context for a precision: bf16 autocast on the device, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        import torch

        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise DeviceError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
