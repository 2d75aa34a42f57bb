# Set-up and everyday commands. Everything installs into .venv; nothing needs root.
# CPU machines: constraints-cpu.txt pins torch to the CPU build. GPU users: make setup CONSTRAINTS=
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints-cpu.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.trainlab-installed

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[dev,data]"
	touch $(STAMP)

# The main job: the demo study (20 Optuna trials, pruned), tracked in ./mlflow.db
demo: setup
	$(BIN)/trainlab study studies/digits_mlp.yaml

# The whole suite (unit, integration, ddp, postgres, browser tiers), two workers
test: setup
	$(BIN)/python -m pytest -n 2 --durations=15

test-fast: setup
	$(BIN)/python -m pytest -n 2 -m "not integration and not ddp and not postgres and not browser"

bench: setup
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) mlflow.db mlruns optuna.db
