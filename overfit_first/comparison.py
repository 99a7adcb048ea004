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

from typing import Any

from overfit_first import layout, metrics
from overfit_first.config import Run
from overfit_first.errors import PipelineError

COMPARED_ROLES = ("overfit", "simplified", "augmented")  # at most one model each per dataset


def by_role(runs: list[Run]) -> dict[str, Run]:
    """The overfitting, simplified and augmented runs of one dataset, by role (the roles present)."""
    roles: dict[str, Run] = {}
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


def read_metrics(run: Run) -> metrics.EvalMetrics:
    """The evaluate stage's metrics of `run`."""
    return metrics.read(run.eval_metrics_path, metrics.EvalMetrics, f"dvc repro --force evaluate@{run.name}")


def compare(roles: dict[str, Run], results: dict[str, metrics.EvalMetrics]) -> metrics.Comparison:
    """The comparison of one dataset; `results` maps run names to their evaluate metrics."""
    compared: dict[str, Any] = {role: roles[role].model for role in COMPARED_ROLES if role in roles}
    if "overfit" in roles:
        overfit = results[roles["overfit"].name]
        for role in ("simplified", "augmented"):
            if role not in roles:
                continue
            other = results[roles[role].name]
            for key, value in (
                ("val_accuracy_gain", other.val_accuracy_inference - overfit.val_accuracy_inference),
                ("test_accuracy_gain", other.test_accuracy - overfit.test_accuracy),
                ("gap_closed", overfit.gap - other.gap),
            ):
                compared[f"{role}_{key}"] = round(value, 6)
    return metrics.Comparison(**compared)


def read(dataset: str) -> metrics.Comparison:
    """metrics/<dataset>.comparison.json, as the plot stage wrote it."""
    return metrics.read(layout.comparison_file(dataset), metrics.Comparison, f"dvc repro plot@{dataset}")
