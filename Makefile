# `make run` and `make test` set up .venv when it is missing, then run.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CHECKPOINT := src/pirtune/checkpoints/acgan-cpu.pt

.PHONY: run test browser screenshots serve lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The PIR loop on the default objective (color_blue) from the shipped CPU generator:
# collect → estimate → tune (tune=select, best-of-n) → evaluate, then
# runs/cpu-color_blue-<hash>/report.md.
# Pre-trains the generator first only when no checkpoint is present (named
# cpu-pretrain, so the script finds it).
run: $(STAMP)
	test -f $(CHECKPOINT) || ( $(BIN)/pirtune-train stage=pretrain name=cpu-pretrain && \
	    $(BIN)/python scripts/ship_generator.py runs/cpu-pretrain/generator.pt $(CHECKPOINT) )
	OMP_WAIT_POLICY=PASSIVE $(BIN)/pirtune-train

# The browser test drives Debian's chromium (never a downloaded browser); another
# installed Chromium or Chrome: make test CHROMIUM=/usr/bin/google-chrome.
CHROMIUM ?= /usr/bin/chromium
export PIRTUNE_CHROMIUM := $(CHROMIUM)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

browser:
	test -x $(CHROMIUM) || ( $(SUDO) apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium )

# The README's pictures of the page, taken by the browser test.
screenshots: $(STAMP) browser
	PIRTUNE_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/webapp/test_browser.py

# The four-choice web app on http://127.0.0.1:8000/, logging to runs/webapp/interactions.db.
serve: $(STAMP)
	$(BIN)/pirtune-serve

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts

bench: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/bench/pretrain_throughput.py --json docs/bench/throughput.json
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python scripts/bench/webapp.py --out docs/bench

clean:
	rm -rf runs .cache
