# The two commands: `make demo` and `make test`. Also `make lint` and `make bench`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_HOME := $(CURDIR)/.demo-home
PYTEST_WORKERS ?= 2

.PHONY: demo test lint bench clean demo-clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the project with the dev extras, pinned by constraints.txt; redone when they change.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	LOCKGATE_HOME=$(DEMO_HOME) $(BIN)/lockgate init --org demo
	LOCKGATE_HOME=$(DEMO_HOME) $(BIN)/lockgate infra apply --yes
	LOCKGATE_HOME=$(DEMO_HOME) $(BIN)/lockgate status
	LOCKGATE_HOME=$(DEMO_HOME) $(BIN)/lockgate pipeline upsert examples/abalone/pipeline.py
	LOCKGATE_HOME=$(DEMO_HOME) $(BIN)/lockgate pipeline run abalone
	LOCKGATE_HOME=$(DEMO_HOME) $(BIN)/lockgate model list abalone

test: $(VENV)/.installed
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed
	$(BIN)/python bench/run.py
	$(BIN)/python bench/bench_pipelines.py
	$(BIN)/python bench/bench_executor.py
	$(BIN)/python bench/bench_registry.py
	$(BIN)/python bench/bench_automation.py

demo-clean:
	rm -rf $(DEMO_HOME)

clean: demo-clean
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
