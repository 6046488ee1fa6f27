# actionrec: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extra arguments for train/eval, e.g. `make train ARGS="trainer.max_epochs=1"`.
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install data train eval test test-all lint format bench clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
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

bench: $(STAMP)  ## Run the benchmark scripts
	@for s in scripts/bench_*.py; do [ -f "$$s" ] && $(BIN)/python "$$s"; done; true

clean:  ## Remove caches and run outputs (keeps .venv and data/)
	rm -rf .pytest_cache .ruff_cache logs outputs multirun
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
