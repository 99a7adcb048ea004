"""Cost of tracking in the train stage, the live MLflow run included, against epoch time.

    python -m bench.tracking_cost --prepared DIR [--images 10000] [--epochs 3] [--out FILE]

Trains cnn_simplified as the train stage does (`training.fit` with validation, checkpoint, resume backups and
the live MLflow run of `tracking.live_run`: its Keras callback, its logging thread and MLflow's system-metrics
thread) in a scratch project whose data/prepared/<dataset> links to DIR, logging to a fresh SQLite store there,
and measures what tracking adds:

    per epoch   the callback's time on the training thread; the CPU time of the tracking threads (the logging
                thread, MLflow's system-metrics sampler) from the first epoch's end to the last one's: on a
                machine whose cores training keeps busy, that time is taken from training; EpochLog's
                history.json (the resumable history)
    per run     opening the run (the tracking threads' CPU time until the first epoch ends, the store created
                there), importing MLflow (timed in a new process), the DVC metrics and plots files, and
                `LiveRun.finish` after training (best-epoch metrics, charts, the model, the end of the run)

Per-run costs are spread over a run of E epochs: (per run) / E per epoch. The baseline is the stage's own
epoch time (training and validation) after the first epoch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import REPO, stage_env, write_result
from overfit_first.config import read_yaml

TARGET_PERCENT = 3.0
MODEL = "cnn_simplified"
IMPORT_MLFLOW = (
    "import time, keras; started = time.perf_counter(); import mlflow, mlflow.keras; "
    "print(time.perf_counter() - started)"
)


def tracking_cpu_seconds() -> float:
    """CPU time of every Python thread but the main one: the tracking threads (TensorFlow's are native)."""
    main = threading.main_thread()
    total = 0.0
    for thread in threading.enumerate():
        if thread is main or thread.ident is None:
            continue
        try:
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, ProcessLookupError):  # ended meanwhile
            continue
    return total


def timed_callback(inner: Any) -> Any:
    """`inner` (a Keras callback) with the training thread's time in it, and the tracking threads' CPU time at
    each epoch's end."""
    import keras

    class Timed(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.begin_seconds = 0.0
            self.epoch_seconds: list[float] = []
            self.cpu_at_epoch_end: list[float] = []

        def on_train_begin(self, logs: dict | None = None) -> None:
            started = time.perf_counter()
            inner.on_train_begin(logs)
            self.begin_seconds = time.perf_counter() - started

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            started = time.perf_counter()
            inner.on_epoch_end(epoch, logs)
            self.epoch_seconds.append(time.perf_counter() - started)
            self.cpu_at_epoch_end.append(tracking_cpu_seconds())

    return Timed()


def measure(prepared: Path, images: int, epochs: int) -> dict[str, Any]:
    from overfit_first import atomic, metrics, tracking, training
    from overfit_first.config import load_params
    from overfit_first.data.splits import load_split, load_summary

    if epochs < 2:
        raise SystemExit("--epochs must be at least 2: the per-epoch costs are measured between epoch ends")
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
            os.environ.pop(key, None)  # the default store: <project>/mlflow.db, created by this run

        run = load_params().run(run_name)
        summary = load_summary(prepared)
        train, valid = load_split(prepared, "train"), load_split(prepared, "valid")
        with tracking.live_run(run, summary, example=valid.x[:1]) as live:
            timed = timed_callback(live.callback)
            result = training.fit(run, train, valid, summary["num_classes"], callbacks=[timed])
            epoch_seconds = statistics.mean(row["seconds"] for row in result.history[1:])

            started = time.perf_counter()
            atomic.write_json(training.cache_dir(run) / "history.json", result.history)  # EpochLog, per epoch
            history_json = time.perf_counter() - started
            started = time.perf_counter()
            training.write_outputs(run, result)
            outputs = time.perf_counter() - started
            started = time.perf_counter()
            metrics.write(run.train_metrics_path, result.metrics)  # again, alone: the DVC metrics and plots files
            atomic.write_text(run.history_path, metrics.history_csv(result.history))
            dvc_files = time.perf_counter() - started
            started = time.perf_counter()
            if not live.finish(result.model):
                raise RuntimeError("MLflow logging failed; see the warning above")
            finish = time.perf_counter() - started
        imported = subprocess.run(
            [sys.executable, "-c", IMPORT_MLFLOW],
            cwd=project,
            env=stage_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        import_seconds = float(imported.stdout.strip().splitlines()[-1])

    measured_epochs = len(timed.cpu_at_epoch_end) - 1
    background = (timed.cpu_at_epoch_end[-1] - timed.cpu_at_epoch_end[0]) / measured_epochs
    callback = statistics.mean(timed.epoch_seconds)
    per_epoch = callback + background + history_json
    opening = timed.begin_seconds + timed.cpu_at_epoch_end[0]
    per_run = opening + import_seconds + dvc_files + finish
    spread = {str(count): 100 * (per_epoch + per_run / count) / epoch_seconds for count in (15, 52, 150)}
    print(
        f"epoch: {epoch_seconds:.2f} s ({len(result.history)} epochs of {result.metrics.train_images} images, "
        f"{len(valid.y)} validation images)"
    )
    print(
        f"per epoch: callback {1000 * callback:.2f} ms on the training thread, tracking threads "
        f"{1000 * background:.1f} ms CPU, history.json {1000 * history_json:.1f} ms = "
        f"{100 * per_epoch / epoch_seconds:.3f} % of an epoch"
    )
    print(
        f"per run: opening the run {opening:.2f} s (CPU, in the logging thread), importing MLflow "
        f"{import_seconds:.2f} s, DVC metrics + plots files {1000 * dvc_files:.1f} ms, finishing the run "
        f"{finish:.2f} s; model file (not tracking) {outputs:.2f} s"
    )
    print(
        "per epoch over a run of 15 / 52 / 150 epochs (the cifar10_jpeg profile / the article's early stop / "
        "the article's limit): " + " / ".join(f"{value:.2f} %" for value in spread.values())
    )
    print(
        f"RATIO tracking / epoch time = {spread['15'] / 100:.4f} over 15 epochs (target <= {TARGET_PERCENT} %)",
        flush=True,
    )
    return {
        "epoch_seconds": epoch_seconds,
        "epochs": len(result.history),
        "train_images": result.metrics.train_images,
        "valid_images": len(valid.y),
        "callback_seconds_per_epoch": callback,
        "tracking_threads_cpu_seconds_per_epoch": background,
        "history_json_seconds": history_json,
        "open_seconds": opening,
        "import_mlflow_seconds": import_seconds,
        "dvc_files_seconds": dvc_files,
        "finish_seconds": finish,
        "model_file_seconds": outputs,
        "per_epoch_seconds": per_epoch,
        "per_run_seconds": per_run,
        "percent_per_epoch": spread,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracking_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--prepared", type=Path, required=True, help="a prepared dataset (data/prepared/<name>)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3, help="at least 2 (default 3)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    write_result(args.out, measure(args.prepared.resolve(), args.images, args.epochs))


if __name__ == "__main__":
    main()
