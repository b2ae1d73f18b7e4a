# The README's two commands: `sudo make demo` and `sudo make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test unit lint bench bench-migrate
setup:
	bash scripts/setup-host.sh

demo: setup
	$(VENV)/bin/amber demo

test: setup
	bash scripts/run-tests.sh

# Fast and unprivileged: the unit tests that need neither root nor the real stack (no setup run).
unit:
	$(PY) -m pytest -p no:cacheprovider -q -m "not root and not stack" tests/unit

lint:
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy src tests bench

bench: setup
	$(PY) bench/run.py

bench-migrate: setup
	$(PY) bench/migrate.py
