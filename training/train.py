"""The training loop: RGA re-ID network, P x K batches, CE + triplet, Adam with warm-up and step decay.

    from training.config import load_config
    from training.train import train
    result = train(load_config("synthetic", ["data.root=data/synthetic", "train.max_minutes=6"]))
    result["checkpoint"]   # <run_dir>/final.pt in our checkpoint format (model.load_checkpoint reads it)

Read top to bottom like torchvision's reference train.py: ``train`` sets up (distributed, seeds, data,
model, optimizer, schedule, resume) and runs ``train_one_epoch`` per epoch, then checkpoints and evaluates.

- CUDA: bf16 autocast (forward + loss), channels_last, the fast RGA form; the CPU trains in float32.
- DDP when launched by torchrun (RANK / WORLD_SIZE / LOCAL_RANK in the environment): every rank takes its
  own share of each epoch's P x K batches; only rank 0 writes files, logs progress and evaluates.
- A run folder ``<output_dir>/<name>`` holds config.yaml (the resolved configuration), log.jsonl,
  checkpoints/epoch_NNNN.pt every ``checkpoint_every`` epochs, final.pt, and resume.pt.
- resume.pt holds model, optimizer, schedule, sampler state, the position (epoch and batch within it) and
  RNG states; since augmentation is a function of (seed, epoch, batch, slot) (training.data) a resumed run
  continues exactly as if it had not stopped (a test checks the weights are equal).
- ``train.max_minutes``: the run stops after the iteration that crosses the budget and writes final.pt and
  resume.pt, so the budget never costs the work done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from model.checkpoint import ModelMeta, atomic_torch_save, save_checkpoint
from model.errors import ReidError
from model.resnet_rga import build_model
from training.config import Config, ConfigError, config_from_dict
from training.data import build_train_loader, check_batch
from training.datasets import load_dataset
from training.losses import ReIDLoss
from training.schedule import WarmupMultiStepLR

logger = logging.getLogger(__name__)

RESUME_FORMAT = "rga-reid-resume/1"
# Parts of the configuration a resumed run must share with the run it continues.
RESUME_FIXED = (
    "data.dataset",
    "data.options",
    "data.ids_per_batch",
    "data.num_instances",
    "augment",
    "model",
    "loss",
    "optim",
    "train.seed",
)


# -- setup helpers -------------------------------------------------------------------------------------


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> Distributed:
    """Join the process group when launched by torchrun; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    if device_kind == "cuda":
        torch.cuda.set_device(local_rank)
    logger.info("distributed: rank %d of %d", rank, world_size)
    return Distributed(rank, world_size, local_rank)


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ReidError("train.device is cuda but no CUDA device is available; use train.device=cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def seed_everything(seed: int) -> None:
    """Seed torch, NumPy and random for this training process (the run's entry point owns them)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def _get(cfg_dict: dict[str, Any], dotted: str) -> Any:
    value: Any = cfg_dict
    for part in dotted.split("."):
        value = value[part]
    return value


def check_resume_config(saved: dict[str, Any], cfg: Config) -> None:
    """The parts of the configuration that shape the run must match the saved run's."""
    current = cfg.to_dict()
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
    """Load resume.pt (or the resume.pt inside a run folder); a ReidError if it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / "resume.pt"
    if not path.is_file():
        raise ReidError(f"resume file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a torch file
        raise ReidError(f"cannot read resume file {path}: {exc}".split("\n")[0]) from exc
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise ReidError(f"{path} is not a resume file written by `reid train` (expected {RESUME_FORMAT})")
    state["path"] = path
    return state


class RunLog:
    """log.jsonl (one JSON object a line) plus TensorBoard scalars when tensorboard is installed."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self._file = None
        self._tb = None
        if not enabled:
            return
        self._file = (run_dir / "log.jsonl").open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        except Exception:  # tensorboard not installed: JSONL only
            self._tb = None

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


@dataclass
class Position:
    """Where the run is: next epoch to run, batches of it already done, optimizer steps so far."""

    epoch: int = 0
    iteration: int = 0
    step: int = 0


@dataclass
class EpochResult:
    loss: float = math.nan
    cross_entropy: float = math.nan
    triplet: float = math.nan
    accuracy: float = math.nan
    iterations: int = 0
    images: int = 0
    seconds: float = 0.0
    stopped: bool = False  # the wall-clock budget ran out inside this epoch
    losses: list[float] = field(default_factory=list)


# -- one epoch -----------------------------------------------------------------------------------------


def train_one_epoch(
    model: nn.Module,
    criterion: ReIDLoss,
    optimizer: torch.optim.Optimizer,
    loader: torch.utils.data.DataLoader,
    position: Position,
    *,
    num_iterations: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager,
    channels_last: bool,
    deadline: float | None,
    distributed: Distributed,
    log: RunLog,
    log_every: int,
    progress: bool,
) -> EpochResult:
    """Run batches ``position.iteration .. num_iterations - 1`` of ``position.epoch``; updates ``position``."""
    model.train()
    result = EpochResult()
    totals = {"loss": 0.0, "cross_entropy": 0.0, "triplet": 0.0, "accuracy": 0.0}
    bar = tqdm(
        total=num_iterations,
        initial=position.iteration,
        desc=f"epoch {position.epoch}",
        unit="it",
        disable=None if (progress and distributed.is_main) else True,  # None: only on a terminal
        dynamic_ncols=True,
        leave=False,
    )
    start = time.perf_counter()
    window_start, window_images = start, 0
    for batch in loader:
        if position.iteration >= num_iterations:
            break
        batch = check_batch(batch)
        images = batch.images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        pids = batch.pids.to(device, non_blocking=True)

        with autocast:
            out = model(images)
            losses = criterion(out.logits, out.feat_, pids)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()

        position.iteration += 1
        position.step += 1
        batch_images = images.shape[0] * distributed.world_size
        values = {
            "loss": float(losses.total.detach()),
            "cross_entropy": float(losses.cross_entropy.detach()),
            "triplet": float(losses.triplet.detach()),
            "accuracy": float((out.logits.detach().argmax(dim=1) == pids).float().mean()),
        }
        if not all(math.isfinite(v) for v in values.values()):
            raise ReidError(
                f"the loss became {values['loss']} at epoch {position.epoch}, iteration {position.iteration}; "
                "lower optim.lr or check the data"
            )
        for key, value in values.items():
            totals[key] += value
        result.losses.append(values["loss"])
        result.iterations += 1
        result.images += batch_images
        window_images += batch_images
        now = time.perf_counter()
        images_per_s = window_images / max(now - window_start, 1e-9)
        bar.set_postfix(
            loss=f"{values['loss']:.3f}", acc=f"{values['accuracy']:.2f}", img_s=f"{images_per_s:.1f}"
        )
        bar.update(1)
        if position.step % log_every == 0:
            lr = optimizer.param_groups[0]["lr"]
            log.write(
                "iter",
                position.step,
                epoch=position.epoch,
                iteration=position.iteration,
                lr=lr,
                images_per_s=round(images_per_s, 2),
                **values,
            )
            window_start, window_images = now, 0

        if deadline is not None and _budget_spent(deadline, device, distributed):
            result.stopped = True
            break
    bar.close()
    result.seconds = time.perf_counter() - start
    if result.iterations:
        for key, total in totals.items():
            setattr(result, key, total / result.iterations)
    return result


def _budget_spent(deadline: float, device: torch.device, distributed: Distributed) -> bool:
    spent = time.monotonic() >= deadline
    if distributed.enabled:  # every rank stops at the same iteration
        flag = torch.tensor([1.0 if spent else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        spent = bool(flag.item() > 0)
    return spent


# -- checkpoints ---------------------------------------------------------------------------------------


def model_meta(cfg: Config, num_classes: int, epoch: int) -> ModelMeta:
    return ModelMeta(
        variant=cfg.model.variant,
        input_size=tuple(cfg.model.input_size),
        embed_feature=cfg.eval.feature,
        num_classes=num_classes,
        ratios=tuple(cfg.model.ratios),
        dataset=cfg.data.dataset,
        epoch=epoch,
    )


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


# -- the run -------------------------------------------------------------------------------------------


def train(cfg: Config, resume: str | Path | None = None) -> dict[str, Any]:
    """Train as configured (or continue the run saved in ``resume``: resume.pt or its run folder).

    Returns a dict: ``checkpoint`` (Path of final.pt), ``run_dir``, ``epochs_done`` (completed epochs),
    ``iterations`` (optimizer steps in all), ``last_loss`` (mean loss of the last epoch run),
    ``images_per_s`` (training throughput of this invocation), ``stopped_by_budget``, ``seconds``, and
    ``metrics`` (the final evaluation, when ``train.evaluate_at_end``; else None).
    Raises ReidError (ConfigError, DataError, DatasetError, ...) for problems a user can fix.
    """
    cfg.validate()
    started = time.monotonic()
    state = read_resume_file(resume) if resume is not None else None
    if state is not None:
        check_resume_config(state["config"], cfg)

    device = resolve_device(cfg.train.device, int(os.environ.get("LOCAL_RANK", "0")))
    distributed = init_distributed(device.type)
    if distributed.enabled and device.type == "cuda":
        device = torch.device("cuda", distributed.local_rank)
    on_cuda = device.type == "cuda"
    seed_everything(cfg.train.seed + distributed.rank)
    if on_cuda:
        torch.backends.cudnn.benchmark = True

    run_dir = state["path"].parent if state is not None else unused_run_dir(cfg.run_dir)
    if distributed.enabled:
        dist.barrier()  # every rank chose the run folder before rank 0 creates it
    if distributed.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.yaml")
    log = RunLog(run_dir, enabled=distributed.is_main)

    # data
    dataset = load_dataset(cfg.data.dataset, cfg.data.root, **cfg.data.options)
    if distributed.is_main:
        logger.info("%s", dataset.summary())
    loader, batches = build_train_loader(
        dataset.train,
        input_size=cfg.model.input_size,
        ids_per_batch=cfg.data.ids_per_batch,
        num_instances=cfg.data.num_instances,
        workers=cfg.data.workers,
        seed=cfg.train.seed,
        augment=dataclasses.asdict(cfg.augment),
        rank=distributed.rank,
        world_size=distributed.world_size,
        pin_memory=on_cuda,
    )
    num_classes = dataset.num_train_pids
    iterations_per_epoch = len(batches.sampler)
    if cfg.train.max_iters_per_epoch is not None:
        iterations_per_epoch = min(iterations_per_epoch, cfg.train.max_iters_per_epoch)

    # model, loss, optimizer, schedule
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
        try:
            model = build_model(
                cfg.model.variant,
                num_classes,
                tuple(cfg.model.input_size),
                tuple(cfg.model.ratios),
                backbone_weights=None if state else cfg.model.backbone_weights,
            )
        except ValueError as exc:
            raise ConfigError(
                f"model.input_size={cfg.model.input_size}, model.ratios={cfg.model.ratios}: {exc}"
            ) from exc
    model.set_rga_form("fast")
    channels_last = on_cuda and cfg.train.channels_last
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    criterion = ReIDLoss(
        cfg.loss.label_smoothing, cfg.loss.triplet_margin, cfg.loss.ce_weight, cfg.loss.triplet_weight
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    scheduler = WarmupMultiStepLR(
        optimizer,
        warmup_epochs=cfg.optim.warmup_epochs,
        warmup_start_factor=cfg.optim.warmup_start_lr / cfg.optim.lr,
        milestones=cfg.optim.milestones,
        gamma=cfg.optim.gamma,
    )
    position = Position()
    if state is not None:
        if state["num_classes"] != num_classes:
            raise ReidError(
                f"the saved run was trained on {state['num_classes']} identities, the dataset now has {num_classes}"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        batches.sampler.load_state_dict(state["sampler"])
        position = Position(**state["position"])
        set_rng_states(state["rng"])
        logger.info("resuming %s at epoch %d, iteration %d", run_dir, position.epoch, position.iteration)
    model_without_ddp = model
    if distributed.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if on_cuda and cfg.train.amp
        else contextlib.nullcontext()
    )
    deadline = started + 60.0 * cfg.train.max_minutes if cfg.train.max_minutes is not None else None

    def save_resume_file() -> None:
        save_resume(
            run_dir / "resume.pt",
            cfg,
            model_without_ddp,
            optimizer,
            scheduler,
            batches.sampler.state_dict(),
            position,
            num_classes,
        )

    def evaluate(final: bool):
        return _evaluate_during_training(
            cfg,
            model_without_ddp,
            num_classes,
            position,
            dataset,
            run_dir,
            log,
            distributed,
            device,
            final=final,
        )

    def save_all(checkpoint_path: Path | None) -> None:
        if not distributed.is_main:
            return
        save_resume_file()
        if checkpoint_path is not None:
            extra = {"iteration": position.iteration, "step": position.step, "config": cfg.to_dict()}
            save_checkpoint(
                checkpoint_path, model_without_ddp, model_meta(cfg, num_classes, position.epoch), extra
            )

    if distributed.is_main:
        logger.info(
            "training %s (%d classes) on %s: %d iterations/epoch of %d images, epochs %d..%d%s",
            cfg.model.variant,
            num_classes,
            device,
            iterations_per_epoch,
            cfg.batch_size * distributed.world_size,
            position.epoch,
            cfg.train.epochs - 1,
            f", budget {cfg.train.max_minutes:g} min" if deadline is not None else "",
        )

    run_images, run_seconds = 0, 0.0
    last = EpochResult()
    stopped = False
    while position.epoch < cfg.train.epochs:
        batches.set_epoch(position.epoch, start=position.iteration, stop=iterations_per_epoch)
        try:
            epoch_result = train_one_epoch(
                model,
                criterion,
                optimizer,
                loader,
                position,
                num_iterations=iterations_per_epoch,
                device=device,
                autocast=autocast,
                channels_last=channels_last,
                deadline=deadline,
                distributed=distributed,
                log=log,
                log_every=cfg.train.log_every,
                progress=cfg.train.progress,
            )
        except KeyboardInterrupt:
            # keep the work: resume.pt at the last completed iteration, then stop as asked
            if distributed.is_main:
                save_resume_file()
                logger.warning(
                    "interrupted at epoch %d, iteration %d; continue with --resume %s",
                    position.epoch,
                    position.iteration,
                    run_dir / "resume.pt",
                )
            log.close()
            raise
        run_images += epoch_result.images
        run_seconds += epoch_result.seconds
        if epoch_result.iterations:
            last = epoch_result
        if epoch_result.stopped and position.iteration < iterations_per_epoch:
            stopped = True
            break
        log.write(
            "epoch",
            position.step,
            epoch=position.epoch,
            lr=optimizer.param_groups[0]["lr"],
            loss=epoch_result.loss,
            cross_entropy=epoch_result.cross_entropy,
            triplet=epoch_result.triplet,
            accuracy=epoch_result.accuracy,
            images_per_s=round(epoch_result.images / max(epoch_result.seconds, 1e-9), 2),
            seconds=round(epoch_result.seconds, 2),
        )
        if distributed.is_main:
            logger.info(
                "epoch %d: loss %.4f (ce %.4f, triplet %.4f), acc %.3f, %.1f img/s",
                position.epoch,
                epoch_result.loss,
                epoch_result.cross_entropy,
                epoch_result.triplet,
                epoch_result.accuracy,
                epoch_result.images / max(epoch_result.seconds, 1e-9),
            )
        scheduler.step()
        position.epoch += 1
        position.iteration = 0
        every = cfg.train.checkpoint_every
        if every and position.epoch % every == 0 and position.epoch < cfg.train.epochs:
            save_all(run_dir / "checkpoints" / f"epoch_{position.epoch:04d}.pt")
        if (
            cfg.train.eval_every
            and position.epoch % cfg.train.eval_every == 0
            and position.epoch < cfg.train.epochs
        ):
            evaluate(final=False)
            model.train()
        if epoch_result.stopped:
            stopped = True
            break

    if stopped and distributed.is_main:
        logger.info(
            "time budget of %g min spent: stopping at epoch %d, iteration %d",
            cfg.train.max_minutes,
            position.epoch,
            position.iteration,
        )
    final_path = run_dir / "final.pt"
    save_all(final_path)
    metrics = None
    if cfg.train.evaluate_at_end:
        metrics = evaluate(final=True)
    log.close()
    if distributed.enabled:
        dist.barrier()
        dist.destroy_process_group()
    images_per_s = run_images / run_seconds if run_seconds > 0 else 0.0
    return {
        "checkpoint": final_path,
        "run_dir": run_dir,
        "epochs_done": position.epoch,
        "iterations": position.step,
        "last_loss": last.loss,
        "images_per_s": images_per_s,
        "stopped_by_budget": stopped,
        "seconds": time.monotonic() - started,
        "metrics": metrics,
    }


def _evaluate_during_training(
    cfg: Config,
    model: nn.Module,
    num_classes: int,
    position: Position,
    dataset,
    run_dir: Path,
    log: RunLog,
    distributed: Distributed,
    device: torch.device,
    final: bool,
) -> dict[str, Any] | None:
    """Evaluate on the dataset's query/gallery split (rank 0); write eval JSON (+ picture when final)."""
    metrics = None
    if distributed.is_main:
        if not dataset.query or not dataset.gallery:
            logger.warning("no query/gallery split in %s: skipping evaluation", dataset.name)
        else:
            from model.embedder import Embedder
            from training.evaluate import evaluate_embedder, write_report

            was_training = model.training
            embedder = Embedder(
                model,
                model_meta(cfg, num_classes, position.epoch),
                device=device,
                batch_size=cfg.eval.batch_size,
                flip=cfg.eval.flip,
                feature=cfg.eval.feature,
            )
            result = evaluate_embedder(
                embedder, dataset, rerank=cfg.eval.rerank, workers=min(cfg.data.workers, 2)
            )
            name = "eval" if final else f"eval_epoch_{position.epoch:04d}"
            write_report(result, run_dir, name=name, ranked_lists=cfg.eval.ranked_lists if final else 0)
            model.train(was_training)
            # the embedder moves the network to channels_last; give training back its own layout
            layout = (
                torch.channels_last
                if device.type == "cuda" and cfg.train.channels_last
                else torch.contiguous_format
            )
            model.to(memory_format=layout)
            metrics = result.report
            log.write(
                "eval",
                position.step,
                epoch=position.epoch,
                **{k: metrics[k] for k in ("rank1", "rank5", "rank10", "mAP", "mINP")},
            )
            logger.info(
                "evaluation at epoch %d: rank-1 %.2f%%, mAP %.2f%%",
                position.epoch,
                100 * metrics["rank1"],
                100 * metrics["mAP"],
            )
    if distributed.enabled:
        dist.barrier()
    return metrics


def config_for_resume(resume: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The configuration saved with a run (its config.yaml) with overrides applied: for `--resume` alone."""
    from training.config import apply_overrides

    state = read_resume_file(resume)
    cfg = config_from_dict(state["config"])
    apply_overrides(cfg, overrides)
    return cfg.validate()
