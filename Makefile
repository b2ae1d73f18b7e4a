# The README's two commands: `sudo make demo` and `sudo make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench
setup:
	bash scripts/setup-host.sh

demo: setup
	$(VENV)/bin/amber demo

test: setup
	bash scripts/run-tests.sh

lint:
	$(PY) -m ruff check src tests bench
	$(PY) -m mypy src

bench: setup
	$(PY) bench/run.py
