"""The device kit (bench/devicekit.py): its import list covers what the GPU check imports, it never carries
torch, and (slow) a virtual environment holding only torch/torchvision plus the kit runs the check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv

import pytest

import reid.cli
from bench import devicekit, gpu_check
from tests.bench.imports import ROOT, third_party_imports


def check_entry_modules() -> list[str]:
    """What the check imports or runs: its stages' modules, the `reid` CLI, the migrations the service runs,
    and every test module (pytest imports them all to collect `-m gpu`)."""
    entries = ["bench.gpu_check", "bench.embed", "bench.train", "bench.service", "bench.footfall_tracks"]
    entries += ["reid.__main__", "reid.cli"]
    entries += list(reid.cli.COMMAND_MODULES)
    entries += ["migrations.env"] + [
        f"migrations.versions.{p.stem}" for p in (ROOT / "migrations" / "versions").glob("*.py")
    ]
    entries += [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "tests").rglob("*.py")]
    return entries


def test_import_list_covers_everything_the_check_imports():
    used = third_party_imports(check_entry_modules(), [gpu_check.PROBE])
    assert {"torch", "fastapi", "sqlalchemy", "faiss", "pytest"} <= set(used)  # the walk found the stages
    known = set(devicekit.CHECK_MODULES) | set(devicekit.NOT_RUN_BY_THE_CHECK)
    missing = {module: sorted(users)[:3] for module, users in used.items() if module not in known}
    assert not missing, (
        f"add these to bench.devicekit.CHECK_MODULES (and the kit if the image lacks them): {missing}"
    )


def test_what_the_check_leaves_out_is_not_imported_when_its_commands_start():
    """NOT_RUN_BY_THE_CHECK is only imported inside functions: starting the check's commands (the bench
    modules, the `reid` command with every subcommand) imports none of it."""
    script = (
        "import sys, json\n"
        "import bench.gpu_check, bench.embed, bench.train, bench.service, bench.footfall_tracks, reid.cli\n"
        "reid.cli.build_parser()\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert {"fastapi", "torch", "sqlalchemy"} <= loaded  # the script did import the check's modules
    assert not loaded & set(devicekit.NOT_RUN_BY_THE_CHECK)


def test_import_walk_sees_function_level_and_skips_optional_imports():
    source = (
        "import os\n"
        "def f():\n    import fastapi\n"
        "try:\n    import onnxruntime\nexcept ImportError:\n    onnxruntime = None\n"
    )
    from tests.bench.imports import imports_of_source

    found = imports_of_source(source, "bench.example")
    assert "fastapi" in found and "os" in found and "onnxruntime" not in found


def test_every_module_the_check_needs_is_in_the_image_or_the_kit():
    kit = {devicekit.requirement_name(r) for r in devicekit.kit_requirements()}
    for module in devicekit.CHECK_MODULES:
        dist = devicekit.distribution_of(module)
        assert dist in devicekit.IMAGE_PACKAGES or dist in kit, (
            f"{module} ({dist}) is neither on the machine nor in the kit"
        )


def test_the_kit_never_carries_torch_and_pins_what_was_tested_here():
    import importlib.metadata

    for with_image in (False, True):
        names = {devicekit.requirement_name(r) for r in devicekit.kit_requirements(with_image)}
        assert not names & {"torch", "torchvision", "numpy", "triton"}
    requirements = devicekit.kit_requirements()
    assert {"fastapi", "sqlalchemy", "faiss-cpu", "pydantic-settings"} <= {
        devicekit.requirement_name(r) for r in requirements
    }
    for requirement in requirements:
        name = devicekit.requirement_name(requirement)
        assert requirement == f"{name}=={importlib.metadata.version(name)}"


def test_the_check_refuses_a_kit_that_holds_torch(tmp_path):
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "torch-2.11.0-cp312-cp312-manylinux_2_28_x86_64.whl").write_bytes(b"not a wheel")
    stage = gpu_check.StageResult("environment")
    ctx = gpu_check.Context(tmp_path, tmp_path, dict(os.environ), sys.executable, False, True, 3.0)
    with pytest.raises(gpu_check.StageStopped, match="torch"):
        gpu_check.install_kit(ctx, stage, kit, tmp_path / "site", 30)
    assert stage.commands == []  # pip never ran


@pytest.mark.slow
def test_a_venv_with_only_torch_and_the_kit_runs_the_check(tmp_path):
    """Build the kit for this machine's Python (plus the image's packages the check imports, standing in for
    the GPU machine's image), make a venv holding torch/torchvision only, and run the check with --kit."""
    kit = tmp_path / "kit"
    manifest = devicekit.build(
        kit, f"{sys.version_info.major}.{sys.version_info.minor}", with_image_packages=True
    )
    assert manifest["wheels"] and not any(
        w.startswith(("torch-", "torchvision-")) for w in manifest["wheels"]
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    import torch
    import torchvision

    pins = [
        f"torch=={torch.__version__.split('+')[0]}",
        f"torchvision=={torchvision.__version__.split('+')[0]}",
    ]
    subprocess.run([python, "-m", "pip", "install", "-q", *pins], check=True, timeout=900)
    out = tmp_path / "report"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [python, "-m", "bench.gpu_check", "--out", str(out), "--device", "cpu", "--kit", str(kit),
         "--kit-target", str(tmp_path / "site"), "--skip", "train", "training_run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["environment"]["status"] == "passed", stages["environment"]["reason"]
    environment = stages["environment"]["results"]
    assert environment["torch_untouched"] and not environment["probe"]["torch_file"].startswith(
        str(tmp_path / "site")
    )
    assert all(m["ok"] for m in environment["probe"]["modules"].values())
    assert stages["pytest_gpu"]["status"] == "skipped" and "no CUDA" in stages["pytest_gpu"]["reason"]
    assert stages["embed"]["status"] == "passed" and stages["service"]["status"] == "passed", done.stdout[
        -3000:
    ]
    paths = stages["service"]["results"]["search_paths"]
    assert paths and not any("GPU" in p or p == "unknown" for p in paths), paths
