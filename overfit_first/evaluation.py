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

import csv
import io
import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from overfit_first import atomic, layout, plots, tracking
from overfit_first.data.prepared import Split, dataset_dir, file_sha256, load_split, load_summary
from overfit_first.errors import PipelineError
from overfit_first.inputs import make_dataset
from overfit_first.training import Run, stratified_limit
from overfit_first.verdict import RECOMMENDATIONS, EvaluateSettings, verdict

EPSILON = 1e-7  # Keras clips probabilities to [EPSILON, 1 - EPSILON] in its cross-entropy
REQUIRED_TRAIN_KEYS = ("train_accuracy", "val_accuracy", "train_images")


@dataclass
class Evaluation:
    metrics: dict[str, Any]  # flat: the train stage's keys, then the evaluation's
    per_class: dict[str, Any]  # per-class (and per-superclass) test accuracy and image counts
    actual: list[str]  # the test images' class names, in test-split order
    predicted: list[str]
    confusion: np.ndarray  # counts, row = actual class, column = predicted class
    test_images: np.ndarray  # uint8, for the "Actual / Pred" grid logged to MLflow


def load_train_metrics(run: Run) -> dict[str, Any]:
    path = layout.train_metrics_file(run.dataset, run.model)
    if not path.is_file():
        raise PipelineError(f"{path} not found: train the run first with `dvc repro train@{run.name}`")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PipelineError(f"{path} is corrupt ({error}): retrain with `dvc repro --force train@{run.name}`") \
            from error
    missing = [key for key in REQUIRED_TRAIN_KEYS if key not in metrics]
    if missing:
        raise PipelineError(f"{path} lacks {', '.join(missing)}: it predates this pipeline; retrain with "
                            f"`dvc repro --force train@{run.name}`")
    return metrics


def load_model(run: Run) -> keras.Model:
    path = layout.model_file(run.dataset, run.model)
    if not path.is_file():
        raise PipelineError(f"{path} not found: train the run first with `dvc repro train@{run.name}`")
    try:
        return keras.saving.load_model(path)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise PipelineError(f"{path} cannot be loaded ({error}): retrain with `dvc repro --force train@{run.name}`") \
            from error


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
        result[name] = {"accuracy": round(float(np.mean(predicted[members] == index)), 6) if count else None,
                        "images": count}
    return result


def evaluate(run: Run, settings: EvaluateSettings) -> Evaluation:
    """Measure `run`'s saved model on its training images, the validation and the test split."""
    directory = dataset_dir(run.dataset)
    summary = load_summary(directory)
    class_names = summary["class_names"]
    train_metrics = load_train_metrics(run)
    model = load_model(run)
    train, valid, test = (load_split(directory, split) for split in ("train", "valid", "test"))
    # The training accuracy is measured on the very images the run trained on (train.limit may cap them).
    keep = stratified_limit(train.y, run.train.get("limit"))
    if len(keep) != train_metrics["train_images"]:
        raise PipelineError(
            f"{layout.train_metrics_file(run.dataset, run.model)} says the run trained on "
            f"{train_metrics['train_images']} images, but train.limit and {directory} select {len(keep)}: the model "
            f"is stale; retrain with `dvc repro train@{run.name}`"
        )
    train_subset = Split(train.x[keep], train.y[keep])

    probabilities = {name: predict(model, split, settings.batch_size)
                     for name, split in (("train", train_subset), ("valid", valid), ("test", test))}
    train_accuracy = accuracy(probabilities["train"], train_subset.y)
    val_accuracy = accuracy(probabilities["valid"], valid.y)
    test_accuracy = accuracy(probabilities["test"], test.y)
    tolerance = max(0.005, 2 / max(len(valid.y), 1))  # a near-tie may flip with the batch size
    if abs(val_accuracy - train_metrics["val_accuracy"]) > tolerance:
        print(f"warning: {layout.model_file(run.dataset, run.model)} scores {val_accuracy:.4f} on the validation "
              f"split, but {layout.train_metrics_file(run.dataset, run.model)} reports "
              f"{train_metrics['val_accuracy']:.4f}: the model and its training metrics come from different runs; "
              f"retrain with `dvc repro train@{run.name}`", file=sys.stderr, flush=True)

    predicted = probabilities["test"].argmax(axis=1)
    metrics: dict[str, Any] = dict(train_metrics)
    metrics.update({
        "train_accuracy_inference": round(train_accuracy, 6),
        "val_accuracy_inference": round(val_accuracy, 6),
        "test_accuracy": round(test_accuracy, 6),
        "test_loss": round(loss(model, probabilities["test"], test.y), 6),
    })
    per_class: dict[str, Any] = {"classes": per_class_accuracy(test.y, predicted, class_names)}
    mapping = superclass_map([train, valid, test], len(class_names), directory)
    if mapping is not None:
        predicted_coarse = mapping[predicted]
        metrics["superclass_test_accuracy"] = round(float(np.mean(predicted_coarse == test.y_coarse)), 6)
        per_class["superclasses"] = per_class_accuracy(test.y_coarse, predicted_coarse, summary["superclass_names"])
    fit = verdict(train_accuracy, val_accuracy, settings)
    metrics.update({
        "gap": round(train_accuracy - val_accuracy, 6),
        "gap_test": round(train_accuracy - test_accuracy, 6),
        "gap_history": round(train_metrics["train_accuracy"] - train_metrics["val_accuracy"], 6),
        "test_images": int(len(test.y)),
        "verdict": fit,
        "recommendation": RECOMMENDATIONS[fit],
    })
    return Evaluation(
        metrics=metrics,
        per_class=per_class,
        actual=[class_names[index] for index in test.y],
        predicted=[class_names[index] for index in predicted],
        confusion=plots.confusion_matrix(test.y, predicted, len(class_names)),
        test_images=test.x,
    )


def predictions_csv(actual: list[str], predicted: list[str]) -> str:
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    writer.writerows(zip(actual, predicted))
    return stream.getvalue()


def write_outputs(run: Run, evaluation: Evaluation) -> None:
    """The metrics, per-class and predictions files, each atomically."""
    atomic.write_json(layout.per_class_file(run.dataset, run.model), evaluation.per_class)
    atomic.write_text(layout.predictions_file(run.dataset, run.model),
                      predictions_csv(evaluation.actual, evaluation.predicted))
    # Last: the metrics file is the one DVC and the later stages look at first.
    atomic.write_json(layout.eval_metrics_file(run.dataset, run.model), evaluation.metrics)


def log_to_training_run(run: Run, evaluation: Evaluation) -> bool:
    """Add the test metrics, verdict and evaluation charts to the MLflow run that trained this very model.

    That run is found by its tags `run` and `model_sha256` (the SHA-256 of the .keras file). Tracking is
    best-effort, as in training: any failure is one warning and False, never a failed stage.
    """
    for key, value in tracking.HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri = tracking.tracking_uri(tracking.repo_root())
    sha256 = file_sha256(layout.model_file(run.dataset, run.model))
    try:
        with tracking.store_lock(uri):
            run_id = _log(run, evaluation, uri, sha256)
    except Exception as error:  # noqa: BLE001 - tracking is best-effort: the outputs are already written
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        _warn(run, f"MLflow logging failed ({reason[:300]})", uri)
        return False
    if run_id is None:
        _warn(run, f"no MLflow run tagged run={run.name} and model_sha256={sha256[:12]}... in experiment "
                   f"{tracking.experiment_name(run)}", uri)
        return False
    print(f"{run.name}: test metrics logged to MLflow run {run_id} at {uri}", flush=True)
    return True


def _warn(run: Run, problem: str, uri: str) -> None:
    print(
        f"warning: {problem} at {uri}: the evaluation of {run.name} is in "
        f"{layout.eval_metrics_file(run.dataset, run.model)} only. Once the training run is logged "
        f"(`python -m overfit_first.tracking relog {run.name}`), rerun `python -m stages.evaluate {run.name}`",
        file=sys.stderr, flush=True,
    )


def _log(run: Run, evaluation: Evaluation, uri: str, sha256: str) -> str | None:
    import mlflow  # imported here: a slow import that only tracking needs
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(tracking.experiment_name(run))
    if experiment is None:
        return None
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.run = '{run.name}' and tags.model_sha256 = '{sha256}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        return None
    run_id = found[0].info.run_id
    now = int(time.time() * 1000)
    # Only the evaluation's own numbers: the training run already holds the copied training metrics.
    evaluated = {key: value for key, value in evaluation.metrics.items()
                 if key in ("train_accuracy_inference", "val_accuracy_inference", "test_accuracy", "test_loss",
                            "superclass_test_accuracy", "gap", "gap_test", "gap_history")}
    client.log_batch(run_id, metrics=[Metric(key, float(value), now, 0) for key, value in evaluated.items()])
    client.set_tag(run_id, "verdict", evaluation.metrics["verdict"])
    client.set_tag(run_id, "recommendation", evaluation.metrics["recommendation"])
    client.log_dict(run_id, evaluation.per_class, "evaluation/per_class.json")
    class_names = list(evaluation.per_class["classes"])
    client.log_figure(run_id, plots.confusion_matrices({run.model: evaluation.confusion}, class_names),
                      "evaluation/confusion_matrix.png")
    client.log_figure(run_id, plots.prediction_grid(evaluation.test_images, evaluation.actual, evaluation.predicted,
                                                    f"{run.model} on the {run.dataset} test set"),
                      "evaluation/predictions.png")
    return run_id
