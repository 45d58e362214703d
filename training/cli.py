"""`reid` subcommands contributed by the training package: synth (datasets), train, evaluate."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from model.device import PRECISIONS
from model.errors import ReidError
from training.config import available_configs, load_config
from training.datasets import cli as datasets_cli

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands (each sets `func`, which returns an exit code)."""
    datasets_cli.register(subparsers)

    train = subparsers.add_parser(
        "train",
        help="train an RGA re-ID network (official recipe by default)",
        description="Train with a named configuration (training/configs/NAME.yaml) or a YAML file. Writes "
        "<output_dir>/<name>/: config.yaml, log.jsonl, checkpoints/, final.pt, resume.pt, eval.json.",
    )
    train.add_argument("--config", help=f"configuration name ({', '.join(available_configs())}) or YAML path")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value, e.g. --set train.epochs=120 --set model.input_size=[256,128] (repeatable)",
    )
    train.add_argument("--root", help="dataset folder (same as --set data.root=DIR)")
    train.add_argument("--name", help="run name: the run folder is <output_dir>/<name>")
    train.add_argument("--output-dir", help="where run folders go (default runs)")
    train.add_argument("--resume", type=Path, help="continue the run saved in this resume.pt (or run folder)")
    train.add_argument(
        "--print-config", action="store_true", help="print the resolved configuration and exit"
    )
    train.set_defaults(func=run_train)

    ev = subparsers.add_parser(
        "evaluate",
        help="rank-1/5/10, mAP and mINP of a checkpoint on a dataset, plus a picture of ranked lists",
        description="Evaluate a checkpoint (ours or the official RGA checkpoint_*.pth.tar) under the standard "
        "re-ID protocol with cosine distance; writes eval.json and ranked_lists.png to --out.",
    )
    ev.add_argument("--weights", required=True, type=Path, help="checkpoint file")
    ev.add_argument(
        "--dataset",
        required=True,
        help="dataset name (market1501, dukemtmc, cuhk03, cuhk03np, msmt17, synthetic)",
    )
    ev.add_argument("--root", required=True, type=Path, help="dataset folder")
    ev.add_argument("--split", help="cuhk03 / cuhk03np split: labeled or detected")
    ev.add_argument(
        "--feature", choices=("feat_", "feat"), help="feature to rank with (default: the checkpoint's)"
    )
    ev.add_argument("--flip", action="store_true", help="horizontal-flip test-time augmentation")
    ev.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")
    ev.add_argument("--out", type=Path, default=Path("eval"), help="output folder (default eval)")
    ev.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)")
    ev.add_argument(
        "--precision",
        choices=(*PRECISIONS, "auto"),
        default="fp32",
        help="fp32 (default: as the official code tests) or bf16 autocast (the fast option on CUDA)",
    )
    ev.add_argument("--batch-size", type=int, default=128)
    ev.add_argument("--workers", type=int, default=2, help="image decoding processes (default 2)")
    ev.add_argument(
        "--ranked-lists", type=int, default=6, help="queries in ranked_lists.png (0 = no picture)"
    )
    ev.set_defaults(func=run_evaluate)


# training.train and training.evaluate (torch, torchvision, the datasets) are imported when their
# command runs, not when `reid --help` builds the parser.


def run_train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.root is not None:
        overrides.append(f"data.root={args.root}")
    if args.name is not None:
        overrides.append(f"name={args.name}")
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    if args.config is not None:
        cfg = load_config(args.config, overrides)
    elif args.resume is not None:
        from training.run_state import config_for_resume

        cfg = config_for_resume(args.resume, overrides)
    else:
        raise ReidError("give --config NAME|PATH (or --resume PATH to continue a run)")
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from training.train import train

    result = train(cfg, resume=args.resume)
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.items() if k != "metrics"}
    if result.get("metrics"):
        metrics = result["metrics"]
        summary["metrics"] = {k: metrics[k] for k in ("rank1", "rank5", "rank10", "mAP", "mINP")}
        summary["metrics"]["by_feature"] = {
            name: {k: scores[k] for k in ("rank1", "mAP")} for name, scores in metrics["by_feature"].items()
        }
    print(json.dumps(summary, indent=2))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_checkpoint

    if args.batch_size < 1:
        raise ReidError("--batch-size must be at least 1")
    report = evaluate_checkpoint(
        args.weights,
        args.dataset,
        args.root,
        feature=args.feature,
        flip=args.flip,
        rerank=args.rerank,
        out_dir=args.out,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        workers=args.workers,
        ranked_lists=args.ranked_lists,
        dataset_options={"split": args.split} if args.split else None,
    )
    print(
        f"{report['dataset']}: rank-1 {100 * report['rank1']:.2f}%  rank-5 {100 * report['rank5']:.2f}%  "
        f"rank-10 {100 * report['rank10']:.2f}%  mAP {100 * report['mAP']:.2f}%  mINP {100 * report['mINP']:.2f}%"
    )
    for name, scores in report["by_feature"].items():
        print(f"  {name:<5}: rank-1 {100 * scores['rank1']:.2f}%  mAP {100 * scores['mAP']:.2f}%")
    print(f"report: {report.get('report_path')}")
    if report.get("picture_path"):
        print(f"ranked lists: {report['picture_path']}")
    return 0
