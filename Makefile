# `make demo` and `make test` each do the whole set-up first (tools/install.sh, idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo test

install:
	MMKD_VENV=$(VENV) bash tools/install.sh

demo: install
	$(PY) tools/demo.py

test: install
	$(PY) -m pytest tests -ra $(PYTEST_ARGS)
