"""A picture of a training run: loss, accuracy and mAP per epoch, read from the run's log.jsonl.

Written next to log.jsonl as curves.png at the end of `reid train` (and by `write_curves(run_dir)` at any
time). Runs shorter than one epoch (a CPU budget) have no epoch records: their logged iterations are
plotted per optimizer step instead, and the picture says so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

LOSS_KEYS = (("loss", "total"), ("cross_entropy", "cross-entropy"), ("triplet", "triplet"))


def read_log(path: str | Path) -> dict[str, list[dict]]:
    """log.jsonl -> records by kind ("iter", "epoch", "eval"); unreadable lines are skipped."""
    records: dict[str, list[dict]] = {"iter": [], "epoch": [], "eval": []}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
        if isinstance(record, dict) and record.get("kind") in records:
            records[record["kind"]].append(record)
    return records


def plot_curves(log_path: str | Path, out_path: str | Path) -> Path:
    """Save a PNG with three panels: losses, training accuracy, and evaluation mAP / rank-1."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_log(log_path)
    per_epoch = bool(records["epoch"])
    train = records["epoch"] if per_epoch else records["iter"]
    x_key, x_label = (
        ("epoch", "epoch") if per_epoch else ("step", "optimizer step (run shorter than an epoch)")
    )
    xs = [r[x_key] + (1 if per_epoch else 0) for r in train]  # epoch records are 0-based: plot epochs done

    figure = Figure(figsize=(13, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    loss_ax, acc_ax, map_ax = figure.subplots(1, 3)
    for key, label in LOSS_KEYS:
        ys = [r.get(key) for r in train]
        if any(y is not None for y in ys):
            loss_ax.plot(xs, ys, marker="o", markersize=3, label=label)
    loss_ax.set(title="loss", xlabel=x_label)
    if loss_ax.lines:
        loss_ax.legend()
    accuracy = [r.get("accuracy") for r in train]
    if any(a is not None for a in accuracy):
        acc_ax.plot(
            xs,
            [100 * a if a is not None else None for a in accuracy],
            marker="o",
            markersize=3,
            color="tab:green",
        )
    acc_ax.set(title="training accuracy (%)", xlabel=x_label, ylim=(0, 100))
    evals = records["eval"]
    if evals:
        eval_x = [r["epoch"] + 1 for r in evals]
        map_ax.plot(eval_x, [100 * r["mAP"] for r in evals], marker="o", label="mAP")
        map_ax.plot(eval_x, [100 * r["rank1"] for r in evals], marker="s", linestyle="--", label="rank-1")
        map_ax.legend()
    else:
        map_ax.text(
            0.5, 0.5, "not evaluated in this run", ha="center", va="center", transform=map_ax.transAxes
        )
    map_ax.set(title="evaluation (%)", xlabel="epoch", ylim=(0, 100))
    for ax in (loss_ax, acc_ax, map_ax):
        ax.grid(alpha=0.3)
    if not train:
        for ax in (loss_ax, acc_ax):
            ax.text(0.5, 0.5, "nothing logged yet", ha="center", va="center", transform=ax.transAxes)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path, format="png")
    return out_path


def write_curves(run_dir: str | Path) -> Path | None:
    """<run_dir>/curves.png from <run_dir>/log.jsonl; None (with a log line) when it cannot be drawn."""
    run_dir = Path(run_dir)
    log_path = run_dir / "log.jsonl"
    if not log_path.is_file():
        return None
    try:
        path = plot_curves(log_path, run_dir / "curves.png")
    except ImportError:
        logger.info("matplotlib is not installed: no curves.png (the numbers are in %s)", log_path)
        return None
    except Exception:  # a picture is not worth failing a finished training run for
        logger.exception("could not draw %s", run_dir / "curves.png")
        return None
    logger.info("wrote %s", path)
    return path
