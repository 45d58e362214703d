"""The GPU check (bench/gpu_check.py) without a GPU: every stage is recorded with its status and reason,
one stage failing or running out of time does not stop the next, and the report has its structure."""

from __future__ import annotations

import json
import signal
import sys

import pytest

from bench import gpu_check


def _stand_in_stages(monkeypatch, tmp_path):
    """Stages that behave like the real ones (commands under a budget) but take a second."""

    def environment(ctx, stage, budget, args):
        ctx.probe = {"cuda": False, "python": "3.x", "cpus": 2, "torch": "stand-in"}
        stage.skip_part("GPU", gpu_check.NO_CUDA)

    def crashes(ctx, stage, budget, args):
        raise RuntimeError("a bug in the stage")

    def command_fails(ctx, stage, budget, args):
        done = ctx.run(
            stage, [sys.executable, "-c", "print('working'); raise ValueError('bad input')"], budget
        )
        gpu_check.check_command(stage, done, "the failing command", budget)

    def runs_too_long(ctx, stage, budget, args):
        done = ctx.run(stage, [sys.executable, "-c", "import time; time.sleep(60)"], budget)
        gpu_check.check_command(stage, done, "the slow command", budget)

    def passes(ctx, stage, budget, args):
        marker = tmp_path / "ran"
        done = ctx.run(stage, [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('yes')"], budget)
        gpu_check.check_command(stage, done, "the good command", budget)
        stage.results["ran"] = marker.read_text()
        stage.targets.append(gpu_check.Target("a figure", ">= 1", "2", True))

    stages = [
        gpu_check.Stage("environment", environment, 10, 1),
        gpu_check.Stage("crashes", crashes, 10, 1),
        gpu_check.Stage("command_fails", command_fails, 10, 1),
        gpu_check.Stage("runs_too_long", runs_too_long, 2, 1),
        gpu_check.Stage("passes", passes, 10, 1),
    ]
    monkeypatch.setattr(gpu_check, "STAGES", stages)
    monkeypatch.setattr(gpu_check, "TINY_BUDGET_S", {"runs_too_long": 2})


def test_a_failing_stage_does_not_stop_the_next(monkeypatch, tmp_path):
    _stand_in_stages(monkeypatch, tmp_path)
    out = tmp_path / "report"
    before = signal.getsignal(signal.SIGTERM)
    code = gpu_check.main(
        ["--out", str(out), "--device", "cpu", "--work", str(tmp_path / "work"), "--budget", "60"]
    )
    assert code == 1
    assert signal.getsignal(signal.SIGTERM) is before  # run in-process, the caller's handler comes back
    report = json.loads((out / "report.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    assert [s["name"] for s in report["stages"]] == [
        "environment",
        "crashes",
        "command_fails",
        "runs_too_long",
        "passes",
    ]
    assert report["mode"] == "tiny"
    assert (
        stages["crashes"]["status"] == "failed"
        and "RuntimeError: a bug in the stage" in stages["crashes"]["reason"]
    )
    assert stages["command_fails"]["status"] == "failed"
    assert "ValueError: bad input" in stages["command_fails"]["reason"]
    assert stages["runs_too_long"]["status"] == "partial"
    assert "time budget of 2 s" in stages["runs_too_long"]["reason"]
    assert stages["runs_too_long"]["seconds"] < 30  # stopped, not waited for
    assert stages["passes"]["status"] == "passed" and stages["passes"]["results"]["ran"] == "yes"
    assert report["failed"] == ["crashes", "command_fails", "runs_too_long"]
    markdown = (out / "report.md").read_text()
    assert "| runs_too_long | partial |" in markdown and "| a figure | >= 1 | 2 | yes |" in markdown
    assert "No CUDA" in markdown
    logs = (out / "logs.txt").read_text()
    assert "working" in logs and "stopped at its time budget" in logs
    assert sorted(p.name for p in out.iterdir()) == [
        "logs.txt",
        "report.json",
        "report.md",
    ]  # the tool brings back 8


def test_only_and_a_spent_budget_are_reported_as_skips(monkeypatch, tmp_path):
    _stand_in_stages(monkeypatch, tmp_path)
    out = tmp_path / "report"
    code = gpu_check.main(
        ["--out", str(out), "--device", "cpu", "--work", str(tmp_path / "work"), "--only", "passes"]
    )
    assert code == 0
    stages = {s["name"]: s for s in json.loads((out / "report.json").read_text())["stages"]}
    assert stages["environment"]["status"] == "passed"  # always runs: it installs the kit
    assert stages["crashes"]["status"] == "skipped" and "not selected" in stages["crashes"]["reason"]
    assert stages["passes"]["status"] == "passed"

    code = gpu_check.main(
        ["--out", str(out), "--device", "cpu", "--work", str(tmp_path / "work"), "--budget", "3"]
    )
    stages = {s["name"]: s for s in json.loads((out / "report.json").read_text())["stages"]}
    assert stages["passes"]["status"] == "skipped" and "budget of 3 s was spent" in stages["passes"]["reason"]


def test_targets_are_judged_from_the_rows(tmp_path):
    stage = gpu_check.StageResult("embed")
    ctx = gpu_check.Context(tmp_path, tmp_path, {}, sys.executable, True, False, 3.0)
    rows = [
        {
            "form": "fast",
            "precision": "bf16",
            "mode": "eager",
            "batch": 256,
            "images_per_s": 15000.0,
            "median_ms": 17.0,
        },
        {
            "form": "fast",
            "precision": "bf16",
            "mode": "compiled",
            "batch": 256,
            "images_per_s": 21000.0,
            "median_ms": 12.2,
        },
        {
            "form": "fast",
            "precision": "bf16",
            "mode": "eager",
            "batch": 1,
            "images_per_s": 400.0,
            "median_ms": 2.5,
        },
    ]
    (tmp_path / "embed.jsonl").write_text("")

    def fake_run(stage_, argv, budget):
        (tmp_path / "embed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        import subprocess

        return subprocess.CompletedProcess(argv, 0, "", "")

    ctx.run = fake_run
    gpu_check.stage_embed(ctx, stage, 60, None)
    targets = {t.name: t for t in stage.targets}
    assert (
        targets["embedding bf16 batch 256"].met is True
        and "compiled" in targets["embedding bf16 batch 256"].value
    )
    assert (
        targets["embedding bf16 batch 1"].met is False
        and "2.50 ms" in targets["embedding bf16 batch 1"].value
    )
    skipped = {p["what"] for p in stage.skipped_parts}
    assert "fast bf16 compiled batch 1" in skipped and "fast bf16 eager batch 256" not in skipped


@pytest.mark.slow
def test_the_real_check_runs_end_to_end_on_the_cpu(tmp_path):
    """Every real stage in its reduced CPU form: CUDA parts skipped with "no CUDA", the rest measured."""
    out = tmp_path / "report"
    code = gpu_check.main(["--out", str(out), "--device", "cpu", "--work", str(tmp_path / "work")])
    report = json.loads((out / "report.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    assert code == 0, {n: (s["status"], s["reason"]) for n, s in stages.items()}
    assert list(stages) == ["environment", "pytest_gpu", "embed", "train", "training_run", "service"]
    assert stages["pytest_gpu"]["status"] == "skipped" and stages["pytest_gpu"]["reason"].startswith(
        "no CUDA"
    )
    for name in ("embed", "train", "training_run", "service"):
        assert stages[name]["status"] == "passed" and stages[name]["reduced"]
        assert stages[name]["reason"].startswith("no CUDA")
        assert any(p["reason"] == "no CUDA" for p in stages[name]["skipped_parts"])
    assert {r["form"] for r in stages["embed"]["results"]["rows"]} == {"fast", "direct"}
    assert stages["train"]["results"]["rows"][0]["variant"] == "rgasc"
    run = stages["training_run"]["results"]
    assert run["iterations"] == 2 and len(run["loss_curve"]) == 2 and "mAP" in " ".join(run["evaluation"])
    rules = [(v["rule"], v["true_visitors"]) for v in run["visitors_from_true_tracks"]]
    assert rules == [("recluster", 4), ("online", 4)]  # store-video-small, seed 0
    paths = stages["service"]["results"]["search_paths"]
    assert paths and not any("GPU" in p or p == "unknown" for p in paths), paths
    assert {r["kind"] for r in stages["service"]["results"]["rows"]} == {"ingest", "search"}
    assert all(t["met"] is None for s in report["stages"] for t in s["targets"])  # nothing judged on a CPU


def test_the_cuda_branches_judge_and_render_canned_results(tmp_path):
    """The CUDA-only code of every stage, fed canned outputs (none of it can run here): targets judged,
    the report rendered, nothing missing a key."""
    import subprocess

    ctx = gpu_check.Context(tmp_path, tmp_path, {}, sys.executable, True, False, 3.0)
    ctx.probe = {"cuda": True, "cpus": 16}
    outputs = {
        "bench.train": ("train.jsonl", [
            {"variant": "rgasc", "precision": "bf16", "batch": 64, "images_per_s": 2600.0, "median_s": 0.0246, "peak_gib": 8.2},
            {"variant": "none", "precision": "bf16", "batch": 64, "images_per_s": 5200.0, "median_s": 0.0123, "peak_gib": 4.0},
        ]),
        "bench.footfall_tracks": ("footfall_tracks.jsonl", [
            {"scene": "store-video", "model": "final.pt", "seed": 0, "threshold": 0.6, "rule": "online", "visitors": 31,
             "true_visitors": 30, "tracks": 77, "error": 0.0333, "precision": 0.91, "recall": 0.88},
        ]),
        "bench.service": ("service.jsonl", [
            {"kind": "ingest", "images": 2000, "clients": 8, "files_per_request": 16, "batch_size": 64,
             "ingest_images_per_s": 1800.0, "pure_images_per_s": 2100.0, "overhead": 0.1667},
            {"kind": "search", "gallery": 2000, "startup_s": 3.0, "clients": 8, "index_kind": "flat",
             "item_p50_ms": 2.0, "item_p99_ms": 5.0, "photo_p50_ms": 6.0, "photo_p99_ms": 9.0,
             "search_path": {"path": "faiss GPU"}},
        ]),
    }  # fmt: skip

    def fake_run(stage, argv, budget):
        module = argv[2] if argv[1] == "-m" else ""
        if module in outputs:
            name, rows = outputs[module]
            (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        if argv[2:4] == ["reid", "train"]:
            run_dir = tmp_path / "runs" / "gpu-check"
            run_dir.mkdir(parents=True)
            log = [{"kind": "iter", "step": 10 * i, "epoch": i // 6, "loss": 9.0 - i * 0.1, "accuracy": 0.01 * i,
                    "images_per_s": 3000.0} for i in range(1, 61)]  # fmt: skip
            log.append({"kind": "epoch", "step": 600, "epoch": 9})
            (run_dir / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
            (run_dir / "eval.json").write_text(
                json.dumps({"feat_": {"mAP": 0.61, "rank1": 0.8}, "feat": {"mAP": 0.6}})
            )
            (run_dir / "config.yaml").write_text(
                "model:\n  variant: rgasc\ntrain:\n  amp: true\n  epochs: 60\n"
            )
            (run_dir / "final.pt").write_bytes(b"weights")
        return subprocess.CompletedProcess(argv, 0, "", "")

    ctx.run = fake_run
    report = {"started": "now", "command": "python -m bench.gpu_check", "mode": "full", "budget_s": 480.0,
              "machine": {"gpu": {"name": "NVIDIA H200", "memory_gib": 139.8, "capability": "9.0"}, "cpus": 16,
                          "python": "3.12.3", "torch": "2.11.0", "torch_cuda": "13.0", "faiss": {"version": "1.15.1"}},
              "stages": []}  # fmt: skip
    for name, run in (("train", gpu_check.stage_train), ("training_run", gpu_check.stage_training_run),
                      ("service", gpu_check.stage_service)):  # fmt: skip
        stage = gpu_check.StageResult(name)
        run(ctx, stage, 300.0, None)
        assert stage.status == "passed", stage.reason
        report["stages"].append(gpu_check.asdict(stage))
    targets = {t["name"]: t for s in report["stages"] for t in s["targets"]}
    assert targets["training rgasc bf16 batch 64"]["met"] is True
    assert targets["training peak GPU memory (rgasc bf16 batch 64)"]["met"] is False  # 8.2 GiB = 8.8 GB
    assert targets["service ingest overhead over pure embedding"]["met"] is False
    run = report["stages"][1]["results"]
    assert (
        run["evaluation"]["feat_.mAP"] == 0.61
        and run["iterations"] == 600
        and run["config"]["train.amp"] is True
    )
    markdown = gpu_check.render_markdown(report)
    assert "this ran on NVIDIA H200" in markdown and "search path: faiss GPU" in markdown
    assert "| feat_.mAP | 0.6100 |" in markdown and "Configuration: " in markdown
    assert run["visitors_from_true_tracks"][0]["visitors"] == 31
    assert "| 0 | 0.6 | online | 77 | 31 (30) | +3.3% | 0.910 | 0.880 |" in markdown
