"""Train one run (`runs.<name>` in params.yaml): seed, fit, keep the best epoch, write the outputs.

The best epoch is the one with the highest validation accuracy: its weights are the saved model and its
numbers are the reported metrics, as with the article's `ModelCheckpoint(save_best_only=True)`.
A run killed mid-training (even SIGKILL) resumes from its last completed epoch when restarted: Keras's
BackupAndRestore restores the weights, optimizer and epoch counter, and `EpochLog` below restores what
BackupAndRestore does not (the history so far and the best-so-far of the checkpoint and early stopping).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from overfit_first import accelerate, atomic, metrics
from overfit_first.accelerate import Accelerator
from overfit_first.config import FitConfig, Run
from overfit_first.data.splits import Split, stratified_subset
from overfit_first.errors import PipelineError
from overfit_first.inputs import make_dataset
from overfit_first.models import build_model, build_optimizer

CACHE_ROOT = Path(".cache/train")
PATIENCE = 10  # the article's EarlyStopping(patience=10)


@dataclass
class Result:
    model: keras.Model
    history: list[dict[str, float]]  # one row per epoch, metrics.HISTORY_COLUMNS (+ seconds)
    metrics: metrics.TrainMetrics


def cache_dir(run: Run) -> Path:
    """Where a run's backup, history so far and best checkpoint live while it trains."""
    return CACHE_ROOT / run.name


def seed_everything(seed: int, accelerator: Accelerator) -> None:
    """Same params, same metrics: seed Python, NumPy and the backend, and make its ops deterministic (not under XLA)."""
    keras.utils.set_random_seed(seed)
    accelerate.deterministic_ops(accelerator)


class EpochLog(keras.callbacks.Callback):
    """Keeps the per-epoch history in the run's cache so that a resumed fit continues it.

    On the first epoch of a fit it drops the rows of epochs BackupAndRestore did not back up, then hands
    the best-so-far back to the checkpoint and early-stopping callbacks (Keras restarts them from scratch)
    and deletes checkpoints of epochs that are no longer the best.
    """

    def __init__(
        self,
        cache_dir: Path,
        checkpoint: keras.callbacks.ModelCheckpoint,
        early_stopping: keras.callbacks.EarlyStopping | None,
    ) -> None:
        super().__init__()
        self.path = cache_dir / "history.json"
        self.checkpoint, self.early_stopping = checkpoint, early_stopping
        self.rows: list[dict[str, float]] = json.loads(self.path.read_text()) if self.path.is_file() else []
        self.resumed = False
        self.started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self.resumed:
            self.resumed = True
            self.rows = self.rows[:epoch]  # `epoch` is the first epoch this fit runs (0-based)
            if self.rows:
                best = best_row(self.rows)
                self.checkpoint.best = best["val_accuracy"]
                if self.early_stopping is not None:
                    self.early_stopping.best = best["val_accuracy"]
                    self.early_stopping.best_epoch = int(best["epoch"]) - 1
                    self.early_stopping.wait = len(self.rows) - int(best["epoch"])
        # Every checkpoint but the best one so far is stale: the backup of the last epoch is complete.
        keep = checkpoint_path(self.path.parent, int(best_row(self.rows)["epoch"])) if self.rows else None
        for path in self.path.parent.glob("best-*.weights.h5"):
            if path != keep:
                path.unlink()
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.rows.append(
            {
                "epoch": epoch + 1,
                "train_accuracy": float(logs.get("accuracy", math.nan)),
                "val_accuracy": float(logs.get("val_accuracy", math.nan)),
                "train_loss": float(logs.get("loss", math.nan)),
                "val_loss": float(logs.get("val_loss", math.nan)),
                "seconds": time.perf_counter() - self.started,
            }
        )
        atomic.write_json(self.path, self.rows)


def best_row(rows: list[dict[str, float]]) -> dict[str, float]:
    """The first epoch with the highest validation accuracy (the one ModelCheckpoint kept)."""
    return max(rows, key=lambda row: -math.inf if math.isnan(row["val_accuracy"]) else row["val_accuracy"])


def checkpoint_path(cache_dir: Path, epoch: int) -> Path:
    return cache_dir / f"best-{epoch:03d}.weights.h5"


def fit(
    run: Run,
    train: Split,
    valid: Split,
    num_classes: int,
    data_fingerprint: Any = None,
    accelerator: Accelerator | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> Result:
    """Train `run` on the prepared splits and return its best-epoch model, history and metrics.

    `data_fingerprint` (e.g. the split checksums of summary.json) joins the run's settings in deciding
    whether a backup in the cache belongs to this very run; any difference starts training afresh.
    `accelerator` defaults to what params.yaml `train` asks for on the devices present (overfit_first.accelerate).
    `callbacks` are observers (live MLflow logging: overfit_first.tracking): they run after an epoch is backed
    up, read the epoch's logs and must not change the model or its training.
    Raises PipelineError when the loss becomes NaN (nothing is written then).
    """
    # First: a multi-worker strategy must exist before the backend's runtime starts.
    accelerator = accelerator or accelerate.configure(run.shared)
    fit_config = run.spec.fit
    keep = stratified_subset(train.y, run.shared.subset_size)
    x_train, y_train = train.x[keep], train.y[keep]
    directory = cache_dir(run)
    start_fresh_unless_same(run, {"data": data_fingerprint, "accelerator": accelerator.fingerprint()})

    seed_everything(run.shared.seed, accelerator)
    with accelerator.scope():  # under a distribution strategy, the variables are mirrored on every replica
        model = build_model(run.spec, train.x.shape[1:], num_classes, run.knobs, name=run.model)
        model.compile(
            optimizer=build_optimizer(fit_config),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=accelerator.jit_compile,
        )
    augmentation = run.spec.augmentation.model_dump() if run.spec.augmentation else None
    train_data = make_dataset(
        x_train, y_train, fit_config.batch_size, training=True, seed=run.shared.seed, augmentation=augmentation
    )
    valid_data = make_dataset(valid.x, valid.y, fit_config.batch_size, training=False)

    epoch_log, best_epoch = best_epoch_callbacks(fit_config, directory)
    callbacks = [
        *best_epoch,
        # After the above, so that an epoch counts as done only once everything above has recorded it.
        keras.callbacks.BackupAndRestore(str(directory / "backup"), double_checkpoint=True),
        # Observers last: what they report of an epoch is backed up, so a resumed run never repeats it.
        *callbacks,
    ]
    print(
        f"{run.name}: {run.model} on {run.dataset}, {len(y_train)} training and {len(valid.y)} validation "
        f"images, up to {run.epochs} epochs, batch {fit_config.batch_size}; {accelerator.describe()}",
        flush=True,
    )
    # shuffle=False: the input pipeline shuffles (with the run's seed); verbose=2: one line per epoch in logs.
    model.fit(train_data, validation_data=valid_data, epochs=run.epochs, callbacks=callbacks, shuffle=False, verbose=2)

    return best_epoch_result(run, model, epoch_log.rows, len(y_train))


def best_epoch_callbacks(fit_config: FitConfig, directory: Path) -> tuple[EpochLog, list[keras.callbacks.Callback]]:
    """The callbacks that make a fit keep its best epoch, as the article's: the epoch log, ModelCheckpoint of
    the best validation accuracy into `directory`, the model's early stopping (if its fit block asks for it)
    and TerminateOnNaN, in that order. Returns the epoch log (its rows are the history) and the list."""
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(directory / "best-{epoch:03d}.weights.h5"),
        monitor="val_accuracy",
        mode="max",
        save_best_only=True,
        save_weights_only=True,
    )
    # Early stopping watches the checkpoint's quantity, so "the best epoch" is a single epoch: the one
    # saved, reported, and counted from. (Keras's default, val_loss, keeps falling or rising on its own
    # schedule: it could stop a run whose validation accuracy is still improving.)
    early_stopping = (
        keras.callbacks.EarlyStopping(
            monitor="val_accuracy",
            mode="max",
            patience=PATIENCE,
            restore_best_weights=True,
        )
        if fit_config.early_stopping
        else None
    )
    epoch_log = EpochLog(directory, checkpoint, early_stopping)
    callbacks = [epoch_log, checkpoint, *([early_stopping] if early_stopping else []), keras.callbacks.TerminateOnNaN()]
    return epoch_log, callbacks


def best_epoch_result(
    run: Run, model: keras.Model, rows: list[dict[str, float]], train_images: int, fitted: keras.Model | None = None
) -> Result:
    """`model` with the weights of its best epoch (the checkpoint in the run's cache), its history and metrics.

    `rows` is the epoch log of the fit; `fitted` the model that was fitted, when it wraps `model` (e.g. with
    augmentation layers in front): the checkpoint holds its weights. Raises PipelineError when the loss became
    NaN (the cache is deleted then) or no epoch was logged.
    """
    directory = cache_dir(run)
    nan_rows = [row for row in rows if math.isnan(row["train_loss"])]
    if nan_rows:
        shutil.rmtree(directory, ignore_errors=True)  # a diverged backup must not be resumed
        raise PipelineError(
            f"loss became NaN at epoch {nan_rows[0]['epoch']} of run {run.name}: lower "
            f"models.{run.model}.fit.learning_rate (now {run.spec.fit.learning_rate}) in params.yaml, or check "
            f"data/prepared/{run.dataset} for bad pixels or labels; nothing was written"
        )
    if not rows:  # only if the cache was tampered with: a backup of finished training, but no history
        raise PipelineError(f"{directory} holds a backup without its history: delete it and run the stage again")
    best = best_row(rows)
    (fitted or model).load_weights(checkpoint_path(directory, int(best["epoch"])))
    result = metrics.TrainMetrics(
        train_accuracy=best["train_accuracy"],
        val_accuracy=best["val_accuracy"],
        train_loss=best["train_loss"],
        val_loss=best["val_loss"],
        trainable_params=int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        total_params=int(model.count_params()),
        epochs_run=len(rows),
        best_epoch=int(best["epoch"]),
        seconds_per_epoch=round(float(np.mean([row["seconds"] for row in rows])), 3),
        train_images=int(train_images),
    )
    return Result(model=model, history=rows, metrics=result)


def start_fresh_unless_same(run: Run, context: dict[str, Any]) -> None:
    """Delete the run's backup unless it was made with exactly these settings, data and devices.

    The fingerprint is everything that changes training: the model as params.yaml holds it, the knobs it uses,
    the whole `train` section, the epoch count, plus `context` (the data's checksums, the numerics in effect).
    """
    settings = {
        "spec": run.spec.model_dump(),
        "knobs": run.knobs,
        "train": run.shared.model_dump(),
        "epochs": run.epochs,
        "backend": keras.backend.backend(),
        **context,
    }
    directory = cache_dir(run)
    marker = directory / "settings.json"
    text = json.dumps(settings, sort_keys=True, default=str)
    if marker.is_file() and marker.read_text() == text:
        if (directory / "backup").is_dir():
            print(f"{run.name}: resuming from the backup in {directory}", flush=True)
        return
    shutil.rmtree(directory, ignore_errors=True)
    atomic.write_text(marker, text)


def write_outputs(run: Run, result: Result) -> None:
    """The model, metrics and history files, each atomically; then the backup is no longer needed."""
    with atomic.atomic_path(run.model_path) as tmp:
        result.model.save(tmp)
    metrics.write(run.train_metrics_path, result.metrics)
    atomic.write_text(run.history_path, metrics.history_csv(result.history))
    shutil.rmtree(cache_dir(run), ignore_errors=True)
