# Shortcuts for the README's commands; each target sets itself up first (scripts/setup.sh is idempotent).
SHELL := /bin/bash
VENV := . .venv/bin/activate &&

.PHONY: setup repro test mlflow-ui

setup:
	bash scripts/setup.sh

repro: setup
	$(VENV) dvc repro

test:
	bash scripts/setup.sh --dev
	$(VENV) pytest

mlflow-ui:
	$(VENV) mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000
