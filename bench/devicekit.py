"""The device kit: wheels of everything the GPU check needs that the lent GPU machine's image lacks.

    python -m bench.devicekit                               # .whl/ for the device machine (CPython 3.12)
    python -m bench.devicekit --python-version 3.11 --out DIR --with-image-packages   # a stand-in, here

The GPU machine has its own CUDA build of torch and many packages (IMAGE_PACKAGES, as last read from the
device tool's package list) but no network. The kit holds the rest of the project's runtime dependencies
(pyproject's [project].dependencies), resolved for the machine's Python and platform (manylinux, x86-64)
with pip, at the versions installed here when they are (so the machine runs what the tests ran here),
and never torch or anything CUDA. `python -m bench.gpu_check --kit .whl` installs it there with
`pip install --no-index --no-deps --target` into a folder of its own that goes first on PYTHONPATH,
so the machine's torch is never touched. The kit must fit the device tool's carry limit (60 MiB here).

--with-image-packages also gathers the image's packages that the check imports (numpy, pillow, pytest,
...): with them a virtual environment holding only torch/torchvision plus the kit stands in for the
machine (tests/bench/test_devicekit.py does that, for this machine's Python).

Needs pip >= 23 and a package registry; imports only the standard library (the check imports
CHECK_MODULES from here before the kit is installed).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MIB = 60.0

# The lent GPU machine's image ("cuda", nvidia-h200), as the device tool's package list read it on
# 2026-11-17: python3 is CPython 3.12 with torch 2.11 / torchvision 0.26 (CUDA 13). Normalised names.
IMAGE_PACKAGES = frozenset(
    """
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
    certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
    cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
    flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
    huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
    jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
    linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
    mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
    numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
    nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
    nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
    onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
    orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
    propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
    pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
    pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
    scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
    sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
    tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
    torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
    wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
    """.split()
)

# Never in the kit: the machine's own CUDA builds (the kit goes first on PYTHONPATH and would shadow them).
NEVER = frozenset({"torch", "torchvision", "torchaudio", "triton", "numpy"})

# Carried even though the image has them: pure Python, backward compatible, and the kit's packages need
# recent releases (pydantic follows typing-extensions closely); an older copy there would stop the service.
ALWAYS_CARRY = frozenset({"typing-extensions"})

# Import name -> distribution, where they differ (the rest: lower case, "_" -> "-").
MODULE_DISTRIBUTIONS = {
    "PIL": "pillow",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "cv2": "opencv-python-headless",
    "faiss": "faiss-cpu",
    "multipart": "python-multipart",
    "python_multipart": "python-multipart",
    "dotenv": "python-dotenv",
    "google": "protobuf",
}

# Third-party modules the GPU check imports, directly or through what it runs (bench.embed, bench.train,
# bench.service, bench.footfall_tracks, `reid synth` / `reid train`, `pytest -m gpu`); the check's first stage imports each one
# on the machine. tests/bench/test_devicekit.py keeps this list complete by walking the imports.
CHECK_MODULES = [
    "torch",
    "torchvision",
    "numpy",
    "PIL",
    "yaml",
    "tqdm",
    "scipy",
    "h5py",
    "httpx",
    "prometheus_client",
    "pytest",
    "packaging",
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic_settings",
    "sqlalchemy",
    "alembic",
    "uvicorn",
    "python_multipart",
    "faiss",
    "onnx",
    "onnxruntime",
    "matplotlib",
]

# Imported only inside functions that the check never calls (video ingest: `reid ingest-video`, `reid synth
# --preset store-video`, tracking evaluation), so neither the kit nor the probe needs them; the video extra
# would add 36 MiB (PyAV through supervision). tests/bench/test_devicekit.py checks that importing what
# the check runs does not import them.
NOT_RUN_BY_THE_CHECK = {
    "cv2": "video decoding and crops; the store-video preset",
    "motmetrics": "video tracking evaluation",
    "pymilvus": "the Milvus vector store (REID_VECTOR_STORE=milvus); the check's service runs on faiss",
    "supervision": "video tracking",
}

PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_of(module: str) -> str:
    return normalise(MODULE_DISTRIBUTIONS.get(module, module))


# Optional extras whose packages the check imports too (`reid` imports every subcommand's module).
KIT_EXTRAS = ("onnx",)


def project_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """pyproject's runtime dependencies, and those of KIT_EXTRAS, as requirement strings."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    return list(project["dependencies"]) + [r for name in KIT_EXTRAS for r in extras.get(name, [])]


def requirement_name(requirement: str) -> str:
    return normalise(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])


def kit_requirements(with_image_packages: bool = False) -> list[str]:
    """What to resolve: the project's dependencies the image lacks (plus, for a stand-in, the image's ones
    the check imports), each pinned to the version installed here when there is one."""
    wanted = [r for r in project_requirements() if requirement_name(r) not in NEVER]
    if not with_image_packages:
        wanted = [r for r in wanted if requirement_name(r) not in IMAGE_PACKAGES]
    else:
        names = {requirement_name(r) for r in wanted}
        wanted += [distribution_of(m) for m in CHECK_MODULES if distribution_of(m) not in names | NEVER]
    pinned = []
    for requirement in wanted:
        name = requirement_name(requirement)
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(requirement)
    return sorted(set(pinned))


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"pip failed: {' '.join(command)}\n{done.stderr[-3000:]}")


def resolve(requirements: list[str], python_version: str) -> list[tuple[str, str]]:
    """(name, version) of every wheel those requirements need on the target Python and platform."""
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        _pip(
            "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
            "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
            *platform_args, "--target", str(Path(tmp) / "target"), *requirements,
        )  # fmt: skip
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    return [(normalise(i["metadata"]["name"]), i["metadata"]["version"]) for i in installs]


def build(out: Path, python_version: str, with_image_packages: bool = False) -> dict:
    requirements = kit_requirements(with_image_packages)
    resolved = resolve(requirements, python_version)
    keep = [
        (name, version)
        for name, version in resolved
        if name not in NEVER
        and not name.startswith("nvidia-")
        and (with_image_packages or name not in IMAGE_PACKAGES or name in ALWAYS_CARRY)
    ]
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):  # one version of each: two would stop the install there
        old.unlink()
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    _pip(
        "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
        "--implementation", "cp", *platform_args, "-d", str(out), *[f"{n}=={v}" for n, v in keep],
    )  # fmt: skip
    wheels = sorted(out.glob("*.whl"))
    size_mib = sum(w.stat().st_size for w in wheels) / 2**20
    manifest = {
        "python_version": python_version,
        "platforms": PLATFORMS,
        "with_image_packages": with_image_packages,
        "requirements": requirements,
        "packages": [f"{n}=={v}" for n, v in keep],
        "left_to_the_machine": sorted(f"{n}=={v}" for n, v in resolved if (n, v) not in keep),
        "wheels": [w.name for w in wheels],
        "size_mib": round(size_mib, 1),
    }
    (out / "kit.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / ".whl", help="kit folder (default .whl, git-ignored)"
    )
    parser.add_argument("--python-version", default="3.12", help="the machine's Python (default 3.12)")
    parser.add_argument(
        "--with-image-packages", action="store_true", help="also the image's packages the check imports"
    )
    parser.add_argument("--limit-mib", type=float, default=LIMIT_MIB, help="largest kit allowed (default 60)")
    args = parser.parse_args(argv)
    manifest = build(args.out, args.python_version, args.with_image_packages)
    print(f"device kit in {args.out}: {len(manifest['wheels'])} wheels, {manifest['size_mib']} MiB")
    for line in manifest["packages"]:
        print(f"  {line}")
    if manifest["left_to_the_machine"]:
        print("left to the machine's own packages: " + ", ".join(manifest["left_to_the_machine"]))
    if manifest["size_mib"] > args.limit_mib:
        print(
            f"error: the kit is {manifest['size_mib']} MiB, over the {args.limit_mib:g} MiB limit",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
