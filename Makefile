# openrouter-spend — the two commands are `make run` and `make test`; both set up .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed
export OPENROUTER_SPEND_HOME ?= $(CURDIR)/data

# Test processes: one per core (pytest-xdist); TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= auto

.PHONY: install run test test-fast lint format schemas airflow emulator bench clean

$(STAMP): requirements.txt pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@# Bytecode compiled once, at install: where PYTHONDONTWRITEBYTECODE is set, every process (each test worker,
	@# each `openrouter-spend run`) would otherwise compile Airflow, Great Expectations and pandas again.
	$(UV) pip sync --quiet --compile-bytecode --python $(PY) requirements.txt
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)  ## create .venv from the lock (idempotent, fast when up to date)

run: install  ## run the daily DAG for the last 14 completed UTC days (bundled emulator when no key is set)
	$(VENV)/bin/openrouter-spend run --days 14

test: install lint  ## lint, then the whole test suite
	$(PY) -m pytest -n $(TEST_WORKERS)

test-fast: install lint  ## the inner loop: everything but the end-to-end runs through Airflow (marker `slow`)
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not slow"

lint: install  ## ruff, including Airflow's AIR3 rules; sqlfluff over sql/ (DuckDB dialect, pyproject.toml)
	$(VENV)/bin/ruff check dags include plugins tests
	@# One sqlfluff process per core (`--processes 0`): it parses each file on its own. Its pool leaves a
	@# harmless resource_tracker warning at exit (sqlfluff/sqlfluff#4080), silenced so lint output stays clean.
	PYTHONWARNINGS="ignore:resource_tracker:UserWarning" $(VENV)/bin/sqlfluff lint sql --disable-progress-bar --processes 0

format: install
	$(VENV)/bin/ruff check --fix dags include plugins tests

schemas: install  ## regenerate schemas/<file>.schema.json from the configuration files' models
	$(PY) -m openrouter_spend.config.schemas

airflow: install  ## Airflow standalone (UI on :8080) against the bundled emulator on :8090
	bash scripts/airflow-standalone.sh

emulator: install  ## serve the emulator on 127.0.0.1:8090
	$(VENV)/bin/openrouter-spend emulator --port 8090

bench: install  ## every performance figure beside its target and a same-run baseline (BENCH_ARGS="--quick" etc.)
	$(PY) bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf data .pytest_cache
