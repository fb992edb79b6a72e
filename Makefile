# The workflow, executable. `make demo` and `make test` work on a fresh machine
# with only Python 3.11+ and make: each creates .venv and installs what it needs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

## Run the daemon on the bundled sample archive (Ctrl-C stops it).
demo: $(STAMP)
	$(BIN)/feedbot --config config/demo.toml run

## Run the whole test suite (SQLite and the local PostgreSQL server).
test: $(STAMP)
	$(BIN)/pytest

## ruff and mypy.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check feedbot tests bench
	$(BIN)/mypy

## Benchmarks on the 100,000-event synthetic archive (written under bench/.cache).
bench: $(STAMP)
	$(BIN)/python bench/ingest.py --events 100000

bench-quick: $(STAMP)
	$(BIN)/python bench/ingest.py --events 10000

clean:
	rm -rf $(VENV) data bench/.cache .pytest_cache .mypy_cache .ruff_cache
