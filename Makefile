# Two commands do all the set-up on a fresh machine (Python 3.11+):
#   make train   creates .venv, installs the project, runs the default experiment
#   make test    creates .venv, installs the project with test extras, runs the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= workdirs/default

$(BIN)/python:
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
	$(BIN)/python -m pytest tests
