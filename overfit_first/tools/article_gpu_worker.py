"""One run of the article's GPU script (overfit_first.tools.article_gpu) in its own process: trained, evaluated and
written as the pipeline's train and evaluate stages write it, on Keras 3 with JAX and TensorFlow hidden.

`python -m overfit_first.tools.article_gpu --worker RUN` runs `worker`; BudgetStop ends its training within the
wall-clock budget, EpochProgress prints a line per epoch.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from overfit_first import atomic, config
from overfit_first.errors import PipelineError


class _Absent(importlib.abc.MetaPathFinder):
    """An import hook under which `import tensorflow` fails as if TensorFlow were not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r} (hidden: this process runs on JAX alone)", name=name)
        return None


def hide_tensorflow() -> None:
    """Make this process run as on a machine without TensorFlow, also where it is installed.

    Keras probes for TensorFlow (e.g. when it saves a model) and overfit_first.inputs would feed batches through
    tf.data: an imported TensorFlow could claim the GPU's memory beside JAX. The hook goes just before the
    path-based finder, after any hook installed earlier (a test's, that records import attempts).
    """
    finders = sys.meta_path
    if any(isinstance(finder, _Absent) for finder in finders):
        return
    index = next((i for i, finder in enumerate(finders) if finder is importlib.machinery.PathFinder), len(finders))
    finders.insert(index, _Absent())


def worker(run_name: str, work: Path, out: Path, deadline: float, steps_per_execution: int, precision: str) -> None:
    """Train, evaluate and write one run, in this process (KERAS_BACKEND=jax); cwd becomes `work`.

    `deadline` (time.time() seconds) ends training after the last epoch that fits before it.
    Writes the pipeline's metrics files (work/metrics links to out/metrics) and out/runs/<run>.json.
    """
    os.chdir(work)
    hide_tensorflow()
    import jax
    import keras
    import numpy as np

    from overfit_first import accelerate, evaluation, training
    from overfit_first.data.splits import SCALE, dataset_dir, load_split, load_summary, stratified_subset
    from overfit_first.inputs import augmentation_layers
    from overfit_first.models import build_model, build_optimizer

    if keras.backend.backend() != "jax":
        raise PipelineError(f"KERAS_BACKEND is {keras.backend.backend()!r}: this script runs on jax only")
    params = config.validate(json.loads((work / "params.json").read_text()))
    run = params.run(run_name)
    fit_config = run.spec.fit
    gpus = accelerate.gpu_count()
    policy = ("mixed_bfloat16" if gpus else "float32") if precision == "auto" else precision
    keras.mixed_precision.set_global_policy(policy)
    device = jax.devices()[0]
    status: dict[str, Any] = {
        "run": run.name,
        "dataset": run.dataset,
        "model": run.model,
        "device": f"{device.platform}: {getattr(device, 'device_kind', '?')} ({len(jax.devices())} device(s))",
        "jax": jax.__version__,
        "keras": keras.__version__,
        "policy": policy,
        "jit_compile": True,
        "steps_per_execution": steps_per_execution,
        "batch_size": fit_config.batch_size,
        "epochs_article": fit_config.epochs,
        "epochs_planned": run.epochs,
        "early_stopping": fit_config.early_stopping,
    }

    directory = dataset_dir(run.dataset)
    summary = load_summary(directory)
    train, valid = load_split(directory, "train"), load_split(directory, "valid")
    keep = stratified_subset(train.y, run.shared.subset_size)
    # float32 0..1 in host memory, as overfit_first.inputs feeds the pipeline's models (uint8 * SCALE).
    x_train, y_train = train.x[keep].astype(np.float32) * np.float32(SCALE), train.y[keep]
    x_valid = valid.x.astype(np.float32) * np.float32(SCALE)

    keras.utils.set_random_seed(run.shared.seed)
    model = build_model(run.spec, train.x.shape[1:], summary["num_classes"], run.knobs, name=run.model)
    fitted = model
    if run.spec.augmentation is not None:
        # On the device, inside the compiled step: the article's ImageDataGenerator as Keras layers (training only).
        layers = augmentation_layers(run.spec.augmentation.model_dump(), run.shared.seed)
        for layer in layers:
            # RandomRotation, RandomShear, RandomTranslation and RandomZoom say they do not support XLA (for
            # TensorFlow's sake), which would make Keras run the whole step eagerly; on JAX they compile.
            layer.supports_jit = True
        fitted = keras.Sequential([keras.Input(shape=train.x.shape[1:]), *layers, model], name=f"{run.model}_augmented")
    fitted.compile(
        optimizer=build_optimizer(fit_config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=True,
        steps_per_execution=steps_per_execution,
    )
    cache = training.cache_dir(run)
    shutil.rmtree(cache, ignore_errors=True)
    epoch_log, best_epoch = training.best_epoch_callbacks(fit_config, cache)
    budget = BudgetStop(deadline)
    progress = EpochProgress(run.epochs, epoch_log, deadline)
    print(
        f"{run.model} on {run.dataset}: {len(y_train)} training and {len(valid.y)} validation images, up to "
        f"{run.epochs} epochs (article {fit_config.epochs}), batch {fit_config.batch_size}, early stopping "
        f"{'on' if fit_config.early_stopping else 'off'}; {status['device']}, jax {jax.__version__}, keras "
        f"{keras.__version__}, policy {policy}, XLA, {steps_per_execution} steps per execution",
        flush=True,
    )
    started = time.perf_counter()
    fitted.fit(
        x_train,
        y_train,
        batch_size=fit_config.batch_size,
        epochs=run.epochs,
        validation_data=(x_valid, valid.y),
        shuffle=True,
        callbacks=[*best_epoch, budget, progress],
        verbose=0,
    )
    rows = epoch_log.rows
    status["train_seconds"] = round(time.perf_counter() - started, 1)
    status["epochs_done"] = len(rows)
    status["stopped_by"] = "budget" if budget.stopped else "epochs" if len(rows) >= run.epochs else "early stopping"
    seconds = [row["seconds"] for row in rows]
    status["first_epoch_seconds"] = round(seconds[0], 2) if seconds else None  # includes XLA compilation
    status["median_epoch_seconds"] = round(statistics.median(seconds[1:] or seconds), 3) if seconds else None
    steps = math.ceil(len(y_train) / fit_config.batch_size)
    status["ms_per_step"] = round(1000 * status["median_epoch_seconds"] / steps, 2) if seconds else None
    result = training.best_epoch_result(run, model, rows, len(y_train), fitted=None if fitted is model else fitted)
    training.write_outputs(run, result)

    started = time.perf_counter()
    evaluated = evaluation.evaluate(run, params.evaluate)
    evaluation.write_outputs(run, evaluated)
    status["evaluate_seconds"] = round(time.perf_counter() - started, 1)
    found = evaluated.metrics
    print(
        f"done: {status['epochs_done']} epochs ({status['stopped_by']}), best epoch {found.best_epoch}: train "
        f"{found.train_accuracy:.3f} val {found.val_accuracy:.3f} test {found.test_accuracy:.3f}, gap "
        f"{found.gap:.3f}: {found.verdict}",
        flush=True,
    )
    atomic.write_json(out / "runs" / f"{run.name}.json", status)


class BudgetStop:
    """A Keras callback (built lazily: keras is imported by the worker only) that ends training after an epoch
    when the next one, as long as the last, would end after `deadline` (time.time() seconds).

    The first epoch of a fit also compiles the steps (XLA), so it says nothing of the next one's length: after
    it, training stops only once the deadline has passed.
    """

    def __new__(cls, deadline: float) -> Any:
        import keras

        class _BudgetStop(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.deadline, self.stopped, self.started = deadline, False, 0.0
                self.first_epoch: int | None = None

            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self.started = time.time()
                if self.first_epoch is None:
                    self.first_epoch = epoch

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                if self.model.stop_training:  # early stopping ends it anyway
                    return
                last = 0.0 if epoch == self.first_epoch else time.time() - self.started
                if time.time() + last > self.deadline:
                    self.model.stop_training, self.stopped = True, True
                    print(f"epoch {epoch + 1}: stopping, the next epoch would overrun the budget", flush=True)

        return _BudgetStop()


class EpochProgress:
    """A Keras callback printing one line per epoch: time, accuracies, best so far, budget left."""

    def __new__(cls, epochs: int, epoch_log: Any, deadline: float) -> Any:
        import keras

        class _EpochProgress(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                rows = epoch_log.rows  # the training.EpochLog (it replaces its list when a fit starts)
                row = rows[-1] if rows else {}
                best = max(rows, key=lambda r: r["val_accuracy"]) if rows else {}
                print(
                    f"epoch {epoch + 1}/{epochs} {row.get('seconds', math.nan):.1f}s: train "
                    f"{row.get('train_accuracy', math.nan):.4f} val {row.get('val_accuracy', math.nan):.4f} "
                    f"loss {row.get('train_loss', math.nan):.4f}/{row.get('val_loss', math.nan):.4f}; best val "
                    f"{best.get('val_accuracy', math.nan):.4f} at {int(best.get('epoch', 0))}; "
                    f"{max(0.0, deadline - time.time()):.0f}s of budget left",
                    flush=True,
                )

        return _EpochProgress()
