"""Train one run (`runs.<name>` in params.yaml): seed, fit, keep the best epoch, write the outputs.

The best epoch is the one with the highest validation accuracy: its weights are the saved model and its
numbers are the reported metrics, as with the article's `ModelCheckpoint(save_best_only=True)`.
A run killed mid-training (even SIGKILL) resumes from its last completed epoch when restarted: Keras's
BackupAndRestore restores the weights, optimizer and epoch counter, and `EpochLog` below restores what
BackupAndRestore does not (the history so far and the best-so-far of the checkpoint and early stopping).
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from overfit_first import accelerate, atomic, layout
from overfit_first.accelerate import Accelerator
from overfit_first.data.prepared import Split
from overfit_first.errors import PipelineError
from overfit_first.inputs import make_dataset
from overfit_first.models import build_model, build_optimizer

CACHE_ROOT = Path(".cache/train")
HISTORY_COLUMNS = ("epoch", "train_accuracy", "val_accuracy", "train_loss", "val_loss")
PATIENCE = 10  # the article's EarlyStopping(patience=10)


@dataclass(frozen=True)
class Run:
    """Everything params.yaml says about one training run."""

    name: str
    dataset: str
    model: str
    spec: dict[str, Any]  # models.<model>
    dropout: float  # model.dropout
    train: dict[str, Any]  # the global `train` section: seed, max_epochs, limit
    max_epochs: int | None = None  # runs.<name>.max_epochs: this run's own cap (quick profiles)

    @property
    def training(self) -> dict[str, Any]:
        return self.spec["training"]

    @property
    def epochs(self) -> int:
        """The model's epoch count, capped by train.max_epochs and runs.<name>.max_epochs."""
        caps = [cap for cap in (self.train.get("max_epochs"), self.max_epochs) if cap]
        return min([self.training["epochs"], *caps])

    @property
    def seed(self) -> int:
        return int(self.train.get("seed") or 0)

    @property
    def model_path(self) -> Path:
        return layout.model_file(self.dataset, self.model)

    @property
    def metrics_path(self) -> Path:
        return layout.train_metrics_file(self.dataset, self.model)

    @property
    def history_path(self) -> Path:
        return layout.history_file(self.dataset, self.model)

    @property
    def cache_dir(self) -> Path:
        return CACHE_ROOT / self.name


@dataclass
class Result:
    model: keras.Model
    history: list[dict[str, float]]  # one row per epoch, HISTORY_COLUMNS (+ seconds)
    metrics: dict[str, float | int]


def load_run(params: dict[str, Any], name: str) -> Run:
    """Look up runs.<name> and its model in (validated) params.yaml."""
    runs = params.get("runs") or {}
    if name not in runs:
        raise PipelineError(f"params.yaml: no run '{name}' under `runs`; defined runs: {', '.join(runs) or 'none'}")
    entry = runs[name]
    models = params.get("models") or {}
    if entry.get("model") not in models:
        raise PipelineError(f"params.yaml: runs.{name}.model is {entry.get('model')!r}, not one of: {', '.join(models)}")
    train = params.get("train") or {}
    return Run(
        name=name,
        dataset=entry["dataset"],
        model=entry["model"],
        spec=with_batchnorm_momentum(models[entry["model"]], train.get("batchnorm_momentum")),
        dropout=params["model"]["dropout"],
        train=train,
        max_epochs=entry.get("max_epochs"),
    )


def with_batchnorm_momentum(spec: dict[str, Any], momentum: float | None) -> dict[str, Any]:
    """The model spec with `train.batchnorm_momentum` as the default momentum of its BatchNormalization layers.

    Short runs need it: at Keras's default 0.99 the moving statistics that validation uses take ~500 steps
    to settle, so a few-epoch run validates on unsettled statistics (measured: 0.35 vs 0.79 val accuracy).
    """
    if momentum is None:
        return spec
    defaults = dict(spec.get("layer_defaults") or {})
    defaults["BatchNormalization"] = {"momentum": momentum, **(defaults.get("BatchNormalization") or {})}
    return {**spec, "layer_defaults": defaults}


def stratified_limit(y: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the first `limit` images, taken from every class in proportion to its size.

    Deterministic and seed-free: each class contributes its first images, in dataset order, so a larger
    limit only adds images. A plain first-N cut would be skewed on class-sorted data (image folders).
    """
    if limit is None or limit >= len(y):
        return np.arange(len(y))
    position = np.empty(len(y))
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        position[members] = np.arange(len(members)) / len(members)
    return np.sort(np.argsort(position, kind="stable")[:limit])


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

    def __init__(self, cache_dir: Path, checkpoint: keras.callbacks.ModelCheckpoint,
                 early_stopping: keras.callbacks.EarlyStopping | None) -> None:
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
        self.rows.append({
            "epoch": epoch + 1,
            "train_accuracy": float(logs.get("accuracy", math.nan)),
            "val_accuracy": float(logs.get("val_accuracy", math.nan)),
            "train_loss": float(logs.get("loss", math.nan)),
            "val_loss": float(logs.get("val_loss", math.nan)),
            "seconds": time.perf_counter() - self.started,
        })
        atomic.write_json(self.path, self.rows)


def best_row(rows: list[dict[str, float]]) -> dict[str, float]:
    """The first epoch with the highest validation accuracy (the one ModelCheckpoint kept)."""
    return max(rows, key=lambda row: -math.inf if math.isnan(row["val_accuracy"]) else row["val_accuracy"])


def checkpoint_path(cache_dir: Path, epoch: int) -> Path:
    return cache_dir / f"best-{epoch:03d}.weights.h5"


def fit(run: Run, train: Split, valid: Split, num_classes: int, data_fingerprint: Any = None,
        accelerator: Accelerator | None = None) -> Result:
    """Train `run` on the prepared splits and return its best-epoch model, history and metrics.

    `data_fingerprint` (e.g. the split checksums of summary.json) joins the run's settings in deciding
    whether a backup in the cache belongs to this very run; any difference starts training afresh.
    `accelerator` defaults to what params.yaml `train` asks for on the devices present (overfit_first.accelerate).
    """
    # First: a multi-worker strategy must exist before the backend's runtime starts.
    accelerator = accelerator or accelerate.configure(run.train)
    training = run.training
    keep = stratified_limit(train.y, run.train.get("limit"))
    x_train, y_train = train.x[keep], train.y[keep]
    start_fresh_unless_same(run, data_fingerprint)

    seed_everything(run.seed, accelerator)
    spec = accelerate.float32_output(run.spec) if accelerator.mixed_precision else run.spec
    with accelerator.scope():  # under a distribution strategy, the variables are mirrored on every replica
        model = build_model(spec, train.x.shape[1:], num_classes, run.dropout, name=run.model)
        model.compile(
            optimizer=build_optimizer(training, run.model),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=accelerator.jit_compile,
        )
    batch_size = training["batch_size"]
    train_data = make_dataset(x_train, y_train, batch_size, training=True, seed=run.seed,
                              augmentation=run.spec.get("augmentation"))
    valid_data = make_dataset(valid.x, valid.y, batch_size, training=False)

    checkpoint = keras.callbacks.ModelCheckpoint(
        str(run.cache_dir / "best-{epoch:03d}.weights.h5"),
        monitor="val_accuracy", mode="max", save_best_only=True, save_weights_only=True,
    )
    # Early stopping watches the checkpoint's quantity, so "the best epoch" is a single epoch: the one
    # saved, reported, and counted from. (Keras's default, val_loss, keeps falling or rising on its own
    # schedule: it could stop a run whose validation accuracy is still improving.)
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", patience=PATIENCE, restore_best_weights=True,
    ) if training.get("early_stopping") else None
    callbacks = [
        EpochLog(run.cache_dir, checkpoint, early_stopping),
        checkpoint,
        *([early_stopping] if early_stopping else []),
        keras.callbacks.TerminateOnNaN(),
        # Last, so that an epoch counts as done only once everything above has recorded it.
        keras.callbacks.BackupAndRestore(str(run.cache_dir / "backup"), double_checkpoint=True),
    ]
    print(f"{run.name}: {run.model} on {run.dataset}, {len(y_train)} training and {len(valid.y)} validation "
          f"images, up to {run.epochs} epochs, batch {batch_size}; {accelerator.describe()}", flush=True)
    # shuffle=False: the input pipeline shuffles (with the run's seed); verbose=2: one line per epoch in logs.
    model.fit(train_data, validation_data=valid_data, epochs=run.epochs, callbacks=callbacks, shuffle=False,
              verbose=2)

    rows = callbacks[0].rows
    nan_rows = [row for row in rows if math.isnan(row["train_loss"])]
    if nan_rows:
        shutil.rmtree(run.cache_dir, ignore_errors=True)  # a diverged backup must not be resumed
        raise PipelineError(
            f"loss became NaN at epoch {nan_rows[0]['epoch']} of run {run.name}: lower "
            f"models.{run.model}.training.learning_rate (now {training['learning_rate']}) in params.yaml, or check "
            f"data/prepared/{run.dataset} for bad pixels or labels; nothing was written"
        )
    if not rows:  # only if the cache was tampered with: a backup of finished training, but no history
        raise PipelineError(f"{run.cache_dir} holds a backup without its history: delete it and run the stage again")
    best = best_row(rows)
    model.load_weights(checkpoint_path(run.cache_dir, int(best["epoch"])))
    metrics = {
        "train_accuracy": best["train_accuracy"],
        "val_accuracy": best["val_accuracy"],
        "train_loss": best["train_loss"],
        "val_loss": best["val_loss"],
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "total_params": int(model.count_params()),
        "epochs_run": len(rows),
        "best_epoch": int(best["epoch"]),
        "seconds_per_epoch": round(float(np.mean([row["seconds"] for row in rows])), 3),
        "train_images": int(len(y_train)),
    }
    return Result(model=model, history=rows, metrics=metrics)


def start_fresh_unless_same(run: Run, data_fingerprint: Any) -> None:
    """Delete the run's backup unless it was made with exactly these settings and data."""
    settings = {"spec": run.spec, "dropout": run.dropout, "train": run.train, "data": data_fingerprint}
    marker = run.cache_dir / "settings.json"
    text = json.dumps(settings, sort_keys=True, default=str)
    if marker.is_file() and marker.read_text() == text:
        if (run.cache_dir / "backup").is_dir():
            print(f"{run.name}: resuming from the backup in {run.cache_dir}", flush=True)
        return
    shutil.rmtree(run.cache_dir, ignore_errors=True)
    atomic.write_text(marker, text)


def write_outputs(run: Run, result: Result) -> None:
    """The model, metrics and history files, each atomically; then the backup is no longer needed."""
    with atomic.atomic_path(run.model_path) as tmp:
        result.model.save(tmp)
    atomic.write_json(run.metrics_path, result.metrics)
    atomic.write_text(run.history_path, history_csv(result.history))
    shutil.rmtree(run.cache_dir, ignore_errors=True)


def history_csv(rows: list[dict[str, float]]) -> str:
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return stream.getvalue()
