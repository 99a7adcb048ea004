"""reports/README.md: every dataset's models side by side, the overfit-vs-simplified comparison and the charts.

GitHub renders it with the PNGs, which sit beside it in reports/<dataset>/ and are referenced by relative path.
"""

from __future__ import annotations

import pandas as pd

from overfit_first import article, comparison, layout, plots
from overfit_first.config import EvaluateConfig, Params, Run
from overfit_first.errors import PipelineError
from overfit_first.metrics import Comparison, EvalMetrics
from overfit_first.verdict import describe, verdict

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


def fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def article_table(runs: list[Run], results: dict[str, EvalMetrics], rules: EvaluateConfig) -> list[str]:
    """The article's reported numbers beside ours, for the runs the article made (none for other datasets).

    The article's verdict is the one our rules give its reported train and validation accuracies (the words it
    uses itself, see tests/test_evaluate.py); "same" compares it with ours. Our train accuracy is the inference-
    mode one (dropout off), the article's the training log's; the training log's is in the epochs column's file.
    """
    rows = []
    for run in runs:
        paper = article.reported(run.dataset, run.model)
        if paper is None:
            continue
        ours = results[run.name]
        paper_verdict = verdict(paper.train, paper.val, rules) if paper.train is not None else None
        rows.append(
            {
                "model": f"`{run.model}`",
                "epochs: article (best) / ours (best)": (
                    f"{paper.total_epochs} ({paper.epoch or '?'}) / {run.epochs} ({ours.best_epoch})"
                ),
                "train: article / ours": f"{fraction(paper.train) or '–'} / {ours.train_accuracy_inference:.3f}",
                "validation": f"{fraction(paper.val) or '–'} / {ours.val_accuracy_inference:.3f}",
                "test": f"{fraction(paper.test) or '–'} / {ours.test_accuracy:.3f}",
                "verdict: article / ours": f"{paper_verdict or 'not reported'} / **{ours.verdict}**",
                "same verdict": "–"
                if paper_verdict is None
                else ("yes" if paper_verdict == ours.verdict else "**no**"),
            }
        )
    if not rows:
        return []
    numbers = {"epochs: article (best) / ours (best)", "train: article / ours", "validation", "test"}
    images = sorted({results[run.name].train_images for run in runs if article.reported(run.dataset, run.model)})
    return [
        "The article's reported numbers beside ours (`overfit_first/article.py`). The article trained on 45,000 "
        f"images, this run on {' / '.join(f'{count:,}' for count in images)}; its train accuracy is the training "
        "log's (dropout on), ours the saved model's in inference mode; its verdict is what our rules say of its "
        "numbers.",
        "",
        *markdown(pd.DataFrame(rows), numbers),
    ]


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


def dataset_section(dataset: str, runs: list[Run], rules: EvaluateConfig) -> list[str]:
    results = {run.name: comparison.read_metrics(run) for run in runs}
    lines = [f"## {dataset}", "", *model_table(runs, results), ""]
    versus = article_table(runs, results, rules)
    if versus:
        lines += [f"### {dataset}: the article and this run", "", *versus, ""]
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
        lines += dataset_section(dataset, params.dataset_runs(dataset), params.evaluate)
    return "\n".join(lines).rstrip() + "\n"
