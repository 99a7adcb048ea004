"""What a run's artifacts are made of: the model summary, and the logged model's flavor (mlflow.keras, made to accept
an input example) and pip requirements. Its learning-curve figure is the plot stage's (overfit_first.plots)."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

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
