"""The training loop: RGA re-ID network, P x K batches, CE + triplet, Adam with warm-up and step decay.

    from training.config import load_config
    from training.train import train
    result = train(load_config("synthetic", ["data.root=data/synthetic", "train.max_minutes=6"]))
    result["checkpoint"]   # <run_dir>/final.pt in our checkpoint format (model.load_checkpoint reads it)

Read top to bottom like torchvision's reference train.py: ``train`` sets up (``set_up``: runtime, run
folder, data, model, optimizer, schedule, resume) and runs ``train_one_epoch`` per epoch, then checkpoints
and evaluates. The process's runtime (distributed, device, seeds, RNG state) is in training.runtime; the
run's state on disk (run folder, log, resume file) in training.run_state.

- Precision (``train.precision``): "fp32" as the official code trains, or "bf16" autocast (forward + loss),
  the fast option on CUDA. CUDA also runs channels_last (``train.channels_last``) and the fast RGA form.
- DDP when launched by torchrun (RANK / WORLD_SIZE / LOCAL_RANK in the environment): the batch stays the
  recipe's global P x K (64) whatever the number of ranks; each rank forwards its share, the outputs are
  gathered and every rank computes the losses over the whole batch (``forward_and_loss``), so a step equals
  one process's step at the same batch. BatchNorm sees each rank's share (as the official DataParallel
  did), or the whole batch with ``train.sync_bn`` (CUDA). Only rank 0 writes files, logs and evaluates.
- A new run starts from the ImageNet backbone file (``model.backbone_weights``), or from random weights
  only when ``model.random_init`` says so (``check_backbone_weights``), or from a re-ID checkpoint
  (``model.init_weights``, ``read_init_weights``).
- A resumed run continues exactly as if it had not stopped (augmentation is a function of (seed, epoch,
  batch, slot), training.data; a test checks the weights are equal).
- ``train.max_minutes``: the run stops after the iteration that crosses the budget and writes final.pt and
  resume.pt, so the budget never costs the work done.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.builder import build_model, load_checkpoint
from model.checkpoint import ModelMeta, save_checkpoint
from model.device import autocast
from model.embedder import Embedder
from model.errors import ReidError
from training.config import Config, ConfigError, check_backbone_weights
from training.curves import write_curves
from training.data import SeededBatches, build_train_loader, check_batch
from training.datasets import load_dataset
from training.datasets.base import ReIDDataset
from training.evaluate import evaluate_embedder, write_report
from training.losses import ReIDLoss, ReIDLossOutput
from training.run_state import (
    Position,
    RunLog,
    check_resume_config,
    read_resume_file,
    save_resume,
    unused_run_dir,
)
from training.runtime import (
    Distributed,
    budget_spent,
    gather_batch,
    init_distributed,
    seed_everything,
    set_rng_states,
    shutdown_distributed,
    training_device,
)
from training.schedule import WarmupMultiStepLR

logger = logging.getLogger(__name__)


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


@dataclass
class TrainingRun:
    """Everything ``set_up`` builds and the loop uses."""

    cfg: Config
    distributed: Distributed
    device: torch.device
    run_dir: Path
    log: RunLog
    dataset: ReIDDataset
    loader: DataLoader
    batches: SeededBatches
    num_classes: int
    iterations_per_epoch: int
    model: nn.Module  # DDP-wrapped under torchrun
    model_without_ddp: nn.Module
    criterion: ReIDLoss
    optimizer: torch.optim.Optimizer
    scheduler: WarmupMultiStepLR
    position: Position
    channels_last: bool
    deadline: float | None

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


# -- one step and one epoch ----------------------------------------------------------------------------


def forward_and_loss(
    model: nn.Module, criterion: ReIDLoss, images: torch.Tensor, pids: torch.Tensor, distributed: Distributed
) -> tuple[ReIDLossOutput, torch.Tensor, torch.Tensor]:
    """Forward this rank's images; the losses over the global batch -> (losses, logits, pids), all global.

    Under DDP the logits, pooled features and labels of every rank are gathered (differentiably) before
    the losses, so the batch-hard triplet mines over the whole batch and the gradients, once DDP has
    averaged them, are those of one process on the whole batch.
    """
    out = model(images)
    logits = gather_batch(out.logits, distributed)
    features = gather_batch(out.feat_, distributed)
    pids = gather_batch(pids, distributed)
    return criterion(logits, features, pids), logits, pids


def train_one_epoch(run: TrainingRun) -> EpochResult:
    """Run batches ``position.iteration .. iterations_per_epoch - 1`` of ``position.epoch``; updates it."""
    model, optimizer, position, distributed = run.model, run.optimizer, run.position, run.distributed
    model.train()
    result = EpochResult()
    totals = {"loss": 0.0, "cross_entropy": 0.0, "triplet": 0.0, "accuracy": 0.0}
    bar = tqdm(
        total=run.iterations_per_epoch,
        initial=position.iteration,
        desc=f"epoch {position.epoch}",
        unit="it",
        disable=None if (run.cfg.train.progress and distributed.is_main) else True,  # None: only on a terminal
        dynamic_ncols=True,
        leave=False,
    )
    start = time.perf_counter()
    window_start, window_images = start, 0
    for batch in run.loader:
        if position.iteration >= run.iterations_per_epoch:
            break
        batch = check_batch(batch)
        images = batch.images.to(run.device, non_blocking=True).contiguous(memory_format=run.memory_format)
        pids = batch.pids.to(run.device, non_blocking=True)

        with autocast(run.device, run.cfg.train.precision):
            losses, logits, pids = forward_and_loss(model, run.criterion, images, pids, distributed)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()

        position.iteration += 1
        position.step += 1
        batch_images = pids.shape[0]  # the global batch
        values = {
            "loss": float(losses.total.detach()),
            "cross_entropy": float(losses.cross_entropy.detach()),
            "triplet": float(losses.triplet.detach()),
            "accuracy": float((logits.detach().argmax(dim=1) == pids).float().mean()),
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
        if position.step % run.cfg.train.log_every == 0:
            run.log.write(
                "iter",
                position.step,
                epoch=position.epoch,
                iteration=position.iteration,
                lr=optimizer.param_groups[0]["lr"],
                images_per_s=round(images_per_s, 2),
                **values,
            )
            window_start, window_images = now, 0

        if run.deadline is not None and budget_spent(run.deadline, run.device, distributed):
            result.stopped = True
            break
    bar.close()
    result.seconds = time.perf_counter() - start
    if result.iterations:
        for key, total in totals.items():
            setattr(result, key, total / result.iterations)
    return result


# -- set-up --------------------------------------------------------------------------------------------


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


def _build_network(
    cfg: Config, num_classes: int, from_resume: bool, init_weights: dict[str, torch.Tensor] | None = None
) -> nn.Module:
    """The network, with the same initial weights on every rank (seeded apart from the global RNG).

    ``init_weights`` (from ``read_init_weights``) replaces the initial weights of a new run.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        try:
            model = build_model(
                cfg.model.variant,
                num_classes,
                tuple(cfg.model.input_size),
                tuple(cfg.model.ratios),
                backbone_weights=None if from_resume else cfg.model.backbone_weights,
            )
        except ValueError as exc:
            raise ConfigError(
                f"model.input_size={cfg.model.input_size}, model.ratios={cfg.model.ratios}: {exc}"
            ) from exc
    if init_weights is not None and not from_resume:
        own = model.state_dict()
        if "cls.weight" in init_weights and init_weights["cls.weight"].shape != own["cls.weight"].shape:
            logger.info(
                "model.init_weights has %d ids, the data %d: a new classifier",
                init_weights["cls.weight"].shape[0],
                own["cls.weight"].shape[0],
            )
            init_weights = {key: value for key, value in init_weights.items() if not key.startswith("cls.")}
        missing, unexpected = model.load_state_dict(init_weights, strict=False)
        if [key for key in missing if not key.startswith("cls.")] or unexpected:
            raise ConfigError(f"model.init_weights: keys missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.set_rga_form("fast")


def read_init_weights(cfg: Config) -> dict[str, torch.Tensor] | None:
    """The weights of the re-ID checkpoint ``model.init_weights`` that starts a new run (None when unset).

    It must hold the configured network (variant, input size, RGA ratios): a ConfigError says which part
    differs, before the run folder is made. Its classifier is kept by ``_build_network`` when it has one
    output per training id, else it starts random (fine-tuning on other people).
    """
    path = cfg.model.init_weights
    if path is None:
        return None
    try:
        source, meta = load_checkpoint(path, for_inference=False)
    except ReidError as exc:
        raise ConfigError(f"model.init_weights={path}: {exc}") from exc
    wanted = (cfg.model.variant, tuple(cfg.model.input_size), tuple(cfg.model.ratios))
    found = (meta.variant, tuple(meta.input_size), tuple(meta.ratios))
    if wanted != found:
        raise ConfigError(
            f"model.init_weights={path} holds a {found[0]} network for {found[1][0]}x{found[1][1]} input with "
            f"ratios {list(found[2])}; the configuration asks for {wanted[0]}, {wanted[1][0]}x{wanted[1][1]}, "
            f"ratios {list(wanted[2])}"
        )
    logger.info("starting from the weights in %s", path)
    return source.state_dict()


def set_up(
    cfg: Config,
    state: dict[str, Any] | None,
    started: float,
    init_weights: dict[str, torch.Tensor] | None = None,
) -> TrainingRun:
    """Runtime, run folder, data, model, loss, optimizer and schedule; restored from ``state`` when resuming."""
    device = training_device(cfg.train.device)
    on_cuda = device.type == "cuda"
    if cfg.train.sync_bn and not on_cuda:
        raise ConfigError("train.sync_bn needs CUDA (PyTorch's SyncBatchNorm does not run on the CPU)")
    distributed = init_distributed(device.type)
    if cfg.batch_size % distributed.world_size:
        raise ConfigError(
            f"the batch of {cfg.batch_size} images (data.ids_per_batch x data.num_instances) cannot be split "
            f"evenly among {distributed.world_size} ranks"
        )
    seed_everything(cfg.train.seed + distributed.rank)
    if on_cuda:
        torch.backends.cudnn.benchmark = True

    run_dir = state["path"].parent if state is not None else unused_run_dir(cfg.run_dir)
    if distributed.enabled:
        torch.distributed.barrier()  # every rank chose the run folder before rank 0 creates it
    if distributed.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.yaml")
    log = RunLog(run_dir, enabled=distributed.is_main)

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

    model = _build_network(cfg, num_classes, from_resume=state is not None, init_weights=init_weights)
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
    if cfg.train.sync_bn and distributed.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model_without_ddp = model
    if distributed.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)
    deadline = started + 60.0 * cfg.train.max_minutes if cfg.train.max_minutes is not None else None
    return TrainingRun(
        cfg=cfg,
        distributed=distributed,
        device=device,
        run_dir=run_dir,
        log=log,
        dataset=dataset,
        loader=loader,
        batches=batches,
        num_classes=num_classes,
        iterations_per_epoch=iterations_per_epoch,
        model=model,
        model_without_ddp=model_without_ddp,
        criterion=criterion,
        optimizer=optimizer,
        scheduler=scheduler,
        position=position,
        channels_last=channels_last,
        deadline=deadline,
    )


# -- saving and evaluating -----------------------------------------------------------------------------


def save_resume_file(run: TrainingRun) -> None:
    save_resume(
        run.run_dir / "resume.pt",
        run.cfg,
        run.model_without_ddp,
        run.optimizer,
        run.scheduler,
        run.batches.sampler.state_dict(),
        run.position,
        run.num_classes,
    )


def save_state(run: TrainingRun, checkpoint_path: Path | None) -> None:
    """resume.pt, and a checkpoint in our format at ``checkpoint_path`` (rank 0 only)."""
    if not run.distributed.is_main:
        return
    save_resume_file(run)
    if checkpoint_path is not None:
        position = run.position
        extra = {"iteration": position.iteration, "step": position.step, "config": run.cfg.to_dict()}
        meta = model_meta(run.cfg, run.num_classes, position.epoch)
        save_checkpoint(checkpoint_path, run.model_without_ddp, meta, extra)


def evaluate(run: TrainingRun, final: bool) -> dict[str, Any] | None:
    """Evaluate on the dataset's query/gallery split (rank 0); write eval JSON (+ picture when final).

    The embedder runs the network in the training's memory layout and precision, so training goes on
    with the network exactly as it was; the caller puts it back in train mode.
    """
    cfg, position, metrics = run.cfg, run.position, None
    if run.distributed.is_main:
        if not run.dataset.query or not run.dataset.gallery:
            logger.warning("no query/gallery split in %s: skipping evaluation", run.dataset.name)
        else:
            embedder = Embedder(
                run.model_without_ddp,
                model_meta(cfg, run.num_classes, position.epoch),
                device=run.device,
                batch_size=cfg.eval.batch_size,
                flip=cfg.eval.flip,
                feature=cfg.eval.feature,
                precision=cfg.train.precision,
                channels_last=run.channels_last,
            )
            result = evaluate_embedder(
                embedder, run.dataset, rerank=cfg.eval.rerank, workers=min(cfg.data.workers, 2)
            )
            name = "eval" if final else f"eval_epoch_{position.epoch:04d}"
            write_report(result, run.run_dir, name=name, ranked_lists=cfg.eval.ranked_lists if final else 0)
            metrics = result.report
            run.log.write(
                "eval",
                position.step,
                epoch=position.epoch,
                **{k: metrics[k] for k in ("rank1", "rank5", "rank10", "mAP", "mINP")},
            )
            by_feature = metrics["by_feature"]
            logger.info(
                "evaluation at epoch %d: feat_ rank-1 %.2f%%, mAP %.2f%%; feat rank-1 %.2f%%, mAP %.2f%%",
                position.epoch,
                100 * by_feature["feat_"]["rank1"],
                100 * by_feature["feat_"]["mAP"],
                100 * by_feature["feat"]["rank1"],
                100 * by_feature["feat"]["mAP"],
            )
    if run.distributed.enabled:
        torch.distributed.barrier()
    return metrics


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
    else:
        check_backbone_weights(cfg)
    run = set_up(cfg, state, started, init_weights=None if state is not None else read_init_weights(cfg))
    position, distributed = run.position, run.distributed
    if distributed.is_main:
        logger.info(
            "training %s (%d classes) on %s in %s: %d iterations/epoch of %d images%s, epochs %d..%d%s",
            cfg.model.variant,
            run.num_classes,
            run.device,
            cfg.train.precision,
            run.iterations_per_epoch,
            cfg.batch_size,
            f" over {distributed.world_size} ranks" if distributed.enabled else "",
            position.epoch,
            cfg.train.epochs - 1,
            f", budget {cfg.train.max_minutes:g} min" if run.deadline is not None else "",
        )

    run_images, run_seconds = 0, 0.0
    last = EpochResult()
    stopped = False
    while position.epoch < cfg.train.epochs:
        run.batches.set_epoch(position.epoch, start=position.iteration, stop=run.iterations_per_epoch)
        try:
            epoch_result = train_one_epoch(run)
        except KeyboardInterrupt:
            # keep the work: resume.pt at the last completed iteration, then stop as asked
            if distributed.is_main:
                save_resume_file(run)
                logger.warning(
                    "interrupted at epoch %d, iteration %d; continue with --resume %s",
                    position.epoch,
                    position.iteration,
                    run.run_dir / "resume.pt",
                )
            run.log.close()
            raise
        run_images += epoch_result.images
        run_seconds += epoch_result.seconds
        if epoch_result.iterations:
            last = epoch_result
        if epoch_result.stopped and position.iteration < run.iterations_per_epoch:
            stopped = True
            break
        _log_epoch(run, epoch_result)
        run.scheduler.step()
        position.epoch += 1
        position.iteration = 0
        more_to_come = position.epoch < cfg.train.epochs
        every = cfg.train.checkpoint_every
        if every and position.epoch % every == 0 and more_to_come:
            save_state(run, run.run_dir / "checkpoints" / f"epoch_{position.epoch:04d}.pt")
        if cfg.train.eval_every and position.epoch % cfg.train.eval_every == 0 and more_to_come:
            evaluate(run, final=False)
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
    final_path = run.run_dir / "final.pt"
    save_state(run, final_path)
    metrics = evaluate(run, final=True) if cfg.train.evaluate_at_end else None
    run.log.close()
    if distributed.is_main:
        write_curves(run.run_dir)  # curves.png: loss, accuracy and mAP per epoch, next to log.jsonl
    shutdown_distributed(distributed)
    return {
        "checkpoint": final_path,
        "run_dir": run.run_dir,
        "epochs_done": position.epoch,
        "iterations": position.step,
        "last_loss": last.loss,
        "images_per_s": run_images / run_seconds if run_seconds > 0 else 0.0,
        "stopped_by_budget": stopped,
        "seconds": time.monotonic() - started,
        "metrics": metrics,
    }


def _log_epoch(run: TrainingRun, result: EpochResult) -> None:
    images_per_s = result.images / max(result.seconds, 1e-9)
    run.log.write(
        "epoch",
        run.position.step,
        epoch=run.position.epoch,
        lr=run.optimizer.param_groups[0]["lr"],
        loss=result.loss,
        cross_entropy=result.cross_entropy,
        triplet=result.triplet,
        accuracy=result.accuracy,
        images_per_s=round(images_per_s, 2),
        seconds=round(result.seconds, 2),
    )
    if run.distributed.is_main:
        logger.info(
            "epoch %d: loss %.4f (ce %.4f, triplet %.4f), acc %.3f, %.1f img/s",
            run.position.epoch,
            result.loss,
            result.cross_entropy,
            result.triplet,
            result.accuracy,
            images_per_s,
        )
