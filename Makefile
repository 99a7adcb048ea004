# Shortcuts for the README's commands; each target sets itself up first (scripts/setup.sh is idempotent).
# Every path a recipe passes on is quoted: a checkout may live under a path with spaces.
SHELL := /bin/bash
VENV := . .venv/bin/activate &&
MLFLOW_PORT ?= 5000

.PHONY: setup repro test mlflow-ui

setup:
	bash scripts/setup.sh

repro: setup
	$(VENV) dvc repro

test:
	bash scripts/setup.sh --dev
	$(VENV) pytest

# "$$PWD" (the shell's, quoted) rather than $(CURDIR): make pastes CURDIR in unquoted, and a quote, `$` or
# backquote in the path would break any quoting put around it.
# First a link per experiment, to its runs in the UI's model-training view: MLflow 3.17 opens an experiment on its
# GenAI overview unless the address says otherwise (overfit_first.tracking). A failure there must not stop the UI.
mlflow-ui:
	$(VENV) { python -m overfit_first.tracking links --store "sqlite:///$$PWD/mlflow.db" \
		--url "http://127.0.0.1:$(MLFLOW_PORT)" || true; } && \
	mlflow ui --backend-store-uri "sqlite:///$$PWD/mlflow.db" --host 127.0.0.1 --port $(MLFLOW_PORT)
