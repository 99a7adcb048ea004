# Shortcuts for the commands of README.md and docs/; each target sets itself up first (scripts/setup.sh is idempotent).
# Every path a recipe passes on is quoted: a checkout may live under a path with spaces.
SHELL := /bin/bash
VENV := . .venv/bin/activate &&
MLFLOW_PORT ?= 5000

.PHONY: setup repro test test-all coverage mlflow-ui

setup:
	bash scripts/setup.sh

repro: setup
	$(VENV) dvc repro

# The fast tier, pytest -m "not slow" (budget: 60 s on 2 cores).
test:
	bash scripts/setup.sh --dev
	$(VENV) pytest -m "not slow"

# The whole suite, the README's test command (budget: 20 minutes on 2 cores).
test-all:
	bash scripts/setup.sh --dev
	$(VENV) pytest

# Line and branch coverage of overfit_first/, stages/ and bench/ over the whole suite, subprocesses included
# (pyproject.toml's [tool.coverage]); `coverage report` / `coverage html` read .coverage again afterwards.
coverage:
	bash scripts/setup.sh --dev
	$(VENV) pytest --cov --cov-report= && for package in overfit_first stages bench; do \
		printf '%s ' "$$package/"; coverage report --include="$$package/*" | tail -n 1; done

# "$$PWD" (the shell's, quoted) rather than $(CURDIR): make pastes CURDIR in unquoted, and a quote, `$` or
# backquote in the path would break any quoting put around it.
# First a link per experiment, to its runs in the UI's model-training view: MLflow 3.17 opens an experiment on its
# GenAI overview unless the address says otherwise (overfit_first.tracking). A failure there must not stop the UI.
# MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: no GenAI job runners (seven huey processes, each importing MLflow),
# which nothing here uses. --workers 1: one reader needs one web worker; MLflow's default four each import MLflow,
# which kept a 2-core machine from answering for about 45 s (a new user's trial).
mlflow-ui:
	$(VENV) { python -m overfit_first tracking links --store "sqlite:///$$PWD/mlflow.db" \
		--url "http://127.0.0.1:$(MLFLOW_PORT)" || true; } && \
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri "sqlite:///$$PWD/mlflow.db" --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1
