# Two commands on a fresh machine with only Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help venv lint test test-faults test-load test-integration demo server worker clean \
	bench bench-stats bench-timeskip bench-metrics bench-orchestration bench-rollback bench-bucketing

help:
	@echo "make demo         run the main job on the embedded defaults"
	@echo "make test         lint (ruff, mypy) and run the tests; creates $(VENV) itself"
	@echo "make test-integration  the tests against real Unleash, PostgreSQL and Prometheus (installed if missing)"
	@echo "make test-faults  the whole fault matrix: a worker SIGKILLed before/after each side effect"
	@echo "make server       run the Temporal dev server with its Web UI (foreground)"
	@echo "make worker       run a worker against TEMPORAL_ADDRESS (foreground)"
	@echo "make test-load    500 experiments at once on one worker (accelerated clock, embedded adapters)"
	@echo "make bench        run every benchmark (ratios against baselines measured in the same run; ~1 h here)"
	@echo "make bench-stats | bench-timeskip | bench-metrics | bench-orchestration | bench-rollback | bench-bucketing"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,engines]'
	@touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy .

test: lint
	$(BIN)/pytest -q

# The real outside systems: PostgreSQL and Prometheus (Debian packages) and Unleash (npm, with a Node 22 binary
# from npm into .cache/) are installed when missing and started on loopback by the tests, then stopped by pid.
# `make test` runs these too; they skip with one line saying how to run them where an install cannot work.
# The whole fault matrix (18 worker kills, ~10 min); `make test` runs two of it.
test-faults: venv
	ABROLLOUT_FAULT_MATRIX=all $(BIN)/pytest -q -rs tests/workers/test_fault_matrix.py

test-load: venv
	ABROLLOUT_LOAD_EXPERIMENTS=500 $(BIN)/pytest -q -rs -s tests/workers/test_load.py

test-integration: venv
	$(BIN)/pytest -q -rs tests/integration tests/abrollout/flags/test_client_specification.py

demo: venv
	$(BIN)/python -m cli.demo

server: venv
	$(BIN)/python -m devserver

worker: venv
	$(BIN)/python worker.py

# Each benchmark prints its figures beside a baseline measured in the same run; bench/README.md has the table.
# bench-NAME runs bench/NAME_bench.py (bench-rollback: bench/rollback_latency_bench.py).
BENCHES := stats timeskip metrics orchestration rollback bucketing

$(addprefix bench-,$(BENCHES)): bench-%: venv
	$(BIN)/python -m bench.$(subst rollback,rollback_latency,$*)_bench

bench: $(addprefix bench-,$(BENCHES))

clean:
	rm -rf $(VENV) .abrollout .pytest_cache .mypy_cache .ruff_cache
