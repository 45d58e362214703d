"""One command that proves the GPU paths: tests, embedding, training, a short run, the service; one report.

    python -m bench.gpu_check --out DIR                  # on a GPU machine: the full check (<= 8 min)
    python -m bench.gpu_check --out DIR --kit .whl       # first install the device kit (make devicekit)
    python -m bench.gpu_check --out DIR --device cpu     # here: the reduced CPU run that tests the check
    python -m bench.gpu_check --out DIR --only embed service --budget 200     # re-run some stages

Stages, in order (each in its own subprocesses with a time budget, so a failure, a missing piece or a
stage that runs out of time is recorded with its reason and the next stage still runs):
  environment   Python, torch, CUDA, the GPU, faiss; the device kit installed with `pip --no-index
                --no-deps --target` (never touching the machine's torch) and its requirements checked
  pytest_gpu    `pytest -m gpu`: every test that needs CUDA
  embed         bench.embed: fast form fp32/bf16 x eager/compiled at batch 1, 64, 256; direct fp32 at 64
  train         bench.train: rgasc and none, bf16 and fp32, batch 64: images/s and peak memory
  training_run  a short training run on store-reid crops: loss curve, mAP / rank-1, visitors from true tracks
  service       bench.service: 2,000 synthetic crops ingested over loopback HTTP, then searches
Without CUDA (or with --device cpu) the CUDA-only parts are skipped with the reason "no CUDA" and the
rest runs in a tiny form that only tests the plumbing (its numbers mean nothing).

DIR gets report.md, report.json (rewritten after every stage, so a check stopped from outside keeps what
it measured) and logs.txt (the end of every command's output). At most 3 files: the device tool brings
back 8. This module imports only the standard library, so it runs before the kit is installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = "no CUDA"

# Packages the machine must provide itself: a kit that holds one of these would shadow the machine's own
# CUDA build (the kit goes first on PYTHONPATH), so the check refuses to install it.
PROTECTED = ("torch", "torchvision", "torchaudio", "triton", "nvidia", "numpy")

# The targets, stated for one H100 (bf16 unless said).
TARGET_EMBED_256 = 20_000.0  # images/s, bf16, batch 256
TARGET_EMBED_1_MS = 1.5  # ms per batch of 1
TARGET_TRAIN = 2_400.0  # images/s, rgasc bf16 batch 64
TARGET_TRAIN_GB = 8.0  # GB (1e9 bytes) of peak GPU memory
TARGET_INGEST_OVERHEAD = 0.10  # ingest over HTTP vs pure embedding


# -- results -------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    target: str
    value: str
    met: bool | None  # None: not measured
    note: str = ""


@dataclass
class StageResult:
    name: str
    status: str = "passed"  # passed | failed | skipped | partial (its time budget ran out part-way)
    reason: str = ""
    seconds: float = 0.0
    budget_s: float = 0.0
    reduced: bool = False  # a CPU stand-in run: plumbing only, the numbers mean nothing
    skipped_parts: list[dict] = field(default_factory=list)
    commands: list[dict] = field(default_factory=list)
    results: dict = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.status = "failed"
        self.reason = f"{self.reason}; {reason}" if self.reason and self.reason != reason else reason

    def skip_part(self, what: str, reason: str) -> None:
        self.skipped_parts.append({"what": what, "reason": reason})


class StageStopped(Exception):
    """A stage cannot go on (its reason becomes the stage's)."""


# -- running commands under a budget ---------------------------------------------------------------------


@dataclass
class Context:
    out: Path
    work: Path
    env: dict
    python: str
    cuda: bool
    tiny: bool
    train_minutes: float
    log: list[str] = field(default_factory=list)
    probe: dict = field(default_factory=dict)
    current: subprocess.Popen | None = None

    def run(self, stage: StageResult, argv: list[str], budget_s: float) -> subprocess.CompletedProcess:
        """Run one command (its own process group) for at most budget_s; record it in the stage."""
        shown = [a if "\n" not in a else "<script>" for a in argv]  # python -c SCRIPT: not the script
        record = {"command": shlex.join(shown), "budget_s": round(budget_s, 1)}
        stage.commands.append(record)
        if budget_s < 1:
            record.update(returncode=None, seconds=0.0, timed_out=True)
            return subprocess.CompletedProcess(argv, returncode=-1, stdout="", stderr="no time left")
        started = time.monotonic()
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as output:
            process = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
            self.current = process
            timed_out = False
            try:
                process.wait(timeout=budget_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                stop_group(process)
            finally:
                self.current = None
            output.seek(0)
            text = output.read()
        seconds = time.monotonic() - started
        record.update(returncode=process.returncode, seconds=round(seconds, 1), timed_out=timed_out)
        tail = text[-6000:]
        self.log.append(
            f"===== {stage.name}: {record['command']}\n"
            f"----- exit {process.returncode}{' (stopped at its time budget)' if timed_out else ''}, "
            f"{seconds:.1f} s; last {len(tail)} of {len(text)} characters:\n{tail}\n"
        )
        if timed_out:
            record["returncode"] = None
        return subprocess.CompletedProcess(argv, -1 if timed_out else process.returncode, text, "")


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the command's process group, then SIGKILL what is left after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def read_json_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                continue
    return rows


def last_error_line(text: str) -> str:
    """The most telling line of a failed command's output (the exception, else the last line)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b", line) or line.startswith("reid "):
            return line[:400]
    return lines[-1][:400] if lines else "no output"


def check_command(stage: StageResult, done: subprocess.CompletedProcess, what: str, budget_s: float) -> bool:
    """Record a command's failure or timeout in the stage; True when it succeeded."""
    if done.returncode == 0:
        return True
    if done.returncode == -1:
        stage.status = "partial" if stage.status != "failed" else "failed"
        note = f"{what}: stopped at its time budget of {budget_s:.0f} s"
        stage.reason = f"{stage.reason}; {note}" if stage.reason else note
    else:
        stage.fail(f"{what} failed (exit {done.returncode}): {last_error_line(done.stdout)}")
    return False


# -- stages ----------------------------------------------------------------------------------------------


PROBE = r"""
import importlib, importlib.metadata as md, json, os, platform, sys
info = {"python": platform.python_version(), "executable": sys.executable, "cpus": os.cpu_count()}
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_file"] = torch.__file__
    info["torch_cuda"] = torch.version.cuda
    info["cuda"] = torch.cuda.is_available()
    if info["cuda"]:
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                       "capability": f"{p.major}.{p.minor}", "count": torch.cuda.device_count()}
except Exception as exc:
    info["torch_error"] = f"{type(exc).__name__}: {exc}"
    info["cuda"] = False
try:
    import faiss
    info["faiss"] = {"version": faiss.__version__,
                     "gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0}
except Exception as exc:
    info["faiss"] = {"error": f"{type(exc).__name__}: {exc}"}
modules = {}
for name in json.loads(sys.argv[1]):
    try:
        mod = importlib.import_module(name)
        modules[name] = {"ok": True, "file": getattr(mod, "__file__", None)}
    except Exception as exc:
        modules[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
info["modules"] = modules
problems = []
try:
    from packaging.requirements import Requirement
    for dist_name in json.loads(sys.argv[2]):
        try:
            dist = md.distribution(dist_name)
        except md.PackageNotFoundError:
            problems.append(f"{dist_name}: not installed")
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                problems.append(f"{dist_name} needs {req}: not installed")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                problems.append(f"{dist_name} needs {req}: found {have}")
except Exception as exc:
    problems.append(f"could not check requirements: {type(exc).__name__}: {exc}")
info["requirement_problems"] = problems
print("PROBE " + json.dumps(info))
"""


def kit_wheels(kit: Path) -> list[Path]:
    return sorted(kit.glob("*.whl"))


def wheel_project(path: Path) -> str:
    return path.name.split("-", 1)[0].lower().replace("_", "-")


def install_kit(ctx: Context, stage: StageResult, kit: Path, target: Path, budget_s: float) -> list[str]:
    """pip install --no-index --no-deps --target: the kit beside the machine's packages, never over them."""
    wheels = kit_wheels(kit)
    if not wheels:
        raise StageStopped(f"the kit folder {kit} holds no wheels (build it with `make devicekit`)")
    projects = [wheel_project(w) for w in wheels]
    protected = [p for p in projects if p.split("-")[0] in PROTECTED or p.startswith("nvidia")]
    if protected:
        raise StageStopped(
            f"the kit holds {', '.join(protected)}: the machine's own build must be used; rebuild the kit"
        )
    argv = [
        ctx.python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
        "--no-cache-dir", "--disable-pip-version-check", "--upgrade", "--target", str(target),
        *map(str, wheels),
    ]  # fmt: skip
    done = ctx.run(stage, argv, budget_s)
    if not check_command(stage, done, "installing the device kit", budget_s):
        raise StageStopped(stage.reason)
    return projects


def stage_environment(ctx: Context, stage: StageResult, budget_s: float, args: argparse.Namespace) -> None:
    from bench.devicekit import CHECK_MODULES  # stdlib-only module: the import list the check needs

    deadline = time.monotonic() + budget_s
    kit_projects: list[str] = []
    if args.kit is not None:
        target = args.kit_target
        kit_projects = install_kit(ctx, stage, args.kit, target, budget_s * 0.6)
        ctx.env["PYTHONPATH"] = os.pathsep.join([str(target), str(ROOT), ctx.env.get("PYTHONPATH", "")])
        stage.results["kit"] = {"folder": str(args.kit), "target": str(target), "wheels": kit_projects}
    argv = [ctx.python, "-c", PROBE, json.dumps(CHECK_MODULES), json.dumps(kit_projects)]
    done = ctx.run(stage, argv, max(1.0, deadline - time.monotonic()))
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PROBE ")), None)
    if line is None:
        raise StageStopped(f"the environment probe failed: {last_error_line(done.stdout)}")
    probe = json.loads(line[len("PROBE ") :])
    ctx.probe = probe
    stage.results["probe"] = probe
    if args.kit is not None and not str(probe.get("torch_file", "")).startswith(str(args.kit_target)):
        stage.results["torch_untouched"] = True
    elif args.kit is not None:
        stage.fail("torch was imported from the kit's folder: the machine's own torch must be used")
    missing = {name: m["error"] for name, m in probe["modules"].items() if not m["ok"]}
    if "torch_error" in probe:
        stage.fail(f"torch cannot be imported: {probe['torch_error']}")
    if missing:
        stage.fail(
            "modules the check needs cannot be imported: "
            + "; ".join(f"{k} ({v})" for k, v in sorted(missing.items()))
        )
    if probe.get("requirement_problems"):
        stage.results["requirement_problems"] = probe["requirement_problems"]
        stage.fail("the kit's requirements are not met: " + "; ".join(probe["requirement_problems"][:5]))
    if not probe.get("cuda"):
        if args.device == "cuda":
            stage.fail("--device cuda was asked for but torch sees no CUDA device")
        stage.skip_part("GPU", NO_CUDA)
    faiss = probe.get("faiss", {})
    if "error" in faiss:
        stage.skip_part("faiss", f"faiss cannot be imported ({faiss['error']}): the service stage will fail")
    elif probe.get("cuda") and not faiss.get("gpus"):
        stage.skip_part("faiss GPU", "this faiss build has no GPU support: the service searches on the CPU")


def stage_pytest_gpu(ctx: Context, stage: StageResult, budget_s: float, args: argparse.Namespace) -> None:
    junit = ctx.work / "pytest_gpu.xml"
    argv = [
        ctx.python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
        "--continue-on-collection-errors", f"--junitxml={junit}", "tests",
    ]  # fmt: skip
    done = ctx.run(stage, argv, budget_s)
    summary = junit_summary(junit)
    stage.results.update(summary)
    if done.returncode == -1:
        check_command(stage, done, "pytest -m gpu", budget_s)
        return
    # pytest exits 5 when no test was collected
    if summary.get("failed") or summary.get("errors") or done.returncode not in (0, 5):
        names = ", ".join(summary.get("failures", [])[:8]) or last_error_line(done.stdout)
        stage.fail(
            f"pytest -m gpu: {summary.get('failed', 0)} failed, {summary.get('errors', 0)} errors ({names})"
        )
        return
    if not ctx.cuda:
        stage.status = "skipped"
        stage.reason = (
            f"{NO_CUDA} ({summary.get('tests', 0)} gpu tests collected, {summary.get('skipped', 0)} skipped)"
        )
    elif summary.get("passed", 0) == 0:
        stage.fail("no gpu test passed")
    stage.targets.append(
        Target(
            "pytest -m gpu",
            "all pass",
            f"{summary.get('passed', 0)} passed, {summary.get('skipped', 0)} skipped of {summary.get('tests', 0)}",
            (summary.get("passed", 0) > 0 and not summary.get("failed")) if ctx.cuda else None,
        )
    )


def junit_summary(path: Path) -> dict:
    if not path.is_file():
        return {}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    cases, failures = [], []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}.{case.get('name', '')}".strip(".")
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
                failures.append(name)
            elif child.tag == "skipped":
                outcome = "skipped"
        cases.append({"test": name, "outcome": outcome, "seconds": float(case.get("time", 0) or 0)})
    total = sum(int(s.get("tests", 0)) for s in suites)
    return {
        "tests": total,
        "passed": sum(c["outcome"] == "passed" for c in cases),
        "skipped": sum(c["outcome"] == "skipped" for c in cases),
        "failed": sum(c["outcome"] == "failed" for c in cases),
        "errors": sum(int(s.get("errors", 0)) for s in suites),
        "failures": failures,
        "cases": cases,
    }


def stage_embed(ctx: Context, stage: StageResult, budget_s: float, args: argparse.Namespace) -> None:
    rows_file = ctx.work / "embed.jsonl"
    rows_file.unlink(missing_ok=True)
    deadline = time.monotonic() + budget_s
    base = [ctx.python, "-m", "bench.embed", "--json", str(rows_file)]
    if ctx.cuda:
        runs = [
            ("eager fp32/bf16", [*base, "--device", "cuda", "--forms", "fast", "--precisions", "bf16", "fp32",
                                 "--modes", "eager", "--batch-sizes", "256", "1", "64", "--iters", "30", "--warmup", "5"]),
            ("direct fp32 batch 64", [*base, "--device", "cuda", "--forms", "direct", "--precisions", "fp32",
                                      "--modes", "eager", "--batch-sizes", "64", "--iters", "20", "--warmup", "3"]),
            # compiled last, the targets first: it gets whatever time is left (each shape compiles anew)
            ("compiled (CUDA graphs)", [*base, "--device", "cuda", "--forms", "fast", "--precisions", "bf16", "fp32",
                                        "--modes", "compiled", "--batch-sizes", "256", "1", "64", "--iters", "30",
                                        "--warmup", "5"]),
        ]  # fmt: skip
    else:
        stage.reduced = True
        tiny = [
            "--device",
            "cpu",
            "--input-size",
            "128",
            "64",
            "--ratios",
            "8",
            "4",
            "4",
            "--iters",
            "1",
            "--warmup",
            "0",
        ]
        runs = [
            ("eager fp32 (CPU, tiny)", [*base, *tiny, "--forms", "fast", "--precisions", "fp32", "--modes", "eager",
                                        "--batch-sizes", "1", "2"]),
            ("direct fp32 (CPU, tiny)", [*base, *tiny, "--forms", "direct", "--precisions", "fp32", "--modes",
                                         "eager", "--batch-sizes", "1"]),
        ]  # fmt: skip
        stage.skip_part("bf16, compiled (CUDA graphs), batch 64 and 256, peak GPU memory", NO_CUDA)
    for what, argv in runs:
        left = deadline - time.monotonic()
        done = ctx.run(stage, argv, left)
        check_command(stage, done, f"bench.embed {what}", left)
    rows = read_json_lines(rows_file)
    stage.results["rows"] = rows
    errors = [r for r in rows if "error" in r]
    if errors:
        stage.fail(
            "; ".join(
                f"{r['form']} {r['precision']} {r['mode']} batch {r['batch']}: {r['error']}"
                for r in errors[:3]
            )
        )
    if not ctx.cuda:
        stage.reason = (
            stage.reason or f"{NO_CUDA}: a tiny CPU run checked the plumbing; its numbers mean nothing"
        )
        return
    ok = [r for r in rows if "error" not in r and r.get("form") == "fast" and r.get("precision") == "bf16"]

    def best(batch: int, key, better):
        found = [r for r in ok if r["batch"] == batch]
        return better(found, key=key) if found else None

    top = best(256, lambda r: r["images_per_s"], max)
    stage.targets.append(
        Target(
            "embedding bf16 batch 256",
            f">= {TARGET_EMBED_256:,.0f} images/s (one H100)",
            f"{top['images_per_s']:,.0f} images/s ({top['mode']})" if top else "not measured",
            top["images_per_s"] >= TARGET_EMBED_256 if top else None,
        )
    )
    one = best(1, lambda r: r["median_ms"], min)
    stage.targets.append(
        Target(
            "embedding bf16 batch 1",
            f"<= {TARGET_EMBED_1_MS} ms (one H100)",
            f"{one['median_ms']:.2f} ms ({one['mode']})" if one else "not measured",
            one["median_ms"] <= TARGET_EMBED_1_MS if one else None,
        )
    )
    fast64 = [
        r
        for r in rows
        if r.get("form") == "fast"
        and r.get("precision") == "fp32"
        and r.get("mode") == "eager"
        and r.get("batch") == 64
        and "error" not in r
    ]  # noqa: E501
    direct64 = [r for r in rows if r.get("form") == "direct" and r.get("batch") == 64 and "error" not in r]
    if fast64 and direct64:
        stage.results["fast_over_direct_fp32_batch64"] = (
            fast64[0]["images_per_s"] / direct64[0]["images_per_s"]
        )
    done_configs = {(r["precision"], r["mode"], r["batch"]) for r in rows if r.get("form") == "fast"}
    for precision in ("bf16", "fp32"):
        for mode in ("eager", "compiled"):
            for batch in (1, 64, 256):
                if (precision, mode, batch) not in done_configs:
                    stage.skip_part(
                        f"fast {precision} {mode} batch {batch}", "not reached within the stage's time budget"
                    )


def stage_train(ctx: Context, stage: StageResult, budget_s: float, args: argparse.Namespace) -> None:
    rows_file = ctx.work / "train.jsonl"
    rows_file.unlink(missing_ok=True)
    argv = [ctx.python, "-m", "bench.train", "--json", str(rows_file)]
    if ctx.cuda:
        argv += ["--device", "cuda", "--variants", "rgasc", "none", "--precisions", "bf16", "fp32",
                 "--batch", "64", "--steps", "30", "--warmup", "5"]  # fmt: skip
    else:
        stage.reduced = True
        argv += ["--device", "cpu", "--variants", "rgasc", "--precisions", "fp32", "--batch", "4", "--ids", "2",
                 "--input-size", "128", "64", "--ratios", "8", "4", "4", "--steps", "1", "--warmup", "0"]  # fmt: skip
        stage.skip_part("bf16, batch 64 at 256x128, variant none, peak GPU memory", NO_CUDA)
    done = ctx.run(stage, argv, budget_s)
    check_command(stage, done, "bench.train", budget_s)
    rows = read_json_lines(rows_file)
    stage.results["rows"] = rows
    if not ctx.cuda:
        stage.reason = (
            stage.reason or f"{NO_CUDA}: a tiny CPU run checked the plumbing; its numbers mean nothing"
        )
        return
    row = next((r for r in rows if r["variant"] == "rgasc" and r["precision"] == "bf16"), None)
    stage.targets.append(
        Target(
            "training rgasc bf16 batch 64",
            f">= {TARGET_TRAIN:,.0f} images/s (one H100)",
            f"{row['images_per_s']:,.0f} images/s" if row else "not measured",
            row["images_per_s"] >= TARGET_TRAIN if row else None,
        )
    )
    gb = row["peak_gib"] * 2**30 / 1e9 if row else math.nan
    stage.targets.append(
        Target(
            "training peak GPU memory (rgasc bf16 batch 64)",
            f"<= {TARGET_TRAIN_GB:g} GB",
            f"{gb:.2f} GB" if row else "not measured",
            gb <= TARGET_TRAIN_GB if row else None,
            "torch.cuda.max_memory_allocated (the caching allocator reserves more)",
        )
    )


def stage_training_run(ctx: Context, stage: StageResult, budget_s: float, args: argparse.Namespace) -> None:
    deadline = time.monotonic() + budget_s
    # crops cut from rendered store scenes: what the cameras see; the run's model then links the true tracks of
    # the store-video scenes into visitors over all cameras (bench.footfall_tracks, issue 9)
    store = ctx.work / "store-reid"
    preset = "store-reid" if ctx.cuda else "store-reid-small"
    workers = str(min(16, max(1, (ctx.probe.get("cpus") or 2) - 2)))
    done = ctx.run(
        stage,
        [ctx.python, "-m", "reid", "synth", "--preset", preset, "--out", str(store), "--no-progress",
         "--workers", workers],
        min(120.0, budget_s / 3),
    )  # fmt: skip
    if not check_command(stage, done, f"reid synth --preset {preset}", budget_s / 3):
        return
    # The budget: what is left minus a margin for start-up, the final checkpoint and the evaluation.
    margin = 80.0 if ctx.cuda else 40.0
    minutes = min(ctx.train_minutes, max(0.2, (deadline - time.monotonic() - margin) / 60))
    sets = [
        f"data.root={store}", f"output_dir={ctx.work / 'runs'}", "name=gpu-check", f"train.max_minutes={minutes:.2f}",
        "train.progress=false", "train.checkpoint_every=0", "train.eval_every=0", "train.log_every=10",
        f"data.workers={min(8, int(workers))}",
    ]  # fmt: skip
    if ctx.cuda:
        sets += ["train.device=cuda"]
    else:
        stage.reduced = True
        sets += ["train.device=cpu", "data.ids_per_batch=2", "data.num_instances=2", "train.epochs=1",
                 "train.max_iters_per_epoch=2", "train.log_every=1", "data.workers=0"]  # fmt: skip
        stage.skip_part("a 3-minute run at batch 64 (the CPU run does 2 steps of batch 4)", NO_CUDA)
    stage.results["train_minutes"] = round(minutes, 2)
    if minutes < ctx.train_minutes:
        stage.results["note"] = f"budget: trained {minutes:.2f} min instead of {ctx.train_minutes:g}"
    argv = [ctx.python, "-m", "reid", "train", "--config", "store-reid"]
    for item in sets:
        argv += ["--set", item]
    done = ctx.run(stage, argv, deadline - time.monotonic())
    check_command(stage, done, "reid train --config store-reid", budget_s)
    run_dir = ctx.work / "runs" / "gpu-check"
    records = read_json_lines(run_dir / "log.jsonl")
    iters = [r for r in records if r.get("kind") == "iter"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    stage.results["iterations"] = iters[-1]["step"] if iters else 0
    stage.results["epochs_done"] = len(epochs)
    stage.results["loss_curve"] = sample_curve(iters, 40)
    rates = [r["images_per_s"] for r in iters[len(iters) // 5 :] if "images_per_s" in r]
    if rates:
        stage.results["images_per_s_median"] = sorted(rates)[len(rates) // 2]
    stage.results["config"] = run_config(run_dir / "config.yaml")
    evaluation = run_dir / "eval.json"
    if evaluation.is_file():
        report = json.loads(evaluation.read_text(encoding="utf-8"))
        stage.results["evaluation"] = {
            k: v for k, v in flatten(report).items() if re.search(r"(mAP|rank|feat)", k)
        }
    elif done.returncode == 0:
        stage.fail(f"the run wrote no {evaluation.name}")
    weights = run_dir / "final.pt"
    if weights.is_file() and deadline - time.monotonic() > 10:
        rows_file = ctx.work / "footfall_tracks.jsonl"
        argv = [ctx.python, "-m", "bench.footfall_tracks", "--weights", str(weights), "--json", str(rows_file),
                "--device", "cuda" if ctx.cuda else "cpu"]  # fmt: skip
        if not ctx.cuda:
            argv += ["--scene", "store-video-small", "--seeds", "0", "--crops-per-track", "1", "--thresholds", "0.5"]  # fmt: skip
        done = ctx.run(stage, argv, deadline - time.monotonic())
        if check_command(stage, done, "bench.footfall_tracks", budget_s):
            keep = ("seed", "threshold", "rule", "tracks", "visitors", "true_visitors", "error", "precision", "recall")  # fmt: skip
            stage.results["visitors_from_true_tracks"] = [
                {k: r[k] for k in keep if k in r} for r in read_json_lines(rows_file)
            ]
    if not ctx.cuda:
        stage.reason = (
            stage.reason or f"{NO_CUDA}: a 2-step CPU run checked the plumbing; its numbers mean nothing"
        )


def run_config(path: Path) -> dict:
    """The parts of the run's resolved configuration that say what was trained (precision among them)."""
    try:
        import yaml  # on the machine already; the check itself imports only the standard library

        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:
        return {}
    keep = ("model.variant", "model.input_size", "data.ids_per_batch", "data.num_instances", "train.epochs")
    flat = flatten(config)
    return {
        k: v
        for k, v in flat.items()
        if k in keep or k.startswith("train.") and ("amp" in k or "precision" in k)
    }


def sample_curve(iters: list[dict], points: int) -> list[dict]:
    if not iters:
        return []
    step = max(1, math.ceil(len(iters) / points))
    picked = iters[::step]
    if picked[-1] is not iters[-1]:
        picked.append(iters[-1])
    return [
        {
            "step": r["step"],
            "epoch": r.get("epoch"),
            "loss": round(r["loss"], 4),
            "accuracy": round(r.get("accuracy", math.nan), 3),
        }
        for r in picked
    ]


def flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, int | float | str | bool) or value is None:
        return {prefix: value}
    return {}


def stage_service(ctx: Context, stage: StageResult, budget_s: float, args: argparse.Namespace) -> None:
    rows_file = ctx.work / "service.jsonl"
    rows_file.unlink(missing_ok=True)
    argv = [ctx.python, "-m", "bench.service", "--json", str(rows_file)]
    if ctx.cuda:
        argv += ["--device", "cuda", "--variant", "rgasc", "--input-size", "256", "128", "--batch-size", "64",
                 "--ingest-images", "2000", "--files-per-request", "16", "--clients", "8",
                 "--sizes", "2000", "100000", "--searches", "400"]  # fmt: skip
    else:
        stage.reduced = True
        argv += ["--device", "cpu", "--variant", "none", "--input-size", "64", "32", "--batch-size", "4",
                 "--ingest-images", "8", "--files-per-request", "4", "--clients", "2", "--sizes", "8",
                 "--searches", "4"]  # fmt: skip
        stage.skip_part("2,000 crops on CUDA, 100,000-item gallery, faiss GPU", NO_CUDA)
    done = ctx.run(stage, argv, budget_s)
    check_command(stage, done, "bench.service", budget_s)
    rows = read_json_lines(rows_file)
    stage.results["rows"] = rows
    ingest = next((r for r in rows if r.get("kind") == "ingest"), None)
    searches = [r for r in rows if r.get("kind") == "search"]
    stage.results["search_paths"] = sorted({r["search_path"]["path"] for r in searches})
    if not ctx.cuda:
        stage.reason = (
            stage.reason or f"{NO_CUDA}: a tiny CPU run checked the plumbing; its numbers mean nothing"
        )
        return
    stage.targets.append(
        Target(
            "service ingest overhead over pure embedding",
            f"<= {TARGET_INGEST_OVERHEAD:.0%}",
            f"{ingest['overhead']:+.1%} ({ingest['ingest_images_per_s']:,.0f} vs {ingest['pure_images_per_s']:,.0f} images/s)"
            if ingest
            else "not measured",
            ingest["overhead"] <= TARGET_INGEST_OVERHEAD if ingest else None,
        )
    )


@dataclass
class Stage:
    name: str
    run: Callable[[Context, StageResult, float, argparse.Namespace], None]
    budget_s: float  # at most this long on a GPU machine
    min_s: float  # kept free for it while earlier stages run


STAGES: list[Stage] = [
    Stage("environment", stage_environment, 90, 15),
    Stage("pytest_gpu", stage_pytest_gpu, 60, 20),
    Stage("embed", stage_embed, 100, 40),
    Stage("train", stage_train, 50, 30),
    Stage("training_run", stage_training_run, 240, 90),
    Stage("service", stage_service, 110, 60),
]
# On the CPU (tiny form) everything is small but the machine may be slow and loaded.
TINY_BUDGET_S = {
    "environment": 300,
    "pytest_gpu": 300,
    "embed": 300,
    "train": 300,
    "training_run": 600,
    "service": 600,
}


# -- the report ------------------------------------------------------------------------------------------


def write_report(out: Path, report: dict, log: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    (out / "logs.txt").write_text("".join(log), encoding="utf-8")


def _fmt(value, digits: int = 1) -> str:
    if isinstance(value, float):
        return "–" if value != value else f"{value:,.{digits}f}"
    return str(value)


def render_markdown(report: dict) -> str:
    probe = report.get("machine", {})
    gpu = probe.get("gpu") or {}
    lines = [
        f"# GPU check — {report['started']}",
        "",
        f"Machine: {gpu.get('name', 'no GPU')}"
        + (f" ({gpu.get('memory_gib')} GiB, capability {gpu.get('capability')})" if gpu else "")
        + f", {probe.get('cpus', '?')} CPU cores, Python {probe.get('python', '?')}, torch {probe.get('torch', '?')}"
        + (f" (CUDA {probe.get('torch_cuda')})" if probe.get("torch_cuda") else "")
        + f", faiss {probe.get('faiss', {}).get('version', 'missing')}"
        + (f" with {probe['faiss'].get('gpus')} GPU(s)" if probe.get("faiss", {}).get("gpus") else ""),
        "",
        f"Command: `{report['command']}`  ",
        f"Mode: {report['mode']}; total {report.get('seconds', 0):.0f} s of a {report['budget_s']:.0f} s budget.",
        "",
    ]
    if report["mode"] == "tiny":
        lines += [
            "**No CUDA: a reduced CPU run that tests the check itself; no figure below is a GPU figure.**",
            "",
        ]
    lines += ["| stage | status | seconds | reason |", "|---|---|---:|---|"]
    for s in report["stages"]:
        status = s["status"] + (" (reduced)" if s.get("reduced") else "")
        lines.append(f"| {s['name']} | {status} | {s['seconds']:.0f} | {s['reason'].replace('|', '/')} |")
    targets = [t for s in report["stages"] for t in s["targets"]]
    if targets:
        lines += ["", "## Targets", "", "| what | target | measured | met |", "|---|---|---|---|"]
        for t in targets:
            met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
            lines.append(
                f"| {t['name']} | {t['target']} | {t['value']} | {met}{' — ' + t['note'] if t['note'] else ''} |"
            )
        if gpu and "H100" not in gpu.get("name", ""):
            lines += ["", f"The targets are stated for one H100; this ran on {gpu.get('name')}."]
    for s in report["stages"]:
        lines += ["", f"## {s['name']}: {s['status']}", ""]
        if s["reason"]:
            lines += [s["reason"], ""]
        for part in s["skipped_parts"]:
            lines.append(f"- skipped: {part['what']} ({part['reason']})")
        lines += stage_tables(s)
        if s["commands"]:
            lines += ["", "Commands:"]
            for c in s["commands"]:
                rc = "stopped at its budget" if c.get("timed_out") else f"exit {c.get('returncode')}"
                lines.append(f"- `{c['command'][:300]}` ({rc}, {c.get('seconds', 0)} s)")
    return "\n".join(lines) + "\n"


def stage_tables(s: dict) -> list[str]:
    r = s["results"]
    out: list[str] = []
    if s["name"] == "embed" and r.get("rows"):
        out += [
            "| form | precision | mode | batch | images/s | median ms/batch | p90 ms | peak GiB |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in r["rows"]:
            if "error" in row:
                out.append(
                    f"| {row['form']} | {row['precision']} | {row['mode']} | {row['batch']} | failed: {row['error'][:120]} | | | |"
                )
            else:
                out.append(
                    f"| {row['form']} | {row['precision']} | {row['mode']} | {row['batch']} | {_fmt(row['images_per_s'])} "
                    f"| {_fmt(row['median_ms'], 2)} | {_fmt(row['p90_ms'], 2)} | {_fmt(row['peak_gib'], 2)} |"
                )
        if "fast_over_direct_fp32_batch64" in r:
            out += [
                "",
                f"Fast form over direct form, fp32 eager batch 64: {r['fast_over_direct_fp32_batch64']:.2f}x",
            ]
    elif s["name"] == "train" and r.get("rows"):
        out += [
            "| variant | precision | batch | images/s | median s/step | peak GiB |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for row in r["rows"]:
            out.append(
                f"| {row['variant']} | {row['precision']} | {row['batch']} | {_fmt(row['images_per_s'])} "
                f"| {_fmt(row['median_s'], 3)} | {_fmt(row['peak_gib'], 2)} |"
            )
    elif s["name"] == "training_run" and "iterations" in r:
        out.append(
            f"{r['iterations']} optimizer steps, {r.get('epochs_done', 0)} epochs in {r.get('train_minutes')} min; "
            f"median {_fmt(r.get('images_per_s_median', math.nan))} images/s (stops at the budget or at the "
            f"config's last epoch). {r.get('note', '')}"
        )
        if r.get("config"):
            out.append("Configuration: " + ", ".join(f"{k}={v}" for k, v in r["config"].items()))
        if r.get("evaluation"):
            out += ["", "| metric | value |", "|---|---:|"]
            out += [f"| {k} | {_fmt(v, 4)} |" for k, v in r["evaluation"].items()]
        if r.get("visitors_from_true_tracks"):
            out += [
                "",
                "Visitors over all cameras from the true tracks of store-video (bench.footfall_tracks):",
                "",
                "| seed | threshold | rule | tracks | visitors (true) | error | pairwise precision | pairwise recall |",
                "|---:|---:|---|---:|---:|---:|---:|---:|",
            ]
            out += [
                f"| {v['seed']} | {v['threshold']:g} | {v.get('rule', '')} | {v['tracks']} | {v['visitors']} "
                f"({v['true_visitors']}) "
                f"| {100 * v['error']:+.1f}% | {v['precision']:.3f} | {v['recall']:.3f} |"
                for v in r["visitors_from_true_tracks"]
            ]
        if r.get("loss_curve"):
            curve = r["loss_curve"]
            out += [
                "",
                "Loss curve (step: loss): " + ", ".join(f"{p['step']}: {p['loss']:.3f}" for p in curve),
            ]
    elif s["name"] == "service" and r.get("rows"):
        for row in r["rows"]:
            if row["kind"] == "ingest":
                out.append(
                    f"- ingest {row['images']} images over HTTP ({row['clients']} clients x {row['files_per_request']}"
                    f"/request, batch {row['batch_size']}): {_fmt(row['ingest_images_per_s'])} images/s vs "
                    f"{_fmt(row['pure_images_per_s'])} pure embedding (overhead {row['overhead']:+.1%})"
                )
            else:
                out.append(
                    f"- gallery {row['gallery']:,}: start-up {row['startup_s']:.1f} s; search from an item p50 "
                    f"{row['item_p50_ms']:.1f} ms p99 {row['item_p99_ms']:.1f} ms; from a photo p50 "
                    f"{row['photo_p50_ms']:.1f} ms p99 {row['photo_p99_ms']:.1f} ms ({row['clients']} clients, "
                    f"{row['index_kind']}, search path: {row['search_path']['path']})"
                )
    elif s["name"] == "pytest_gpu" and r.get("cases"):
        out += [f"- {c['outcome']}: {c['test']} ({c['seconds']:.1f} s)" for c in r["cases"]]
    elif s["name"] == "environment" and r.get("kit"):
        out.append(f"Kit installed into {r['kit']['target']}: {', '.join(r['kit']['wheels'])}")
    return out


# -- main ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [s.name for s in STAGES]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="report folder (report.md, report.json, logs.txt)"
    )
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument(
        "--budget", type=float, default=480.0, help="seconds for the whole check (default 480)"
    )
    parser.add_argument(
        "--train-minutes", type=float, default=3.0, help="the training run's length (default 3)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=names, help="run only these stages (environment always runs)"
    )
    parser.add_argument("--skip", nargs="+", choices=names, default=[], help="leave these stages out")
    parser.add_argument("--kit", type=Path, help="device kit folder (make devicekit): installed first")
    parser.add_argument("--kit-target", type=Path, default=Path(tempfile.gettempdir()) / "reid-devicekit",
                        help="where the kit is installed (default: a folder under the temporary directory)")  # fmt: skip
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary folder)")
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter for the stages (default: this one)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    work = args.work or Path(tempfile.mkdtemp(prefix="reid-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # The check is not the project's CI: under CI=1 a test whose tools are missing (playwright, cv2: not on
    # the GPU image, not in the kit) fails its collection instead of skipping, and pytest -m gpu would fail.
    env.pop("CI", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the stages see no GPU, as on a CPU machine
    ctx = Context(out=args.out, work=work, env=env, python=args.python, cuda=False, tiny=True,
                  train_minutes=args.train_minutes)  # fmt: skip
    selected = [s for s in STAGES if (not args.only or s.name in args.only or s.name == "environment")]
    selected = [s for s in selected if s.name not in args.skip or s.name == "environment"]
    report = {
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "-m", "bench.gpu_check", *(sys.argv[1:] if argv is None else argv)]),
        "host": platform.node(),
        "mode": "pending",
        "budget_s": args.budget,
        "machine": {},
        "stages": [],
    }

    def on_term(signum, frame):  # stopped from outside: end the running command, keep the report
        if ctx.current is not None:
            stop_group(ctx.current)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:  # run in-process (tests), the caller's SIGTERM handler comes back afterwards
        deadline = started + args.budget
        if args.device == "cpu" and args.budget == 480.0:  # the CPU form: slow on a small machine, not budgeted
            deadline = started + sum(TINY_BUDGET_S.get(s.name, s.budget_s) for s in selected)
        for position, stage in enumerate(selected):
            result = StageResult(stage.name)
            report["stages"].append(asdict(result))
            reserve = sum(s.min_s for s in selected[position + 1 :])
            left = deadline - time.monotonic()
            # Before the environment stage CUDA is unknown: the GPU budget, unless --device cpu said so.
            known_cpu = args.device == "cpu" or (stage.name != "environment" and not ctx.cuda)
            nominal = TINY_BUDGET_S.get(stage.name, stage.budget_s) if known_cpu else stage.budget_s
            budget = min(nominal, left - reserve)
            if stage.name == "environment":
                budget = max(budget, min(nominal, 15.0))  # the kit and the probe come first, whatever the budget
            result.budget_s = round(budget, 1)
            begun = time.monotonic()
            if budget < min(5.0, nominal):
                result.status, result.reason = "skipped", f"the check's budget of {args.budget:.0f} s was spent"
            else:
                try:
                    stage.run(ctx, result, budget, args)
                except StageStopped as exc:
                    result.fail(str(exc))
                except Exception as exc:  # a bug in the check itself must not stop the next stage
                    result.fail(f"the check failed inside this stage: {type(exc).__name__}: {exc}")
            result.seconds = round(time.monotonic() - begun, 1)
            if stage.name == "environment":
                ctx.cuda = bool(ctx.probe.get("cuda")) and args.device != "cpu"
                ctx.tiny = not ctx.cuda
                report["mode"] = "full" if ctx.cuda else "tiny"
                report["machine"] = {k: v for k, v in ctx.probe.items() if k != "modules"}
                if not ctx.cuda and args.budget == 480.0:
                    # the CPU form is slow on a small machine, and not what the budget is for
                    deadline = time.monotonic() + sum(TINY_BUDGET_S.get(s.name, s.budget_s) for s in selected)
            report["stages"][-1] = asdict(result)
            report["seconds"] = round(time.monotonic() - started, 1)
            write_report(args.out, report, ctx.log)
            print(
                f"[gpu_check] {stage.name}: {result.status} in {result.seconds:.0f} s {result.reason}", flush=True
            )
        for stage in STAGES:
            if stage not in selected:
                report["stages"].append(
                    asdict(StageResult(stage.name, "skipped", "not selected (--only / --skip)"))
                )
        order = [s.name for s in STAGES]
        report["stages"].sort(key=lambda s: order.index(s["name"]))
        report["seconds"] = round(time.monotonic() - started, 1)
        report["failed"] = [s["name"] for s in report["stages"] if s["status"] in ("failed", "partial")]
        write_report(args.out, report, ctx.log)
        print(render_markdown(report))
        return 1 if report["failed"] else 0
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
