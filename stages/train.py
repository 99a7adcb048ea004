"""Stage `train@<run>`: train one run of params.yaml `runs`, write its model and metrics, log it to MLflow live.

    python -m stages.train fashion_mnist-cnn_overfit

Outputs (paths in overfit_first.layout), all in DVC's cache: models/<dataset>/<model>.keras, .metrics.json and
.history.csv (evaluate publishes the last two to metrics/<dataset>/train/). Killed midway, the same command
resumes from the last completed epoch, and continues the same MLflow run. MLflow (overfit_first.tracking) only
observes: its callback cannot change the outputs. With params.yaml `sanity.before_training: true`,
overfit_first.sanity checks the run first, in a child process, and a failed check stops the stage before training
(it cannot change the outputs either).
"""

from __future__ import annotations

import argparse

from overfit_first import sanity, tracking, training
from overfit_first.config import load_params
from overfit_first.data.splits import dataset_dir, load_split, load_summary
from overfit_first.errors import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.train", description="Train one run of params.yaml.")
    parser.add_argument("run", help="a key of `runs` in params.yaml, e.g. fashion_mnist-cnn_overfit")
    args = parser.parse_args()

    params = load_params()
    run = params.run(args.run)
    if params.sanity.before_training:  # seconds of checks before hours of training, in a child process
        sanity.before_training(run.name)
    directory = dataset_dir(run.dataset)
    summary = load_summary(directory)
    train, valid = load_split(directory, "train"), load_split(directory, "valid")
    checksums = {split: summary["splits"][split].get("sha256") for split in ("train", "valid")}
    # The first validation image is the logged model's input example.
    with tracking.live_run(run, summary, example=valid.x[:1]) as live:
        result = training.fit(
            run, train, valid, summary["num_classes"], data_fingerprint=checksums, callbacks=[live.callback]
        )
        training.write_outputs(run, result)
        best = result.metrics
        print(
            f"{run.name}: best epoch {best.best_epoch} of {best.epochs_run}: train accuracy "
            f"{best.train_accuracy:.4f}, validation accuracy {best.val_accuracy:.4f}",
            flush=True,
        )
        live.finish(result.model)


if __name__ == "__main__":
    run_stage(main)
