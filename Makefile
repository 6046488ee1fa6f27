# actionrec: `make help` lists the targets.
PYTHON ?= python3
# One environment per interpreter: `PYTHON=python3.12 make train` builds and uses .venv-python3.12
# instead of running the .venv that another Python made.
VENV ?= $(if $(filter python3,$(PYTHON)),.venv,.venv-$(notdir $(PYTHON)))
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra arguments for train/eval, e.g. `make train ARGS="trainer.max_epochs=1"`.
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install data train eval test test-all lint format bench bench-env clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py src/actionrec/data/_jpeg.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## Create .venv and install actionrec with its dev tools

data: $(STAMP)  ## Render the embedded toy dataset into data/toy (seconds, once)
	$(BIN)/python scripts/make_toy_dataset.py --root data/toy

train: data  ## Train the default model on the toy dataset (a few minutes on a laptop CPU)
	$(BIN)/python src/train.py $(ARGS)

eval: $(STAMP)  ## Evaluate a checkpoint: make eval ARGS="ckpt_path=.../best.ckpt"
	$(BIN)/python src/eval.py $(ARGS)

test: $(STAMP)  ## Run the test suite (slow tests excluded)
	$(BIN)/python -m pytest -m "not slow and not gpu" $(ARGS)

test-all: $(STAMP)  ## Run every CPU test, slow ones included
	$(BIN)/python -m pytest -m "not gpu" $(ARGS)

lint: $(STAMP)  ## Check style with ruff
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

format: $(STAMP)  ## Format and fix with ruff
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

bench: $(STAMP)  ## Run the benchmark scripts (make bench-env first for the mmaction2 baseline)
	@set -e; for s in scripts/bench_*.py; do \
		case "$$s" in *bench_gpu.py) continue;; esac; \
		echo "== $$s"; $(BIN)/python "$$s"; done
	@echo "== scripts/bench_gpu.sh needs a CUDA GPU: run it there (docs/benchmarks.md)"

# A throwaway environment with mmaction2, only for scripts/bench_pipeline.py's baseline: never a
# dependency of actionrec, never needed by CI. Its pins are the ones known to install together.
BENCH_ENV := .bench/mmaction2-venv
bench-env:  ## Create .bench/mmaction2-venv, mmaction2 for the data-pipeline baseline
	@test -x $(BENCH_ENV)/bin/python || $(PYTHON) -m venv $(BENCH_ENV)
	$(BENCH_ENV)/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 decord \
		opencv-python-headless mmaction2==1.2.0 mmengine==0.10.7 mmcv-lite==2.1.0 \
		importlib-metadata "numpy<2"

clean:  ## Remove caches and run outputs (keeps .venv and data/)
	rm -rf .pytest_cache .ruff_cache logs outputs multirun
	find . -name __pycache__ -not -path "./.venv*" -prune -exec rm -rf {} +
