# Two commands on a fresh machine with only Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help venv lint test test-faults test-integration demo server worker bench bench-stats clean

help:
	@echo "make demo         run the main job on the embedded defaults"
	@echo "make test         lint (ruff, mypy) and run the tests; creates $(VENV) itself"
	@echo "make test-integration  the tests against real Unleash, PostgreSQL and Prometheus (installed if missing)"
	@echo "make test-faults  the whole fault matrix: a worker SIGKILLed before/after each side effect"
	@echo "make server       run the Temporal dev server with its Web UI (foreground)"
	@echo "make worker       run a worker against TEMPORAL_ADDRESS (foreground)"
	@echo "make bench        run the benchmarks (ratios against baselines measured in the same run)"
	@echo "make bench-stats  the statistics benchmark only"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy abrollout

test: lint
	$(BIN)/pytest -q

# The real outside systems: PostgreSQL and Prometheus (Debian packages) and Unleash (npm, with a Node 22 binary
# from npm into .cache/) are installed when missing and started on loopback by the tests, then stopped by pid.
# `make test` runs these too; they skip with one line saying how to run them where an install cannot work.
# The whole fault matrix (18 worker kills, ~7 min); `make test` runs four representative cases of it.
test-faults: venv
	ABROLLOUT_FAULT_MATRIX=all $(BIN)/pytest -q -rs tests/test_fault_matrix.py

test-integration: venv
	$(BIN)/pytest -q -rs tests/integration tests/test_client_specification.py

demo: venv
	$(BIN)/python -m cli.demo

server: venv
	$(BIN)/python -m cli.devserver

worker: venv
	$(BIN)/python worker.py

bench-stats: venv
	$(BIN)/python -m bench.stats_bench

bench: bench-stats

clean:
	rm -rf $(VENV) .abrollout .pytest_cache .mypy_cache .ruff_cache
