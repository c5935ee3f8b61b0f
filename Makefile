# Two commands do all the set-up on a fresh machine (Python 3.12+):
#   make train   creates .venv, installs the project, runs the default experiment
#   make test    creates .venv, installs the project with test extras, runs the tests
# The first Python >= 3.12 on PATH (a .python-version file selects pyenv's 3.12).
PYTHON ?= $(shell for p in python3.12 python3.13 python3; do \
  $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
  && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= workdirs/default
# Test processes (pytest-xdist): one per core of the 2-core CI machine; a
# file's tests stay in one process, so module fixtures are built once.
TEST_WORKERS ?= 2

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo 'error: no Python >= 3.12 found on PATH (set PYTHON=/path/to/python3.12)'; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

.PHONY: install train test
install: $(VENV)/.installed

train: $(VENV)/.installed
	$(BIN)/python train.py --config=configs/default.py --workdir=$(WORKDIR)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile tests
