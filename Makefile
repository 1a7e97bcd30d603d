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

# The golden path on a fresh demo home: bootstrap dev/preprod/prod, train and register abalone in
# dev, approve it (an automation rule announces the approval), promote model and pipeline to
# preprod, serve the model on a preprod endpoint and print a prediction (then stop the daemon). In a one-person demo the same user registers and approves, so the demo home allows
# self-approval; a real platform keeps the default (separation of duties).
demo: $(VENV)/.installed demo-clean
	$(LG) init --org demo
	sed -i 's/^allow_self_approval = false .*/allow_self_approval = true   # demo only: one person plays both roles/' $(DEMO_HOME)/platform.toml
	cat examples/abalone/demo-rules.toml >> $(DEMO_HOME)/platform.toml
	$(LG) infra apply --yes
	$(LG) status
	$(LG) pipeline upsert examples/abalone/pipeline.py
	$(LG) pipeline run abalone
	$(LG) model list abalone
	$(LG) model approve abalone/1 --comment "MSE within the gate; demo approval"
	$(LG) events worker --once
	cat $(DEMO_HOME)/approvals.log
	$(LG) model promote abalone/1 --to preprod
	$(LG) pipeline promote abalone@1 --to preprod
	$(LG) model list abalone --env preprod
	$(LG) up --detach
	$(LG) endpoint create abalone --model abalone/1 --env preprod
	$(LG) endpoint invoke abalone --env preprod --data '[[0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15, 0, 0, 1]]'
	$(LG) down

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

demo-clean:
	if [ -f $(DEMO_HOME)/run/daemon.json ] && [ -x $(BIN)/lockgate ]; then $(LG) down; fi
	rm -rf $(DEMO_HOME)

clean: demo-clean
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
