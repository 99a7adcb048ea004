"""Stage `train@<run>`: train one run of params.yaml `runs`, write its model and metrics, log it to MLflow.

    python -m stages.train fashion_mnist-cnn_overfit

Outputs (paths in overfit_first.layout): models/<dataset>/<model>.keras, metrics/<dataset>/train/<model>.json
and .history.csv. Killed midway, the same command resumes from the last completed epoch.
"""

from __future__ import annotations

import argparse

from overfit_first import layout, tracking, training
from overfit_first.config import load_params
from overfit_first.data.prepared import dataset_dir, load_split, load_summary
from overfit_first.errors import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.train", description="Train one run of params.yaml.")
    parser.add_argument("run", help="a key of `runs` in params.yaml, e.g. fashion_mnist-cnn_overfit")
    args = parser.parse_args()
    layout.require_repo_root()

    run = training.load_run(load_params(), args.run)
    directory = dataset_dir(run.dataset)
    summary = load_summary(directory)
    train, valid = load_split(directory, "train"), load_split(directory, "valid")
    checksums = {split: summary["splits"][split].get("sha256") for split in ("train", "valid")}
    result = training.fit(run, train, valid, summary["num_classes"], data_fingerprint=checksums)
    training.write_outputs(run, result)
    print(f"{run.name}: best epoch {result.metrics['best_epoch']} of {result.metrics['epochs_run']}: "
          f"train accuracy {result.metrics['train_accuracy']:.4f}, "
          f"validation accuracy {result.metrics['val_accuracy']:.4f}", flush=True)
    tracking.log_run(run, summary, result.model)


if __name__ == "__main__":
    run_stage(main)
