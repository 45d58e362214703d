# All set-up is done by these targets; each is safe to run twice.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The pinned torch pair is served from the machine's package cache; other versions mean GB downloads.
TORCH  := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: venv browser postgres test lint demo clean-venv devicekit gpu-check

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py service/vectorstore/_int8scan.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' $(TORCH)
	touch $(STAMP)

# The browser tests drive Debian's chromium; install it when missing (needs root or sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  echo "installing Debian's chromium for the browser tests"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	  || echo "could not install chromium: the browser tests will be skipped (they fail under CI=1)"; }

# The PostgreSQL tests start a throwaway PostgreSQL 15 cluster (tests/postgres.py); install it when missing.
PG_BIN ?= /usr/lib/postgresql/15/bin
postgres:
	@test -x $(PG_BIN)/initdb || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  echo "installing Debian's postgresql-15 for the PostgreSQL tests"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql-15 >/dev/null \
	  || echo "could not install postgresql-15: the PostgreSQL tests will be skipped (they fail under CI=1)"; }

test: venv browser postgres
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The main job: synthetic store -> short training run -> service -> ingest -> search -> footfall; keeps serving.
demo: venv
	$(BIN)/reid demo $(DEMO_ARGS)

# Wheels for the lent GPU machine (CPython 3.12, manylinux x86-64): what the GPU check needs that its image
# lacks, never torch. Needs a package registry; see docs/gpu.md.
KIT_PYTHON ?= 3.12
devicekit: venv
	$(BIN)/python -m bench.devicekit --out .whl --python-version $(KIT_PYTHON)

# The one-shot GPU check (docs/gpu.md): report under $(GPU_CHECK_OUT). On the GPU machine the image's python3
# runs it (no venv there), with the kit from `make devicekit` when .whl/ holds one; without CUDA it runs a
# reduced CPU form that only tests the check.
GPU_CHECK_OUT ?= gpu-check
GPU_PYTHON ?= $(shell test -x $(BIN)/python && echo $(BIN)/python || echo $(PYTHON))
gpu-check:
	$(GPU_PYTHON) -m bench.gpu_check --out $(GPU_CHECK_OUT) $(if $(wildcard .whl/*.whl),--kit .whl) $(GPU_CHECK_ARGS)

lint: venv
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
