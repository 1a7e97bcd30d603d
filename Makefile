# The two commands: `make demo` and `make test`. Also `make lint` and `make bench`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_HOME := $(CURDIR)/.demo-home
LG := LOCKGATE_HOME=$(DEMO_HOME) $(BIN)/lockgate
PYTEST_WORKERS ?= 2

.PHONY: demo test lint bench clean demo-clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs the project with the dev extras, pinned by constraints.txt; redone when they change.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# The golden path on a fresh demo home (`lockgate demo`): bootstrap dev/preprod/prod, start the
# daemon, create a build-train-deploy project, push, build and train in dev, approve, deploy to a
# preprod endpoint (endpoint tests, batch job), approve the gated prod deploy, print a prediction
# from prod. The daemon keeps running for you to explore; `make demo-clean` (or
# `LOCKGATE_HOME=.demo-home .venv/bin/lockgate down`) stops it.
demo: $(VENV)/.installed demo-clean
	$(LG) demo

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
	$(BIN)/python bench/bench_serving.py
	$(BIN)/python bench/bench_batch.py
	$(BIN)/python bench/bench_serving_peer.py
	$(BIN)/python bench/bench_demo.py
	$(BIN)/python bench/bench_llm.py

demo-clean:
	if [ -f $(DEMO_HOME)/run/daemon.json ] && [ -x $(BIN)/lockgate ]; then $(LG) down; fi
	rm -rf $(DEMO_HOME)

clean: demo-clean
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
