"""Evaluate one trained run on the test set, judge its fit, and log the results into its training's MLflow run.

Accuracy and loss are measured on the saved model in inference mode (dropout off, batch norm on its moving
averages) on three sets: the training images the run was trained on, the validation split, the test split.

- `gap` = train - validation accuracy and `gap_test` = train - test accuracy, and the verdict, use these
  inference-mode numbers: all three come from the same weights, measured the same way. The training log's
  train accuracy is a running average over an epoch of changing weights with dropout active; it understates
  how well exactly the regularized models fit (it can even fall below their validation accuracy).
- The train stage's best-epoch numbers are copied in unchanged (`train_accuracy`, `val_accuracy`, ...), and
  `gap_history` is their difference: the article's own measure, to set beside its reported numbers.
- `val_accuracy_inference` equals the training log's `val_accuracy` when the model file is the one training
  reported on (Keras validates in inference mode too); a mismatch is reported as a stale model.
- `test_loss` is Keras's loss: cross-entropy plus the regularization penalties, like the logged val_loss.
"""

from __future__ import annotations

import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from overfit_first import atomic, layout, metrics
from overfit_first.config import EvaluateConfig, Run
from overfit_first.data.splits import Split, dataset_dir, load_split, load_summary, stratified_subset
from overfit_first.errors import PipelineError
from overfit_first.inputs import make_dataset
from overfit_first.verdict import RECOMMENDATIONS, still_learning, verdict

EPSILON = 1e-7  # Keras clips probabilities to [EPSILON, 1 - EPSILON] in its cross-entropy


@dataclass
class Evaluation:
    metrics: metrics.EvalMetrics
    per_class: dict[str, Any]  # per-class (and per-superclass) test accuracy and image counts
    actual: list[str]  # the test images' class names, in test-split order
    predicted: list[str]
    confusion: np.ndarray  # counts, row = actual class, column = predicted class
    test_images: np.ndarray  # uint8 (N, H, W, C), for the "Actual / Pred" grid logged to MLflow


def load_train_metrics(run: Run) -> metrics.TrainMetrics:
    return metrics.read(run.train_metrics_path, metrics.TrainMetrics, f"dvc repro --force train@{run.name}")


def load_model(run: Run) -> keras.Model:
    path = run.model_path
    if not path.is_file():
        raise PipelineError(f"{path} not found: train the run first with `dvc repro train@{run.name}`")
    fix = f"retrain with `dvc repro --force train@{run.name}`, or restore it with `dvc checkout {path}`"
    # Keras reports a truncated archive as "File not found"; a .keras file is a zip archive.
    if not zipfile.is_zipfile(path):
        raise PipelineError(f"{path} is corrupt or truncated (not a .keras zip archive): {fix}")
    try:
        return keras.saving.load_model(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:  # KeyError: a zip without config.json
        raise PipelineError(f"{path} cannot be loaded ({error}): {fix}") from error


def predict(model: keras.Model, split: Split, batch_size: int) -> np.ndarray:
    """Class probabilities, through the input pipeline the model was trained with (uint8 -> float 0..1)."""
    return model.predict(make_dataset(split.x, split.y, batch_size, training=False), verbose=0)


def accuracy(probabilities: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(probabilities.argmax(axis=1) == y))


def loss(model: keras.Model, probabilities: np.ndarray, y: np.ndarray) -> float:
    """Mean sparse categorical cross-entropy plus the model's regularization penalties, as Keras reports it."""
    picked = np.clip(probabilities[np.arange(len(y)), y], EPSILON, 1 - EPSILON)
    penalties = sum(float(keras.ops.convert_to_numpy(term)) for term in model.losses)
    return float(-np.mean(np.log(picked)) + penalties)


def superclass_map(splits: list[Split], num_classes: int, directory: Path | str) -> np.ndarray | None:
    """fine class id -> superclass id, read off the labelled pairs of `splits`; None without superclasses.

    A class never seen maps to -1 (a prediction of it counts as wrong); a class seen under two
    superclasses means the prepared data is inconsistent.
    """
    if any(split.y_coarse is None for split in splits):
        return None
    mapping = np.full(num_classes, -1, dtype=np.int64)
    for split in splits:
        pairs = np.unique(np.stack([split.y, split.y_coarse], axis=1), axis=0)
        for fine, coarse in pairs:
            if mapping[fine] not in (-1, coarse):
                raise PipelineError(
                    f"{directory}: class {fine} appears under superclasses {mapping[fine]} and {coarse}; each class "
                    "must belong to one superclass: fix hierarchy.csv (or the labels) and rerun the prepare stage"
                )
            mapping[fine] = coarse
    return mapping


def per_class_accuracy(actual: np.ndarray, predicted: np.ndarray, names: list[str]) -> dict[str, dict[str, Any]]:
    """{class name: {"accuracy": fraction right (None without test images), "images": count}}."""
    result = {}
    for index, name in enumerate(names):
        members = actual == index
        count = int(members.sum())
        result[name] = {
            "accuracy": round(float(np.mean(predicted[members] == index)), 6) if count else None,
            "images": count,
        }
    return result


def evaluate(run: Run, settings: EvaluateConfig) -> Evaluation:
    """Measure `run`'s saved model on its training images, the validation and the test split."""
    directory = dataset_dir(run.dataset)
    summary = load_summary(directory)
    class_names = summary["class_names"]
    trained = load_train_metrics(run)
    model = load_model(run)
    train, valid, test = (load_split(directory, split) for split in ("train", "valid", "test"))
    # The training accuracy is measured on the very images the run trained on (train.subset_size may cap them).
    keep = stratified_subset(train.y, run.shared.subset_size)
    if len(keep) != trained.train_images:
        raise PipelineError(
            f"{run.train_metrics_path} says the run trained on {trained.train_images} images, but "
            f"train.subset_size and {directory} select {len(keep)}: the model is stale; retrain with "
            f"`dvc repro train@{run.name}`"
        )
    train_subset = Split(train.x[keep], train.y[keep])

    probabilities = {
        name: predict(model, split, settings.batch_size)
        for name, split in (("train", train_subset), ("valid", valid), ("test", test))
    }
    train_accuracy = accuracy(probabilities["train"], train_subset.y)
    val_accuracy = accuracy(probabilities["valid"], valid.y)
    test_accuracy = accuracy(probabilities["test"], test.y)
    tolerance = max(0.005, 2 / max(len(valid.y), 1))  # a near-tie may flip with the batch size
    if abs(val_accuracy - trained.val_accuracy) > tolerance:
        print(
            f"warning: {run.model_path} scores {val_accuracy:.4f} on the validation split, but "
            f"{run.train_metrics_path} reports {trained.val_accuracy:.4f}: the model and its training metrics "
            f"come from different runs; retrain with `dvc repro train@{run.name}`",
            file=sys.stderr,
            flush=True,
        )

    predicted = probabilities["test"].argmax(axis=1)
    per_class: dict[str, Any] = {"classes": per_class_accuracy(test.y, predicted, class_names)}
    superclass_accuracy = None
    mapping = superclass_map([train, valid, test], len(class_names), directory)
    if mapping is not None:
        predicted_coarse = mapping[predicted]
        superclass_accuracy = round(float(np.mean(predicted_coarse == test.y_coarse)), 6)
        per_class["superclasses"] = per_class_accuracy(test.y_coarse, predicted_coarse, summary["superclass_names"])
    history = metrics.read_history(run.history_path, f"dvc repro --force train@{run.name}")
    learning = still_learning(history["val_accuracy"], len(valid.y), settings)
    fit = verdict(train_accuracy, val_accuracy, settings, learning)
    evaluated = metrics.EvalMetrics(
        **trained.model_dump(),
        train_accuracy_inference=round(train_accuracy, 6),
        val_accuracy_inference=round(val_accuracy, 6),
        test_accuracy=round(test_accuracy, 6),
        test_loss=round(loss(model, probabilities["test"], test.y), 6),
        superclass_test_accuracy=superclass_accuracy,
        gap=round(train_accuracy - val_accuracy, 6),
        gap_test=round(train_accuracy - test_accuracy, 6),
        gap_history=round(trained.train_accuracy - trained.val_accuracy, 6),
        test_images=int(len(test.y)),
        verdict=fit,
        recommendation=RECOMMENDATIONS[fit],
    )
    return Evaluation(
        metrics=evaluated,
        per_class=per_class,
        actual=[class_names[index] for index in test.y],
        predicted=[class_names[index] for index in predicted],
        confusion=metrics.confusion_matrix(test.y, predicted, len(class_names)),
        test_images=test.x,
    )


def write_outputs(run: Run, evaluation: Evaluation) -> None:
    """The metrics, per-class and predictions files, and the published copy of the training log (the train
    stage's metrics and history, which DVC caches and git does not keep: overfit_first.layout), each atomically."""
    for trained, published in (
        (run.train_metrics_path, layout.published_train_metrics_file(run.dataset, run.model)),
        (run.history_path, layout.published_history_file(run.dataset, run.model)),
    ):
        atomic.write_text(published, trained.read_text(encoding="utf-8"))
    atomic.write_json(layout.per_class_file(run.dataset, run.model), evaluation.per_class)
    predictions = pd.DataFrame({"actual": evaluation.actual, "predicted": evaluation.predicted})
    atomic.write_text(
        layout.predictions_file(run.dataset, run.model), predictions.to_csv(index=False, lineterminator="\n")
    )
    # Last: the metrics file is the one DVC and the later stages look at first.
    metrics.write(run.eval_metrics_path, evaluation.metrics)
