# `make run` and `make test` set up .venv when it is missing, then run.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CHECKPOINT := checkpoints/acgan-cpu.pt

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The PIR loop on the default objective (color_blue) from the shipped CPU generator:
# collect → estimate → tune → evaluate, then runs/cpu-color_blue/report.md.
# Pre-trains the generator first only when no checkpoint is present.
run: $(STAMP)
	test -f $(CHECKPOINT) || ( $(BIN)/pirtune-train stage=pretrain && \
	    $(BIN)/python scripts/ship_generator.py runs/cpu-pretrain/generator.pt $(CHECKPOINT) )
	OMP_WAIT_POLICY=PASSIVE $(BIN)/pirtune-train

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts

bench: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/bench/pretrain_throughput.py

clean:
	rm -rf runs .cache
