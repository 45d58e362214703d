"""A run's state on disk: its folder, its log, and the resume file that continues it exactly.

A run folder ``<output_dir>/<name>`` holds config.yaml (the resolved configuration), log.jsonl (plus
TensorBoard scalars when tensorboard is installed), checkpoints/epoch_NNNN.pt, final.pt and resume.pt.
resume.pt holds model, optimizer, schedule, sampler state, the position (epoch and batch within it) and
RNG states (training.runtime); a resumed run must share the parts of the configuration that shape it
(``RESUME_FIXED``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.checkpoint import atomic_torch_save, read_checkpoint_file
from model.errors import CheckpointError, ReidError
from training.config import Config, ConfigError, apply_overrides, config_from_dict
from training.runtime import rng_states
from training.schedule import WarmupMultiStepLR

try:  # optional: TensorBoard scalars beside log.jsonl
    from torch.utils.tensorboard import SummaryWriter
except ImportError:  # tensorboard not installed: JSONL only
    SummaryWriter = None

logger = logging.getLogger(__name__)

RESUME_FORMAT = "rga-reid-resume/1"
# Parts of the configuration a resumed run must share with the run it continues (the backbone file only
# initialises a new run: a resumed one takes its weights from resume.pt).
RESUME_FIXED = (
    "data.dataset",
    "data.options",
    "data.ids_per_batch",
    "data.num_instances",
    "augment",
    "model.variant",
    "model.input_size",
    "model.ratios",
    "loss",
    "optim",
    "train.seed",
)


@dataclass
class Position:
    """Where the run is: next epoch to run, batches of it already done, optimizer steps so far."""

    epoch: int = 0
    iteration: int = 0
    step: int = 0


def _get(cfg_dict: dict[str, Any], dotted: str) -> Any:
    value: Any = cfg_dict
    for part in dotted.split("."):
        value = value[part]
    return value


def check_resume_config(saved: dict[str, Any], cfg: Config) -> None:
    """The parts of the configuration that shape the run must match the saved run's."""
    current = cfg.to_dict()
    saved = config_from_dict(saved).to_dict()  # older saved configurations, read as today's
    differing = [key for key in RESUME_FIXED if _get(saved, key) != _get(current, key)]
    if differing:
        details = "; ".join(f"{k}: was {_get(saved, k)!r}, now {_get(current, k)!r}" for k in differing)
        raise ConfigError(f"cannot resume with a different configuration ({details})")


def unused_run_dir(run_dir: Path) -> Path:
    """``run_dir``, or ``run_dir-1``, ``run_dir-2``, ... when it already holds a run (never overwrite one)."""
    candidate, number = run_dir, 0
    while (candidate / "config.yaml").exists():
        number += 1
        candidate = run_dir.with_name(f"{run_dir.name}-{number}")
    if candidate != run_dir:
        logger.warning(
            "%s already holds a run (continue it with --resume); writing to %s", run_dir, candidate
        )
    return candidate


def read_resume_file(path: str | Path) -> dict[str, Any]:
    """Load resume.pt (or the resume.pt inside a run folder); a ReidError if it is not one.

    The returned dict gains ``path``, the file it was read from.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "resume.pt"
    if not path.is_file():
        raise ReidError(f"resume file not found: {path}")
    try:
        state = read_checkpoint_file(path)
    except CheckpointError as exc:
        raise ReidError(f"cannot read resume file {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise ReidError(f"{path} is not a resume file written by `reid train` (expected {RESUME_FORMAT})")
    state["path"] = path
    return state


def save_resume(
    path: Path,
    cfg: Config,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: WarmupMultiStepLR,
    sampler_state: dict[str, Any],
    position: Position,
    num_classes: int,
) -> None:
    """Write resume.pt atomically: everything ``read_resume_file`` and the loop need to continue exactly."""
    atomic_torch_save(
        {
            "format": RESUME_FORMAT,
            "config": cfg.to_dict(),
            "num_classes": num_classes,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "sampler": sampler_state,
            "position": dataclasses.asdict(position),
            "rng": rng_states(),
        },
        path,
    )


def config_for_resume(resume: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The configuration saved with a run (its config.yaml) with overrides applied: for `--resume` alone."""
    state = read_resume_file(resume)
    cfg = config_from_dict(state["config"])
    apply_overrides(cfg, overrides)
    return cfg.validate()


class RunLog:
    """log.jsonl (one JSON object a line) plus TensorBoard scalars when tensorboard is installed."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self._file = None
        self._tb = None
        if not enabled:
            return
        self._file = (run_dir / "log.jsonl").open("a", encoding="utf-8")
        if SummaryWriter is not None:
            self._tb = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, kind: str, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
