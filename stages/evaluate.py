"""Stage `evaluate@<run>`: measure one trained run on the test set, judge its fit, log it to its MLflow run.

    python -m stages.evaluate fashion_mnist-cnn_overfit

Outputs (see overfit_first.layout): metrics/<dataset>/<model>.json (the training metrics plus test accuracy,
gaps, verdict and recommendation), .per_class.json and .predictions.csv; and metrics/<dataset>/train/<model>.json
and .history.csv, the train stage's cached metrics and history copied where git keeps them.
"""

from __future__ import annotations

import argparse

from overfit_first import evaluation, tracking
from overfit_first.config import load_params
from overfit_first.errors import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.evaluate", description="Evaluate one run of params.yaml.")
    parser.add_argument("run", help="a key of `runs` in params.yaml, e.g. fashion_mnist-cnn_overfit")
    args = parser.parse_args()

    params = load_params()
    run = params.run(args.run)
    result = evaluation.evaluate(run, params.evaluate)
    evaluation.write_outputs(run, result)
    done = result.metrics
    print(
        f"{run.name}: test accuracy {done.test_accuracy:.4f}; train {done.train_accuracy_inference:.4f}, "
        f"validation {done.val_accuracy_inference:.4f} (gap {done.gap:+.4f}) -> {done.verdict} "
        f"({done.recommendation})",
        flush=True,
    )
    tracking.log_evaluation(run, result)


if __name__ == "__main__":
    run_stage(main)
