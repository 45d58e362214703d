"""Shared helpers for the training-loop tests: a small synthetic dataset and a tiny, fast configuration."""

from __future__ import annotations

from pathlib import Path

from training.config import Config, load_config

# 64x32 input needs smaller RGA ratios (the last stage is a 4x2 map); batch 4 ids x 2 images.
TINY = [
    "model.input_size=[64,32]",
    "model.ratios=[8,2,2]",
    "data.ids_per_batch=4",
    "data.num_instances=2",
    "data.workers=0",
    "train.epochs=2",
    "train.max_iters_per_epoch=2",
    "train.evaluate_at_end=false",
    "train.progress=false",
    "train.checkpoint_every=0",
    "train.log_every=1",
    "optim.lr=3e-4",
    "optim.warmup_epochs=0",
]


def tiny_config(root: Path, out: Path, name: str = "tiny", overrides: list[str] | None = None) -> Config:
    return load_config(
        "synthetic", [f"data.root={root}", f"output_dir={out}", f"name={name}", *TINY, *(overrides or [])]
    )
