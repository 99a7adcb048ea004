"""The charts of one dataset (stage `plot@<dataset>`), drawn with matplotlib's Agg renderer into reports/<dataset>/.

    learning_curves.png     train and validation accuracy and loss per epoch, one row per model
    validation_overlay.png  the overfitting, simplified and augmented models' validation curves on one chart
    accuracy.png            train, validation and test accuracy per model (inference mode), with the verdicts
    predictions.png         the article's grid: 16 test images titled "Actual / Pred" (the simplified model's)
    confusion.png           one confusion matrix per model, rows normalized (each row: one actual class)
    validation_curves.csv   the overlay's data in long form (epoch, model, val_accuracy) for `dvc plots`

Figures are matplotlib.figure.Figure objects, not pyplot: no GUI backend, no global figure registry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from overfit_first import atomic, comparison, layout, metrics
from overfit_first.config import Run
from overfit_first.data.splits import dataset_dir, load_split, load_summary
from overfit_first.errors import PipelineError

LEARNING_CURVES = "learning_curves.png"
VALIDATION_OVERLAY = "validation_overlay.png"
ACCURACY = "accuracy.png"
PREDICTIONS = "predictions.png"
CONFUSION = "confusion.png"
PNG_FILES = (VALIDATION_OVERLAY, ACCURACY, LEARNING_CURVES, PREDICTIONS, CONFUSION)
VALIDATION_CSV = "validation_curves.csv"
GRID_SIZE = 4  # the article's 4 x 4 grid of test images
TICK_LABELS_MAX = 20  # more classes than this and the confusion matrices drop their class names


def label(run: Run) -> str:
    return f"{run.model} ({run.role})"


def learning_curves(histories: dict[str, pd.DataFrame], best_epochs: dict[str, int]) -> Figure:
    """Train and validation accuracy (left) and loss (right) per epoch, one row per model; the dotted line is
    the best epoch, the one whose weights were kept."""
    figure = Figure(figsize=(11, 3.2 * len(histories)), layout="constrained")
    axes = figure.subplots(len(histories), 2, squeeze=False)
    for row, (name, history) in zip(axes, histories.items()):
        for axis, metric in zip(row, ("accuracy", "loss")):
            axis.plot(history["epoch"], history[f"train_{metric}"], label="train")
            axis.plot(history["epoch"], history[f"val_{metric}"], label="validation")
            axis.axvline(best_epochs[name], color="grey", linestyle=":", label=f"best epoch ({best_epochs[name]})")
            axis.set_title(f"{name}: {metric}")
            axis.set_xlabel("epoch")
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.legend()
    return figure


def validation_overlay(histories: dict[str, pd.DataFrame]) -> Figure:
    """Validation accuracy and loss of several models on shared axes: the article's overfit-vs-simplified chart."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    axes = figure.subplots(1, 2)
    for name, history in histories.items():
        for axis, metric in zip(axes, ("accuracy", "loss")):
            axis.plot(history["epoch"], history[f"val_{metric}"], label=name)
    for axis, metric in zip(axes, ("accuracy", "loss")):
        axis.set_title(f"validation {metric}")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend()
    return figure


def accuracy_bars(results: dict[str, metrics.EvalMetrics]) -> Figure:
    """Train, validation and test accuracy per model (inference mode), each model's verdict under its name."""
    figure = Figure(figsize=(max(6.0, 2.6 * len(results)), 4.8), layout="constrained")
    axis = figure.subplots()
    positions = np.arange(len(results))
    width = 0.27
    for offset, (key, name) in zip(
        (-width, 0.0, width),
        (("train_accuracy_inference", "train"), ("val_accuracy_inference", "validation"), ("test_accuracy", "test")),
    ):
        values = [getattr(entry, key) for entry in results.values()]
        bars = axis.bar(positions + offset, values, width, label=name)
        axis.bar_label(bars, fmt="%.2f", fontsize=8)
    ticks = [name.replace(" (", "\n(") + "\n" + entry.verdict for name, entry in results.items()]
    axis.set_xticks(positions, ticks)
    axis.set_ylim(0, 1.08)
    axis.set_ylabel("accuracy")
    figure.legend(loc="outside upper center", ncols=3)
    return figure


def prediction_grid(images: np.ndarray, actual: list[str], predicted: list[str], title: str) -> Figure:
    """The first GRID_SIZE**2 images titled "Actual: ... / Pred: ...", green when right, red when wrong."""
    count = min(GRID_SIZE * GRID_SIZE, len(images))
    figure = Figure(figsize=(9, 10), layout="constrained")
    axes = figure.subplots(GRID_SIZE, GRID_SIZE, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        image = images[index]
        if image.shape[-1] == 1:  # grayscale: imshow wants H x W and a gray colormap
            axis.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            axis.imshow(image)
        right = actual[index] == predicted[index]
        axis.set_title(
            f"Actual: {actual[index]}\nPred: {predicted[index]}",
            fontsize=9,
            color="darkgreen" if right else "firebrick",
        )
    figure.suptitle(title)
    return figure


def confusion_matrices(panels: dict[str, np.ndarray], class_names: list[str]) -> Figure:
    """One heatmap per model of the row-normalized confusion matrix (actual classes down, predicted across)."""
    columns = min(2, len(panels))  # two across: still readable when GitHub scales the image to its page
    rows = -(-len(panels) // columns)
    size = 4.5 if len(class_names) <= TICK_LABELS_MAX else 5.5
    figure = Figure(figsize=(size * columns + 1, (size + 0.6) * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).flatten()
    for axis in axes[len(panels) :]:
        axis.axis("off")
    image = None
    for axis, (name, matrix) in zip(axes, panels.items()):
        totals = matrix.sum(axis=1, keepdims=True)
        normalized = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
        image = axis.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
        axis.set_title(name)
        axis.set_xlabel("predicted")
        axis.set_ylabel("actual")
        if len(class_names) <= TICK_LABELS_MAX:
            ticks = np.arange(len(class_names))
            axis.set_xticks(ticks, class_names, rotation=90, fontsize=7)
            axis.set_yticks(ticks, class_names, fontsize=7)
        else:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.colorbar(image, ax=list(axes), shrink=0.8, label="fraction of the actual class")
    return figure


def save(figure: Figure, path: Path) -> None:
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def read_predictions(path: Path) -> tuple[list[str], list[str]]:
    """The actual and predicted class names of the test images, in test-split order."""
    if not path.is_file():
        raise PipelineError(f"{path} not found: it is written by the evaluate stage (`dvc repro evaluate@...`)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)  # class names such as "None" stay strings
    return frame["actual"].tolist(), frame["predicted"].tolist()


def class_ids(names: list[str], class_names: list[str], path: Path) -> np.ndarray:
    index = {name: position for position, name in enumerate(class_names)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise PipelineError(
            f"{path} names classes the dataset does not have ({', '.join(unknown[:5])}): it is "
            "stale; rerun the evaluate stage"
        )
    return np.array([index[name] for name in names], dtype=np.int64)


def validation_csv(histories: dict[str, pd.DataFrame]) -> str:
    """The overlay's data in long form: epoch, model, val_accuracy (DVC's overlay template reads it)."""
    long = pd.concat([history.assign(model=name) for name, history in histories.items()])
    long["epoch"] = long["epoch"].astype(int)
    return long[["epoch", "model", "val_accuracy"]].to_csv(index=False, lineterminator="\n")


def plot_dataset(dataset: str, runs: list[Run], results: dict[str, metrics.EvalMetrics]) -> list[Path]:
    """Every chart of `dataset` (module docstring) from the train and evaluate outputs of `runs` (in that
    order; `results` maps run names to their evaluate metrics). Returns the files written."""
    summary = load_summary(dataset_dir(dataset))
    class_names = summary["class_names"]
    test = load_split(dataset_dir(dataset), "test")
    histories, predictions, matrices = {}, {}, {}
    for run in runs:
        history = layout.published_history_file(run.dataset, run.model)
        histories[run.name] = metrics.read_history(history, f"dvc repro evaluate@{run.name}")
        path = layout.predictions_file(run.dataset, run.model)
        actual, predicted = read_predictions(path)
        if len(actual) != len(test.y):
            raise PipelineError(
                f"{path} has {len(actual)} rows but the test split {len(test.y)} images: it is "
                f"stale; rerun `dvc repro evaluate@{run.name}`"
            )
        predictions[run.name] = actual, predicted
        matrices[label(run)] = metrics.confusion_matrix(
            class_ids(actual, class_names, path), class_ids(predicted, class_names, path), len(class_names)
        )
    compared = list(comparison.by_role(runs).values()) or runs[:1]
    overlay = {label(run): histories[run.name] for run in compared}
    # The grid shows the model the article shows: the simplified one, else the next best role present.
    shown = next((run for role in ("simplified", "augmented", "overfit") for run in runs if run.role == role), runs[0])
    actual, predicted = predictions[shown.name]

    directory = layout.report_dir(dataset)
    figures = {
        LEARNING_CURVES: learning_curves(
            {label(run): histories[run.name] for run in runs},
            {label(run): results[run.name].best_epoch for run in runs},
        ),
        VALIDATION_OVERLAY: validation_overlay(overlay),
        ACCURACY: accuracy_bars({label(run): results[run.name] for run in runs}),
        PREDICTIONS: prediction_grid(test.x, actual, predicted, f"{shown.model} on the {dataset} test set"),
        CONFUSION: confusion_matrices(matrices, class_names),
    }
    written = []
    for name, figure in figures.items():
        save(figure, directory / name)
        written.append(directory / name)
    atomic.write_text(directory / VALIDATION_CSV, validation_csv(overlay))
    written.append(directory / VALIDATION_CSV)
    return written
