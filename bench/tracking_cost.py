"""Cost of tracking in the train stage: MLflow logging and the DVC metrics/plots files, against epoch time.

    python -m bench.tracking_cost --prepared DIR [--images 10000] [--epochs 2] [--out FILE]

Trains cnn_simplified with `training.fit` exactly as the train stage does (validation, checkpoint, resume
backups) in a scratch project whose data/prepared/<dataset> links to DIR, then times what tracking adds:

    per epoch   EpochLog's history.json (the resumable history), written after every epoch
    per run     the DVC files (metrics/<dataset>/train/<model>.json and the .history.csv plot) and the
                MLflow run (`tracking.log_run`: params, per-epoch metrics, learning curve, model): into a
                fresh SQLite store (the first run of a repository creates the tables), then, as every later
                train stage does, from a new process (importing MLflow) into the existing store

The per-run costs are paid once, at the end; spread over a run of E epochs they cost (per run) / E per
epoch. The baseline is the stage's own epoch time (training and validation) after the first epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import REPO, stage_env, write_result
from overfit_first.config import read_yaml

TARGET_PERCENT = 3.0
MODEL = "cnn_simplified"


def measure(prepared: Path, images: int, epochs: int) -> dict[str, Any]:
    from overfit_first import atomic, metrics, tracking, training
    from overfit_first.config import load_params
    from overfit_first.data.splits import load_split, load_summary

    dataset = prepared.name
    run_name = f"{dataset}-{MODEL}"
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as scratch:
        project = Path(scratch)
        params = read_yaml(REPO / "params.yaml")
        params["data"].update(datasets=[dataset], image_folders={dataset: str(prepared)})
        params["train"].update(subset_size=images)
        params["runs"] = {run_name: {"dataset": dataset, "model": MODEL, "tuned_by": "model.dropout", "epochs": epochs}}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        (project / "data" / "prepared").mkdir(parents=True)
        (project / "data" / "prepared" / dataset).symlink_to(prepared.resolve())
        os.chdir(project)
        for key in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
            os.environ.pop(key, None)  # the default store: <project>/mlflow.db

        run = load_params().run(run_name)
        summary = load_summary(prepared)
        train, valid = load_split(prepared, "train"), load_split(prepared, "valid")
        result = training.fit(run, train, valid, summary["num_classes"])
        epoch_seconds = statistics.mean(row["seconds"] for row in result.history[1:] or result.history)

        started = time.perf_counter()
        atomic.write_json(training.cache_dir(run) / "history.json", result.history)  # what EpochLog writes per epoch
        per_epoch = time.perf_counter() - started
        started = time.perf_counter()
        training.write_outputs(run, result)
        outputs = time.perf_counter() - started
        started = time.perf_counter()
        metrics.write(run.train_metrics_path, result.metrics)  # again, alone: the DVC metrics and plots files
        atomic.write_text(run.history_path, metrics.history_csv(result.history))
        dvc_files = time.perf_counter() - started
        started = time.perf_counter()
        if not tracking.log_run(run, summary, result.model):  # imports MLflow and creates mlflow.db
            raise RuntimeError("MLflow logging failed; see the warning above")
        mlflow_seconds = [time.perf_counter() - started]
        completed = subprocess.run([sys.executable, "-m", "bench.tracking_cost", "--log-once", run_name],
                                   cwd=project, env=stage_env(), capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"logging from a new process failed:\n{completed.stdout}\n{completed.stderr}")
        mlflow_seconds.append(json.loads(completed.stdout.strip().splitlines()[-1])["seconds"])

    per_run = dvc_files + mlflow_seconds[1]
    spread = {str(count): 100 * (per_epoch + per_run / count) / epoch_seconds for count in (15, 52, 150)}
    print(f"epoch: {epoch_seconds:.2f} s ({len(result.history)} epochs of {result.metrics['train_images']} images, "
          f"{len(valid.y)} validation images)")
    print(f"per epoch: history.json {1000 * per_epoch:.1f} ms = {100 * per_epoch / epoch_seconds:.3f} % of an epoch")
    print(f"per run: DVC metrics + plots files {1000 * dvc_files:.1f} ms; MLflow run {mlflow_seconds[1]:.2f} s "
          f"(from a new process into the existing store; {mlflow_seconds[0]:.2f} s into a fresh store); "
          f"model file (not tracking) {outputs:.2f} s")
    print("per epoch over a run of 15 / 52 / 150 epochs (the cifar10_jpeg profile / the article's early stop / "
          "the article's limit): " + " / ".join(f"{value:.2f} %" for value in spread.values()))
    print(f"RATIO tracking / epoch time = {spread['15'] / 100:.4f} over 15 epochs (target <= {TARGET_PERCENT} %)",
          flush=True)
    return {
        "epoch_seconds": epoch_seconds,
        "epochs": len(result.history),
        "train_images": result.metrics["train_images"],
        "valid_images": len(valid.y),
        "history_json_seconds": per_epoch,
        "dvc_files_seconds": dvc_files,
        "mlflow_seconds_fresh_store": mlflow_seconds[0],
        "mlflow_seconds": mlflow_seconds[1],
        "model_file_seconds": outputs,
        "percent_per_epoch": spread,
    }


def log_once(run_name: str) -> None:
    """In the current project: what the end of a train stage does, timed (the model is already in memory there)."""
    import keras

    from overfit_first import tracking  # first, as in the train stage
    from overfit_first.config import load_params
    from overfit_first.data.splits import dataset_dir, load_summary

    run = load_params().run(run_name)
    summary, model = load_summary(dataset_dir(run.dataset)), keras.saving.load_model(run.model_path)
    started = time.perf_counter()
    if not tracking.log_run(run, summary, model):
        raise RuntimeError("MLflow logging failed; see the warning above")
    print(json.dumps({"seconds": time.perf_counter() - started}))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracking_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--prepared", type=Path, help="a prepared dataset (data/prepared/<name>)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--log-once", metavar="RUN", help=argparse.SUPPRESS)  # the new-process measurement
    args = parser.parse_args()
    if args.log_once:
        log_once(args.log_once)
    elif args.prepared is None:
        parser.error("--prepared is required")
    else:
        write_result(args.out, measure(args.prepared.resolve(), args.images, args.epochs))


if __name__ == "__main__":
    main()
