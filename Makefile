# Front door of the C3AE course. Two commands do everything on a fresh clone:
#   make run-all [SMALL_RUN=1]     set up, fetch the data, run every notebook in order
#   make test                      set up, then run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SMALL_RUN ?= 0
DATASET ?= utkface
STAMP := $(VENV)/.installed

.PHONY: help setup check-prereqs data run-all publish book test test-course lint lab bench results release clean

help:
	@echo "make run-all [SMALL_RUN=1]         run every notebook (SMALL_RUN=1: minutes, not hours; copies in artifacts/notebooks/)"
	@echo "make publish                       put a full run's outputs into notebooks/ (after make run-all)"
	@echo "make book                          build the course as a static site in _build/book/"
	@echo "make test                          run the test suite"
	@echo "make test-course                   the course as a learner meets it: JupyterLab in headless Chromium, every worked solution, a simulated Colab"
	@echo "make setup                         create .venv and install the package (editable, dev extras)"
	@echo "make data DATASET=utkface|fgnet|wiki|imdb|reference|demo  fetch and extract one dataset"
	@echo "make lab                           JupyterLab on the notebooks"
	@echo "make bench                         benchmark scripts in bench/"
	@echo "make release RUN=NAME              package a trained run as the shipped model in models/ (with its model card)"
	@echo "make clean                         remove artifacts and caches (keeps downloads)"

check-prereqs:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null || \
	  { echo "error: Python 3.10+ is required (found: $$($(PYTHON) --version 2>&1)). Install it or run 'make PYTHON=python3.11 ...'."; exit 1; }

$(STAMP): pyproject.toml | check-prereqs
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[local,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

setup: $(STAMP)

data: setup
	$(PY) -m c3ae_utils.datasets fetch $(DATASET)

run-all: setup
	$(PY) -m c3ae_utils.datasets check-access utkface
	$(PY) -m c3ae_utils.course $(if $(filter 1 true True yes,$(SMALL_RUN)),--small,)

# The outputs of a full run (`make run-all`) into notebooks/, fingerprinted against their code.
publish: setup
	$(PY) -m c3ae_utils.publishing

# The course as a static site in _build/book/, from the committed notebooks (offline, nothing executed).
book: setup
	$(PY) -m c3ae_utils.book

# Two pytest-xdist workers, a test file at a time (each notebook file runs its notebooks in order),
# handed out in the order tests/conftest.py sorts them (not xdist's largest-file-first).
TEST_WORKERS ?= 2

test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --ignore=tests/browser --ignore=tests/solutions --ignore=tests/colab --ignore=tests/model $(PYTEST_ARGS)

# The slow learner's-eye checks, kept out of `make test`: JupyterLab driven in Debian's chromium
# (apt-get install chromium), every solution in solutions/ after the notebooks they build on, and
# a simulated Colab runtime (a fresh virtual environment, the state on a stand-in Drive), and the
# shipped model's card on the whole UTKFace test split (its 3,318 photos through the cache builder).
test-course: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -p no:cacheprovider tests/browser tests/solutions tests/colab tests/model $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check c3ae_utils tests bench solutions
	$(VENV)/bin/lint-imports

lab: setup
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)  # root: containers, Colab-like machines

bench: setup
	$(PY) bench/bench_preprocess.py
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_inference.py

results: setup
	$(PY) -m c3ae_utils.evaluation results

# Package a trained run as the shipped model (models/: .keras, float16 TFLite, model card).
RUN ?= utkface-kl-e40-trainval
TRAINED_AT ?= unknown
release: setup
	$(PY) -m c3ae_utils.release --run $(RUN) --fgnet-cache fgnet --small-cache utkface-n200 --trained-at-commit $(TRAINED_AT)

clean:
	rm -rf artifacts data/cache figures/generated .pytest_cache
