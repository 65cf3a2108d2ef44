# `make demo` and `make test` each do the whole set-up first (tools/install.sh, idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Two pytest workers: much of a test's time is a tool's start-up (imports), one core each.
PYTEST_WORKERS ?= 2

.PHONY: install demo test

install:
	MMKD_VENV=$(VENV) bash tools/install.sh

demo: install
	$(PY) tools/demo.py

test: install
	$(PY) -m pytest tests -ra -n $(PYTEST_WORKERS) $(PYTEST_ARGS)
