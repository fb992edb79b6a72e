# The workflow, executable. `make demo` and `make test` work on a fresh machine
# with only Python 3.11+ and make: each creates .venv and installs what it needs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
AXE    := tests/axe/node_modules/.installed

.PHONY: demo demo-event test test-quick test-next-year lint bench bench-quick clean axe screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

## axe-core for the browser tests (tests/test_browser.py), pinned by
## tests/axe/package-lock.json, into tests/axe/node_modules. Where npm is missing
## or cannot install it, the browser tests skip, saying so; under CI (the CI
## variable set) that fails here instead.
axe: $(AXE)

$(AXE): tests/axe/package.json tests/axe/package-lock.json
	@if command -v npm >/dev/null && (cd tests/axe && npm ci --no-audit --no-fund --loglevel=error); then \
	    touch $@; \
	elif [ -n "$${CI:-}" ]; then \
	    echo "axe-core not installed (npm ci in tests/axe): CI needs it for the browser tests" >&2; exit 1; \
	else \
	    echo "axe-core not installed (no npm, or npm ci in tests/axe failed): the browser tests will skip" >&2; \
	fi

DEMO_SECRET := whsec_ZGVtby1zZWNyZXQtZm9yLWZlZWRib3QtbWFrZS1kZW1v

## Run the daemon on a copy of the sample archive, with `feedbot sink` printing
## the alerts it receives (Ctrl-C stops both). The daemon starts once the sink
## listens (30 s at most), so its first alerts are not refused.
demo: $(STAMP) data/demo-archive
	@echo ""
	@echo "  latest:      http://127.0.0.1:8080/"
	@echo "  topics:      http://127.0.0.1:8080/topics"
	@echo "  a topic:     http://127.0.0.1:8080/topics/lal-masjid-siege"
	@echo "  search:      http://127.0.0.1:8080/search?q=red+mosque"
	@echo "  a feed:      http://127.0.0.1:8080/feeds/topics/lal-masjid-siege.atom"
	@echo "  all events:  http://127.0.0.1:8080/feeds/all.atom"
	@echo "  OPML:        http://127.0.0.1:8080/topics.opml"
	@echo "  new event:   make demo-event   (in another terminal)"
	@echo ""
	@trap 'kill $$sink 2>/dev/null; wait $$sink 2>/dev/null' EXIT; \
	$(BIN)/feedbot --log-level warning sink --secret $(DEMO_SECRET) & sink=$$!; \
	$(BIN)/python -c 'import socket, time; up = lambda: socket.socket().connect_ex(("127.0.0.1", 9000)) == 0; any(up() or time.sleep(0.1) for _ in range(300))'; \
	$(BIN)/feedbot --config config/demo.toml --log-format text run

data/demo-archive:
	mkdir -p data
	cp -r examples/archive data/demo-archive

## Write a new event page into the demo's archive: watch its alert arrive.
demo-event: data/demo-archive
	$(PYTHON) examples/new_event.py data/demo-archive

## Run the whole test suite (SQLite and the local PostgreSQL server; the browser
## tests where chromium is installed: Debian apt-get install chromium).
test: $(STAMP) $(AXE)
	$(BIN)/pytest

## The quick tier, for development: no slow tests, no real feedbot processes.
test-quick: $(STAMP)
	$(BIN)/pytest -m "not slow and not e2e"

## The end-to-end tests again, with the clock a year ahead (Debian: apt-get install
## faketime): nothing may depend on today's date. `-f '+365d'` is an offset every
## process of the run shares; a plain start time would restart in each process.
test-next-year: $(STAMP) $(AXE)
	faketime -f '+365d' $(BIN)/python -c \
	  'import sys, time; sys.exit(time.time() - float(sys.argv[1]) < 364 * 86400)' "$$(date +%s)" \
	  || { echo "faketime does not move this machine's clock" >&2; exit 1; }
	faketime -f '+365d' $(BIN)/pytest -m e2e

## ruff and mypy.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check feedbot tests bench docs
	$(BIN)/mypy

## Benchmarks on the 100,000-event synthetic archive (written under bench/.cache);
## serve.py needs wrk and nginx (apt-get install wrk nginx).
bench: $(STAMP)
	$(BIN)/python bench/ingest.py --events 100000
	$(BIN)/python bench/serve.py --events 100000
	$(BIN)/python bench/notify.py
	$(BIN)/python bench/latency.py

bench-quick: $(STAMP)
	$(BIN)/python bench/ingest.py --events 10000 --no-reference
	$(BIN)/python bench/serve.py --events 10000 --no-render-all
	$(BIN)/python bench/notify.py --events 50 --no-apprise

## PNGs of the pages into docs/ (README shows them): headless chromium on a daemon
## serving the sample archive on port 8080. `make screenshots SHOTS="topics event"`
## takes some of them.
screenshots: $(STAMP)
	$(BIN)/python docs/screenshots.py $(SHOTS)

clean:
	rm -rf $(VENV) data bench/.cache .pytest_cache .mypy_cache .ruff_cache tests/axe/node_modules

## The real image test: debootstrap a Debian bookworm base (cached), docker build on
## it, run with the sample archive, health check, a feed, SIGTERM. Needs root; prints
## "container-test: skipped: <why>" and exits 0 where no Docker engine can start.
.PHONY: container-test
container-test:
	bash tests/container/run.sh
