# All set-up is done by these targets; each is safe to run twice.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The pinned torch pair is served from the machine's package cache; other versions mean GB downloads.
TORCH  := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: venv test lint demo clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' $(TORCH)
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
