"""reports/README.md: every dataset's models side by side, the overfit-vs-simplified comparison and the charts.

GitHub renders it with the PNGs, which sit beside it in reports/<dataset>/ and are referenced by relative path.
"""

from __future__ import annotations

import json
from typing import Any

from overfit_first import comparison, layout, plots
from overfit_first.errors import PipelineError
from overfit_first.verdict import describe, settings

CHARTS = {
    plots.VALIDATION_OVERLAY: "Validation curves: overfitting vs simplified",
    plots.ACCURACY: "Train, validation and test accuracy per model",
    plots.LEARNING_CURVES: "Learning curves per model",
    plots.PREDICTIONS: "Test images, Actual / Pred",
    plots.CONFUSION: "Confusion matrices (rows normalized)",
}


def accuracy(value: float) -> str:
    return f"{value:.3f}"


def signed(value: float) -> str:
    return f"{value:+.3f}"


def model_table(runs: list[comparison.ModelRun], metrics: dict[str, dict[str, Any]]) -> list[str]:
    superclasses = any("superclass_test_accuracy" in metrics[run.name] for run in runs)
    header = ["model", "role", "trainable params", "epochs (best)", "train", "validation", "test",
              *(["test, superclass"] if superclasses else []), "gap", "verdict", "recommendation"]
    lines = ["| " + " | ".join(header) + " |",
             "|---|---|--:|--:|--:|--:|--:|" + ("--:|" if superclasses else "") + "--:|---|---|"]
    for run in runs:
        entry = metrics[run.name]
        cells = [f"`{run.model}`", run.role, f"{entry['trainable_params']:,}",
                 f"{entry['epochs_run']} ({entry['best_epoch']})", accuracy(entry["train_accuracy_inference"]),
                 accuracy(entry["val_accuracy_inference"]), accuracy(entry["test_accuracy"])]
        if superclasses:
            cells.append(accuracy(entry["superclass_test_accuracy"]) if "superclass_test_accuracy" in entry else "")
        cells += [signed(entry["gap"]), f"**{entry['verdict']}**", entry["recommendation"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def comparison_table(compared: dict[str, Any]) -> list[str]:
    """The gains over the overfitting model (a metrics/<dataset>.comparison.json); none without one."""
    rows = [role for role in ("simplified", "augmented") if f"{role}_gap_closed" in compared]
    if not rows:
        return []
    lines = [f"Gains over the overfitting model `{compared['overfit']}`:", "",
             "| model | validation accuracy | test accuracy | gap closed |", "|---|--:|--:|--:|"]
    for role in rows:
        lines.append(f"| `{compared[role]}` ({role}) | {signed(compared[f'{role}_val_accuracy_gain'])} | "
                     f"{signed(compared[f'{role}_test_accuracy_gain'])} | {signed(compared[f'{role}_gap_closed'])} |")
    return lines


def read_comparison(dataset: str) -> dict[str, Any]:
    path = layout.comparison_file(dataset)
    if not path.is_file():
        raise PipelineError(f"{path} not found: compare the dataset's runs first with `dvc repro plot@{dataset}`")
    return json.loads(path.read_text(encoding="utf-8"))


def dataset_section(dataset: str, runs: list[comparison.ModelRun]) -> list[str]:
    metrics = {run.name: comparison.read_metrics(run) for run in runs}
    lines = [f"## {dataset}", "", *model_table(runs, metrics), ""]
    table = comparison_table(read_comparison(dataset))
    if table:
        lines += [*table, ""]
    for name, title in CHARTS.items():
        path = layout.report_dir(dataset) / name
        if not path.is_file():
            raise PipelineError(f"{path} not found: draw the charts first with `dvc repro plot@{dataset}`")
        # Relative to reports/README.md, so the images show on GitHub and in any clone.
        lines += [f"### {title}", "", f"![{title}]({path.relative_to(layout.REPORTS).as_posix()})", ""]
    return lines


def build(params: dict[str, Any]) -> str:
    """The whole reports/README.md for the datasets of params.yaml that have runs."""
    lines = [
        "# Results",
        "",
        "Written by the `report` stage of `dvc repro` from `metrics/`; do not edit by hand.",
        "",
        "Accuracies are measured on each saved model in inference mode (dropout off): *train* on the images it "
        "was trained on, *validation*, *test*. **gap** = train − validation accuracy. Verdicts: "
        f"{describe(settings(params))}. The training log's best-epoch numbers (the article's measure) are in "
        "`metrics/<dataset>/train/`; `gap_history` in `metrics/<dataset>/<model>.json` is their gap.",
        "",
    ]
    datasets = [dataset for dataset in params["data"]["datasets"] if comparison.dataset_runs(params, dataset)]
    if not datasets:
        raise PipelineError("params.yaml: `runs` trains no model on any dataset of data.datasets: nothing to report")
    for dataset in datasets:
        lines += dataset_section(dataset, comparison.dataset_runs(params, dataset))
    return "\n".join(lines).rstrip() + "\n"
