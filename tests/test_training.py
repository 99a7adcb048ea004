"""Training runs as DVC runs them (`python -m stages.train <run>` in a scratch project, real TensorFlow):
reproducible, safe on divergence, and resumable after a hard kill."""

from __future__ import annotations

import copy
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest

from overfit_first import training
from overfit_first.config import validate
from overfit_first.data.splits import load_split, stratified_subset
from overfit_first.training import EpochLog, checkpoint_path

from conftest import run_stage, write_params
from helpers_train import (
    MODEL,
    RUN,
    make_project,
    output_paths,
    project_params,
    read_history,
    read_metrics,
    sqlite_uri,
    start_train,
    train_env,
)


@pytest.mark.slow
def test_same_params_give_the_same_metrics(tmp_path: Path) -> None:
    runs = []
    for name in ("first", "second"):
        project = make_project(tmp_path / name)
        result = run_stage("stages.train", RUN, cwd=project, env=train_env(sqlite_uri(tmp_path)))
        assert result.returncode == 0, result.stderr
        runs.append(project)
    first, second = (read_metrics(project) for project in runs)
    for metrics in (first, second):
        metrics.pop("seconds_per_epoch")  # wall-clock time: the one value that may differ
    assert first == second
    assert read_history(runs[0]) == read_history(runs[1])
    assert first["epochs_run"] == 3 and first["train_images"] == 160
    assert first["val_accuracy"] > 0.5, "the tiny CNN should learn the tiny dataset"
    assert not (runs[0] / ".cache" / "train" / RUN).exists(), "the resume backup is removed on success"


@pytest.mark.slow
def test_saved_model_and_metrics_are_the_best_epoch(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", project_params(epochs=8))
    result = run_stage("stages.train", RUN, cwd=project, env=train_env(sqlite_uri(tmp_path)))
    assert result.returncode == 0, result.stderr
    metrics, history = read_metrics(project), read_history(project)
    val_accuracy = [float(row["val_accuracy"]) for row in history]
    assert [int(row["epoch"]) for row in history] == list(range(1, 9))
    assert metrics["best_epoch"] == int(np.argmax(val_accuracy)) + 1
    assert metrics["best_epoch"] < metrics["epochs_run"], "the noisy tiny dataset should peak before the end"
    best = history[metrics["best_epoch"] - 1]
    assert metrics["val_accuracy"] == float(best["val_accuracy"])
    assert metrics["train_accuracy"] == float(best["train_accuracy"])
    # The saved model is that epoch's: it reproduces the validation accuracy.
    valid = load_split(project / "data" / "prepared" / "tiny", "valid")
    model = keras.saving.load_model(output_paths(project)[0])
    predicted = model.predict(valid.x.astype("float32") / 255.0, verbose=0).argmax(axis=1)
    assert abs(float(np.mean(predicted == valid.y)) - metrics["val_accuracy"]) < 1e-6


@pytest.mark.slow
def test_nan_loss_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    params = project_params()
    # exp() of the sum of 1,024 pixels (about 200) overflows float32 in the first forward pass: loss NaN.
    params["models"]["tiny_cnn"]["layers"] = [
        "Flatten",
        {"Dense": {"units": 8, "activation": "exponential", "kernel_initializer": "ones"}},
        {"Dense": {"units": "$num_classes", "activation": "softmax"}},
    ]
    project = make_project(tmp_path / "project", params)
    result = run_stage("stages.train", RUN, cwd=project, env=train_env(sqlite_uri(tmp_path)))
    assert result.returncode == 1
    assert "error: loss became NaN at epoch 1" in result.stderr
    assert "models.tiny_cnn.fit.learning_rate" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(path.exists() for path in output_paths(project))
    assert not (project / ".cache" / "train" / RUN).exists(), "a diverged backup must not be resumed"


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_epoch(tmp_path: Path) -> None:
    epochs = 6
    reference = make_project(tmp_path / "reference", project_params(epochs=epochs))
    result = run_stage("stages.train", RUN, cwd=reference, env=train_env(sqlite_uri(tmp_path)))
    assert result.returncode == 0, result.stderr

    project = make_project(tmp_path / "project", project_params(epochs=epochs))
    process = start_train(project, train_env(sqlite_uri(tmp_path)))
    seen = []
    for line in process.stdout:  # Keras prints "Epoch 3/6" once epochs 1 and 2 are backed up
        seen.append(line)
        if line.startswith(f"Epoch 3/{epochs}"):
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    assert (project / ".cache" / "train" / RUN / "backup").is_dir()
    assert not any(path.exists() for path in output_paths(project))

    resumed = run_stage("stages.train", RUN, cwd=project, env=train_env(sqlite_uri(tmp_path)))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the backup" in resumed.stdout
    assert "Epoch 1/" not in resumed.stdout and f"Epoch {epochs}/{epochs}" in resumed.stdout
    assert read_metrics(project)["epochs_run"] == read_metrics(reference)["epochs_run"] == epochs
    assert [int(row["epoch"]) for row in read_history(project)] == list(range(1, epochs + 1))
    assert not (project / ".cache" / "train" / RUN).exists()


@pytest.mark.slow
def test_a_lowered_epoch_budget_does_not_resume_an_old_backup(tmp_path: Path) -> None:
    """Killed at epoch 2 of 6, the run's epochs lowered to 3: a fresh start, not "best epoch 2 of 6"."""
    project = make_project(tmp_path / "project", project_params(epochs=6))
    process = start_train(project, train_env(sqlite_uri(tmp_path)))
    for line in process.stdout:
        if line.startswith("Epoch 2/6"):
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    params = project_params(epochs=6)
    params["runs"][RUN]["epochs"] = 3
    write_params(project, params)
    result = run_stage("stages.train", RUN, cwd=project, env=train_env(sqlite_uri(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stdout and "Epoch 1/3" in result.stdout
    assert read_metrics(project)["epochs_run"] == 3


CHANGES_TO_TRAINING = {
    "the run's epochs": lambda p: p["runs"][RUN].update(epochs=2),
    "the seed": lambda p: p["train"].update(seed=1),
    "the training subset": lambda p: p["train"].update(subset_size=50),
    "a knob: batch-norm momentum": lambda p: p["train"].update(batchnorm_momentum=0.9),
    "a knob: dropout": lambda p: p["model"].update(dropout=0.3),
    "the learning rate": lambda p: p["models"][MODEL]["fit"].update(learning_rate=0.005),
    "a layer": lambda p: p["models"][MODEL]["layers"][0]["Conv2D"].update(filters=8),
    "mixed precision": lambda p: p["train"].update(mixed_precision="fp16"),
}


@pytest.mark.parametrize("change", CHANGES_TO_TRAINING.values(), ids=CHANGES_TO_TRAINING.keys())
def test_every_setting_that_changes_training_discards_the_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Callable[[dict], None]
) -> None:
    monkeypatch.chdir(tmp_path)
    context = {"data": {"train": "abc"}, "accelerator": {"policy": "float32"}}

    def backup_survives(params: dict, context: dict) -> bool:
        training.start_fresh_unless_same(validate(params).run(RUN), context)
        kept = (training.cache_dir(validate(params).run(RUN)) / "backup").is_dir()
        (training.cache_dir(validate(params).run(RUN)) / "backup").mkdir(exist_ok=True)
        return kept

    params = project_params(epochs=6)
    backup_survives(params, context)
    assert backup_survives(params, context), "the same settings resume"
    changed = copy.deepcopy(params)
    change(changed)
    assert not backup_survives(changed, context)
    assert not backup_survives(changed, {**context, "data": {"train": "def"}}), "other data: a fresh start"


def test_resume_restores_best_so_far_and_drops_unbacked_epochs(tmp_path: Path) -> None:
    """What Keras's BackupAndRestore leaves out: the history, the checkpoint's and early stopping's best."""
    rows = [
        {"epoch": 1, "train_accuracy": 0.5, "val_accuracy": 0.60, "train_loss": 1.0, "val_loss": 1.0, "seconds": 1},
        {"epoch": 2, "train_accuracy": 0.7, "val_accuracy": 0.80, "train_loss": 0.8, "val_loss": 0.9, "seconds": 1},
        {"epoch": 3, "train_accuracy": 0.8, "val_accuracy": 0.70, "train_loss": 0.6, "val_loss": 1.1, "seconds": 1},
        # recorded, but the process died before the backup of epoch 4 was written
        {"epoch": 4, "train_accuracy": 0.9, "val_accuracy": 0.90, "train_loss": 0.4, "val_loss": 0.8, "seconds": 1},
    ]
    (tmp_path / "history.json").write_text(json.dumps(rows))
    for epoch in (2, 4):
        checkpoint_path(tmp_path, epoch).write_bytes(b"weights")
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "best-{epoch:03d}.weights.h5"),
        monitor="val_accuracy",
        mode="max",
        save_best_only=True,
        save_weights_only=True,
    )
    early_stopping = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=10)
    log = EpochLog(tmp_path, checkpoint, early_stopping)
    log.on_epoch_begin(3)  # BackupAndRestore resumed after epoch 3 (0-based epoch 3 is the 4th)
    assert [row["epoch"] for row in log.rows] == [1, 2, 3]
    assert checkpoint.best == early_stopping.best == 0.80
    assert early_stopping.best_epoch == 1 and early_stopping.wait == 1
    assert sorted(path.name for path in tmp_path.glob("best-*")) == ["best-002.weights.h5"]


def test_subset_is_stratified_and_deterministic() -> None:
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)  # class-sorted, as an image-folder dataset can be
    keep = stratified_subset(y, 20)
    assert np.bincount(y[keep]).tolist() == [12, 6, 2]
    assert set(stratified_subset(y, 10)) <= set(keep), "a larger subset only adds images"
    assert np.array_equal(keep, np.sort(keep)) and np.array_equal(keep, stratified_subset(y, 20))
    assert len(stratified_subset(y, None)) == len(stratified_subset(y, 1000)) == 100


def test_a_run_lowers_its_models_epochs() -> None:
    params = project_params(epochs=30)
    assert validate(params).run(RUN).epochs == 30
    params["runs"][RUN]["epochs"] = 5  # a quick profile's budget for this run only
    assert validate(params).run(RUN).epochs == 5
    params["runs"][RUN]["epochs"] = 50  # never above the model's own (the article's) epochs
    assert validate(params).run(RUN).epochs == 30
