"""Overfitting vs simplified (and augmented), per dataset: which run plays which role, and what simplifying gained.

Roles come from params.yaml `models.<model>.role`. Every key of the comparison is flat, so that
`dvc metrics show` and `dvc metrics diff` list it as one row per dataset:

    overfit, simplified, augmented            the model names
    <role>_val_accuracy_gain                  validation accuracy of <role> minus that of the overfitting model
    <role>_test_accuracy_gain                 the same on the test set
    <role>_gap_closed                         the overfitting model's gap minus <role>'s (positive: smaller gap)

All accuracies are the evaluate stage's inference-mode ones (see overfit_first.evaluation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from overfit_first import layout
from overfit_first.errors import PipelineError

ROLE_ORDER = ("mlp", "overfit", "simplified", "augmented", "other")
COMPARED_ROLES = ("overfit", "simplified", "augmented")  # at most one model each per dataset


@dataclass(frozen=True)
class ModelRun:
    name: str  # the key of params.yaml `runs`
    dataset: str
    model: str
    role: str


def dataset_runs(params: dict[str, Any], dataset: str) -> list[ModelRun]:
    """The runs of `dataset`, ordered by role (mlp, overfit, simplified, augmented, other), then as listed."""
    runs = [
        ModelRun(name, spec["dataset"], spec["model"], params["models"][spec["model"]]["role"])
        for name, spec in params["runs"].items()
        if spec["dataset"] == dataset
    ]
    return sorted(runs, key=lambda run: ROLE_ORDER.index(run.role))


def by_role(runs: list[ModelRun]) -> dict[str, ModelRun]:
    """The overfitting, simplified and augmented runs of one dataset, by role (the roles present)."""
    roles: dict[str, ModelRun] = {}
    for run in runs:
        if run.role not in COMPARED_ROLES:
            continue
        if run.role in roles:
            raise PipelineError(
                f"params.yaml: runs {roles[run.role].name} and {run.name} both train a model with role "
                f"'{run.role}' on {run.dataset}, and the comparison needs one: set `role: other` in "
                f"models.{run.model} (or models.{roles[run.role].model})"
            )
        roles[run.role] = run
    return roles


def read_metrics(run: ModelRun) -> dict[str, Any]:
    """The evaluate stage's metrics of `run`."""
    path = layout.eval_metrics_file(run.dataset, run.model)
    if not path.is_file():
        raise PipelineError(f"{path} not found: evaluate the run first with `dvc repro evaluate@{run.name}`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PipelineError(f"{path} is corrupt ({error}): rerun `dvc repro --force evaluate@{run.name}`") from error


def compare(roles: dict[str, ModelRun], metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The comparison's flat keys (module docstring); `metrics` maps run names to their evaluate metrics."""
    result: dict[str, Any] = {role: roles[role].model for role in COMPARED_ROLES if role in roles}
    if "overfit" not in roles:
        return result
    overfit = metrics[roles["overfit"].name]
    for role in ("simplified", "augmented"):
        if role not in roles:
            continue
        other = metrics[roles[role].name]
        for key, value in (("val_accuracy_gain", other["val_accuracy_inference"] - overfit["val_accuracy_inference"]),
                           ("test_accuracy_gain", other["test_accuracy"] - overfit["test_accuracy"]),
                           ("gap_closed", overfit["gap"] - other["gap"])):
            result[f"{role}_{key}"] = round(value, 6)
    return result
