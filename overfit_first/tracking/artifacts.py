"""What a run's artifacts are made of: the learning-curve figure, the model summary, and the logged model's flavor
(mlflow.keras, made to accept an input example) and pip requirements."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no GUI backend, no global figure registry

# keras is imported only where a model is at hand (overfit_first.tracking, tests/test_entry_points.py).
if TYPE_CHECKING:
    import keras

BACKEND_PACKAGES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",), "torch": ("torch",)}


def _save_keras(path: str, validate_serving_input: bool = True, **kwargs: Any) -> None:
    """mlflow.keras.save_model; `validate_serving_input` is Model.log's, not the flavor's."""
    import mlflow.keras  # imports keras

    os.makedirs(path, exist_ok=True)  # mlflow.keras.save_model writes the input example before it makes `path`
    mlflow.keras.save_model(path=path, **kwargs)


# mlflow.keras, made to accept an input example: mlflow.keras.log_model(..., input_example=...) fails with
# FileNotFoundError .../model/input_example.json (MLflow 3.17; mlflow/mlflow issue 16183).
# Its name spelled out: mlflow.keras.__name__ would import keras with this module.
KERAS_FLAVOR = SimpleNamespace(__name__="mlflow.keras", save_model=_save_keras)


def learning_curve(history: pd.DataFrame, title: str) -> Figure:
    """Train and validation accuracy (left) and loss (right) per epoch; the dotted line is the best epoch."""
    epochs = history["epoch"]
    best = history.loc[history["val_accuracy"].idxmax(), "epoch"]  # the first best, as ModelCheckpoint keeps
    figure = Figure(figsize=(11, 4))
    axes = figure.subplots(1, 2)
    for axis, metric in zip(axes, ("accuracy", "loss")):
        axis.plot(epochs, history[f"train_{metric}"], label=f"train {metric}")
        axis.plot(epochs, history[f"val_{metric}"], label=f"validation {metric}")
        axis.axvline(best, color="grey", linestyle=":", label=f"best epoch ({int(best)})")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def model_summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda text, **_: lines.append(text))
    return "\n".join(lines)


def pip_requirements() -> list[str]:
    """keras and the installed package of the active backend, pinned to the versions that trained."""
    import keras

    requirements = [f"keras=={version('keras')}"]
    for package in BACKEND_PACKAGES.get(keras.backend.backend(), ()):
        try:
            requirements.append(f"{package}=={version(package)}")
            break
        except PackageNotFoundError:
            continue
    return requirements
