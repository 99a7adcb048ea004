"""What a training run says about itself in MLflow: its tags (the command, the process that logs it, the git
commit, the DVC experiment, the sweep step it nests under) and its params (everything it depends on, named as
params.yaml names it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from typing import Any

from overfit_first.config import KNOBS, Run

# A sweep (overfit_first.procedure.sweep): {DVC experiment name: MLflow run id of its step} for the queue's workers.
SWEEP_PARENTS = "OVERFIT_FIRST_MLFLOW_PARENTS"
# summary.json entries that are descriptions rather than settings: too long to be useful as params.
SUMMARY_SKIP = {"class_names", "superclass_names", "class_counts"}


def run_tags(run: Run) -> dict[str, str]:
    tags = {
        "dataset": run.dataset,
        "model": run.model,
        "run": run.name,
        "mlflow.source.name": f"python -m stages.train {run.name}",
        "mlflow.source.type": "LOCAL",
        # Which process logs the run: a later run of the same name ends it if that process died (end_orphans).
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
    }
    commit = git_commit()
    if commit:
        tags["git_commit"] = tags["mlflow.source.git.commit"] = commit
    if os.environ.get("DVC_EXP_NAME"):  # set by `dvc exp run`
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
        parent = sweep_parent(os.environ["DVC_EXP_NAME"])
        if parent:
            tags["mlflow.parentRunId"] = parent
    return tags


def sweep_parent(experiment: str) -> str | None:
    """The step's child run a training of DVC experiment `experiment` nests under: SWEEP_PARENTS, a JSON object
    {experiment name: run id} that overfit_first.procedure.sweep_run hands to `dvc queue start`'s workers; None
    outside a sweep."""
    try:
        parent = json.loads(os.environ.get(SWEEP_PARENTS) or "{}").get(experiment)
    except (ValueError, AttributeError):
        return None
    return parent if isinstance(parent, str) else None


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def flat_params(run: Run, summary: dict[str, Any]) -> dict[str, Any]:
    """Everything the run depends on, as params.yaml names it: models.<m>.layers.3.Conv2D.filters = 128."""
    params = {
        "run.name": run.name,
        "run.dataset": run.dataset,
        "run.model": run.model,
        "run.epochs": run.epochs,
    }
    params.update({key: run.knobs[placeholder] for placeholder, key in KNOBS.items()})
    params.update(flatten(run.spec.model_dump(exclude_none=True), f"models.{run.model}"))
    params.update(flatten(run.shared.model_dump(), "train"))
    params.update(flatten({k: v for k, v in summary.items() if k not in SUMMARY_SKIP}, "data"))
    return params


def flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        if key not in SUMMARY_SKIP:
            flat.update(flatten(item, f"{prefix}.{key}"))
    return flat
