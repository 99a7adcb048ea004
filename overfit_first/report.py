"""reports/README.md: every dataset's models side by side, the overfit-vs-simplified comparison and the charts.

GitHub renders it with the PNGs, which sit beside it in reports/<dataset>/ and are referenced by relative path.
"""

from __future__ import annotations

import pandas as pd

from overfit_first import comparison, layout, plots
from overfit_first.config import Params, Run
from overfit_first.errors import PipelineError
from overfit_first.metrics import Comparison, EvalMetrics
from overfit_first.verdict import describe

CHARTS = {
    plots.VALIDATION_OVERLAY: "Validation curves: overfitting vs simplified",
    plots.ACCURACY: "Train, validation and test accuracy per model",
    plots.LEARNING_CURVES: "Learning curves per model",
    plots.PREDICTIONS: "Test images, Actual / Pred",
    plots.CONFUSION: "Confusion matrices (rows normalized)",
}


def markdown(table: pd.DataFrame, numeric: set[str]) -> list[str]:
    """A GitHub table: `numeric` columns right-aligned, the others left; cells as given (already formatted)."""
    align = ["right" if column in numeric else "left" for column in table.columns]
    return table.to_markdown(index=False, colalign=align, disable_numparse=True).splitlines()


def model_table(runs: list[Run], results: dict[str, EvalMetrics]) -> list[str]:
    rows = []
    for run in runs:
        entry = results[run.name]
        superclass = entry.superclass_test_accuracy
        rows.append(
            {
                "model": f"`{run.model}`",
                "role": run.role,
                "trainable params": f"{entry.trainable_params:,}",
                "epochs (best)": f"{entry.epochs_run} ({entry.best_epoch})",
                "train": f"{entry.train_accuracy_inference:.3f}",
                "validation": f"{entry.val_accuracy_inference:.3f}",
                "test": f"{entry.test_accuracy:.3f}",
                "test, superclass": "" if superclass is None else f"{superclass:.3f}",
                "gap": f"{entry.gap:+.3f}",
                "verdict": f"**{entry.verdict}**",
                "recommendation": entry.recommendation,
            }
        )
    table = pd.DataFrame(rows)
    if not table["test, superclass"].any():
        table = table.drop(columns="test, superclass")
    numbers = {"trainable params", "epochs (best)", "train", "validation", "test", "test, superclass", "gap"}
    return markdown(table, numbers)


def comparison_table(compared: Comparison) -> list[str]:
    """The gains over the overfitting model (a metrics/<dataset>.comparison.json); none without one."""
    fields = compared.model_dump()
    roles = [role for role in ("simplified", "augmented") if fields[f"{role}_gap_closed"] is not None]
    if not roles:
        return []
    table = pd.DataFrame(
        [
            {
                "model": f"`{fields[role]}` ({role})",
                "validation accuracy": f"{fields[f'{role}_val_accuracy_gain']:+.3f}",
                "test accuracy": f"{fields[f'{role}_test_accuracy_gain']:+.3f}",
                "gap closed": f"{fields[f'{role}_gap_closed']:+.3f}",
            }
            for role in roles
        ]
    )
    return [
        f"Gains over the overfitting model `{compared.overfit}`:",
        "",
        *markdown(table, {"validation accuracy", "test accuracy", "gap closed"}),
    ]


def dataset_section(dataset: str, runs: list[Run]) -> list[str]:
    results = {run.name: comparison.read_metrics(run) for run in runs}
    lines = [f"## {dataset}", "", *model_table(runs, results), ""]
    table = comparison_table(comparison.read(dataset))
    if table:
        lines += [*table, ""]
    for name, title in CHARTS.items():
        path = layout.report_dir(dataset) / name
        if not path.is_file():
            raise PipelineError(f"{path} not found: draw the charts first with `dvc repro plot@{dataset}`")
        # Relative to reports/README.md, so the images show on GitHub and in any clone.
        lines += [f"### {title}", "", f"![{title}]({path.relative_to(layout.REPORTS).as_posix()})", ""]
    return lines


def build(params: Params) -> str:
    """The whole reports/README.md for the datasets of params.yaml that have runs."""
    lines = [
        "# Results",
        "",
        "Written by the `report` stage of `dvc repro` from `metrics/`; do not edit by hand.",
        "",
        "Accuracies are measured on each saved model in inference mode (dropout off): *train* on the images it "
        "was trained on, *validation*, *test*. **gap** = train − validation accuracy. Verdicts: "
        f"{describe(params.evaluate)}. The training log's best-epoch numbers (the article's measure) are in "
        "`metrics/<dataset>/train/`; `gap_history` in `metrics/<dataset>/<model>.json` is their gap.",
        "",
    ]
    datasets = [dataset for dataset in params.data.datasets if params.dataset_runs(dataset)]
    if not datasets:
        raise PipelineError("params.yaml: `runs` trains no model on any dataset of data.datasets: nothing to report")
    for dataset in datasets:
        lines += dataset_section(dataset, params.dataset_runs(dataset))
    return "\n".join(lines).rstrip() + "\n"
