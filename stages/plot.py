"""Stage `plot@<dataset>`: compare the overfitting and simplified models of one dataset and draw its charts.

    python -m stages.plot fashion_mnist

Outputs: metrics/<dataset>.comparison.json (overfit_first.comparison) and reports/<dataset>/ (overfit_first.plots).
Then, seeing every run of the dataset, it registers the recommended model in MLflow (overfit_first.tracking,
best effort: an observer, not an output).
"""

from __future__ import annotations

import argparse

from overfit_first import comparison, layout, metrics, plots, tracking
from overfit_first.config import load_params
from overfit_first.errors import PipelineError, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.plot", description="Compare and plot one dataset's runs.")
    parser.add_argument("dataset", help="a dataset of data.datasets in params.yaml, e.g. fashion_mnist")
    args = parser.parse_args()

    params = load_params()
    runs = params.dataset_runs(args.dataset)
    if not runs:
        raise PipelineError(
            f"params.yaml: no run under `runs` uses dataset {args.dataset!r}; add one, or remove "
            "the dataset from data.datasets"
        )
    results = {run.name: comparison.read_metrics(run) for run in runs}
    compared = comparison.compare(comparison.by_role(runs), results)
    metrics.write(layout.comparison_file(args.dataset), compared)
    written = plots.plot_dataset(args.dataset, runs, results)
    print(
        f"{args.dataset}: wrote {layout.comparison_file(args.dataset)} and {len(written)} files in "
        f"{layout.report_dir(args.dataset)}",
        flush=True,
    )
    tracking.register_recommended(args.dataset, runs, results)


if __name__ == "__main__":
    run_stage(main)
