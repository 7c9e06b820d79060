# make test       — set up .venv (torch kept if present, else the CPU wheel 2.13.0) with the test,
#                    text and images extras, build, lint, run all tests
# make test-fast  — the same set-up, lint, run the tests not marked slow or build (the inner loop)
# make lint       — ruff (lint + import order)
# make demo       — the light set-up (the package and its runtime dependencies only), then the
#                    Banking77 demo: the linear probe against SeA over 3 seeds (a few minutes)
# make demo-full  — the demo with every augmentation of the paper (mixup, rand, adv, ME-ADA, ISDA)
# make bench      — the light set-up, then the benchmark table (benches/run.py)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Two set-ups: BASE (demo, bench, info) installs the package with its runtime dependencies;
# STAMP (test, lint) also the extras test, text and images (sentence-transformers, triton, ...).
BASE   := $(VENV)/.sea-base
STAMP  := $(VENV)/.sea-installed
DEPS   := pyproject.toml setup.py sea_kernels/op/cpp_build.py $(wildcard csrc/*.cpp csrc/*.h)

.PHONY: setup setup-base lint test test-fast demo demo-full bench info clean

setup: $(STAMP)
setup-base: $(BASE)

# --system-site-packages: a torch the user already has stays in use; only where none is found
# does the CPU wheel torch==2.13.0 get installed (never a multi-GB CUDA build). setuptools>=77
# first: the package is built against the venv's torch (--no-build-isolation) with its setuptools.
define venv_with_torch
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q "setuptools>=77" "wheel"
endef

$(BASE): $(DEPS)
	$(venv_with_torch)
	$(PY) -m pip install -q --no-build-isolation -e .
	touch $(BASE)

$(STAMP): $(DEPS)
	$(venv_with_torch)
	$(PY) -m pip install -q --no-build-isolation -e ".[test,text,images]"
	touch $(STAMP) $(BASE)

lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m sea_kernels
	$(PY) -m pytest -q tests

test-fast: lint
	$(PY) -m pytest -q -m "not slow and not build" tests

demo: $(BASE)
	$(PY) python/demo.py

demo-full: $(BASE)
	$(PY) python/demo.py --all-methods

bench: $(BASE)
	$(PY) benches/run.py

info: $(BASE)
	$(PY) -m sea_kernels

clean:
	rm -rf build *.egg-info sea_kernels/*.so $(VENV)
