"""The metrics contract: every number the train and evaluate stages write, declared once, with its unit.

Writers build these models and readers parse files through them, so a renamed or missing key fails where the
file is read, naming the file and the command that rebuilds it. Units: fractions are 0..1 (accuracy, gap),
seconds are wall-clock seconds, counts are integers; losses are Keras' cross-entropy plus regularization.

    metrics/<dataset>/train/<model>.json        TrainMetrics (the best epoch of the training log)
    metrics/<dataset>/train/<model>.history.csv HISTORY_COLUMNS, one row per epoch
    metrics/<dataset>/<model>.json              EvalMetrics (TrainMetrics plus the evaluation)
    metrics/<dataset>.comparison.json           Comparison (overfitting model vs simplified and augmented)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from overfit_first import atomic
from overfit_first.errors import PipelineError

Fraction = Annotated[float, Field(ge=0.0, le=1.0, description="fraction, 0..1")]
Gap = Annotated[float, Field(ge=-1.0, le=1.0, description="difference of two fractions, -1..1")]
Loss = Annotated[float, Field(description="cross-entropy plus regularization penalties, nats")]
Seconds = Annotated[float, Field(ge=0.0, description="wall-clock seconds")]
Count = Annotated[int, Field(ge=0, description="count")]
Verdict = Literal["still learning", "true overfit", "partial overfit", "underfit", "good fit"]

# The per-epoch training log (train stage), in column order; `seconds` is kept in the cache only.
HISTORY_COLUMNS = ("epoch", "train_accuracy", "val_accuracy", "train_loss", "val_loss")


class TrainMetrics(BaseModel):
    """The train stage's numbers: the training log at the best epoch (highest validation accuracy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_accuracy: Fraction  # running average over the best epoch, dropout on
    val_accuracy: Fraction
    train_loss: Loss
    val_loss: Loss
    trainable_params: Count
    total_params: Count
    epochs_run: Count
    best_epoch: Count
    seconds_per_epoch: Seconds
    train_images: Count


class EvalMetrics(TrainMetrics):
    """The evaluate stage's file: the training numbers, then the saved model measured in inference mode."""

    train_accuracy_inference: Fraction
    val_accuracy_inference: Fraction
    test_accuracy: Fraction
    test_loss: Loss
    superclass_test_accuracy: Fraction | None = None  # datasets with superclasses (CIFAR-100) only
    gap: Gap  # train_accuracy_inference - val_accuracy_inference: the verdict's gap
    gap_test: Gap  # train_accuracy_inference - test_accuracy
    gap_history: Gap  # train_accuracy - val_accuracy (training log)
    test_images: Count
    verdict: Verdict
    recommendation: str


class Comparison(BaseModel):
    """One dataset's overfitting model against its simplified and augmented ones (overfit_first.comparison).

    Flat, so that `dvc metrics show` lists it as one row per dataset; a role without a model is left out.
    <role>_val_accuracy_gain and _test_accuracy_gain: <role>'s accuracy minus the overfitting model's;
    <role>_gap_closed: the overfitting model's gap minus <role>'s (positive: a smaller gap). Inference mode.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    overfit: str | None = None
    simplified: str | None = None
    augmented: str | None = None
    simplified_val_accuracy_gain: Gap | None = None
    simplified_test_accuracy_gain: Gap | None = None
    simplified_gap_closed: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    augmented_val_accuracy_gain: Gap | None = None
    augmented_test_accuracy_gain: Gap | None = None
    augmented_gap_closed: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None


# What the evaluation adds to a training's numbers (logged to the training's MLflow run).
EVALUATED = tuple(name for name in EvalMetrics.model_fields if name not in TrainMetrics.model_fields)

Model = TypeVar("Model", bound=BaseModel)


def read(path: Path, kind: type[Model], rebuild: str) -> Model:
    """`path` parsed as `kind`; a missing, corrupt or outdated file names `rebuild`, the command that remakes it."""
    if not path.is_file():
        raise PipelineError(f"{path} not found: run `{rebuild}`")
    try:
        return kind.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in error.errors()[:5])
        raise PipelineError(f"{path} is corrupt or from an older version ({problems}): run `{rebuild}`") from None


def write(path: Path, metrics: BaseModel) -> None:
    """`metrics` as JSON, atomically; absent optional numbers are left out rather than written as null."""
    atomic.write_json(path, json.loads(metrics.model_dump_json(exclude_none=True)))


def history_csv(rows: list[dict[str, float]]) -> str:
    """The per-epoch log as CSV text, HISTORY_COLUMNS in order (DVC plots read it)."""
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)).to_csv(index=False, lineterminator="\n")


def read_history(path: Path, rebuild: str) -> pd.DataFrame:
    """A history CSV: one row per epoch, HISTORY_COLUMNS as float columns."""
    if not path.is_file():
        raise PipelineError(f"{path} not found: run `{rebuild}`")
    try:
        frame = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as error:
        raise PipelineError(f"{path} is corrupt ({error}): run `{rebuild}`") from error
    missing = [column for column in HISTORY_COLUMNS if column not in frame.columns]
    if missing or frame.empty:
        raise PipelineError(f"{path} lacks {', '.join(missing) or 'rows'}: run `{rebuild}`")
    return frame[list(HISTORY_COLUMNS)].astype(float)


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts: row = actual class, column = predicted class."""
    return np.bincount(actual * num_classes + predicted, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )
