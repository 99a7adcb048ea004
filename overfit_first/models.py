"""Build the article's models from their params.yaml description (`models.<name>`).

A model is data: a list of Keras layers, each a class name (`Flatten`) or `{ClassName: {keyword: value}}`.
`layer_defaults` fills the keywords a layer leaves out, "$num_classes" and "$dropout" are replaced by the
dataset's class count and `model.dropout`, and `{l2: 0.01}` as a regularizer becomes `keras.regularizers.L2`.
Only the backend-neutral Keras API is used here, so the same models run on TensorFlow, JAX or PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from overfit_first.errors import PipelineError
from overfit_first.validation import LAYER_TYPES

# The layer types a params.yaml model may use (one list, shared with the params.yaml validation): enough
# for the article's MLPs and CNNs, and nothing that needs custom code to build or to load back.
LAYERS: dict[str, type[keras.layers.Layer]] = {name: getattr(keras.layers, name) for name in LAYER_TYPES}
REGULARIZER_KEYS = ("kernel_regularizer", "bias_regularizer", "activity_regularizer")
OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {
    "adam": keras.optimizers.Adam,
    "nadam": keras.optimizers.Nadam,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}


def build_model(
    spec: dict[str, Any],
    input_shape: Sequence[int],
    num_classes: int,
    dropout: float,
    name: str = "model",
) -> keras.Model:
    """A keras.Sequential model for `spec` (one entry of params.yaml `models`, called `name` there)."""
    layers = spec.get("layers")
    if not isinstance(layers, list) or not layers:
        raise PipelineError(f"params.yaml: models.{name}.layers must be a non-empty list of Keras layers")
    defaults = spec.get("layer_defaults") or {}
    placeholders = {"$num_classes": num_classes, "$dropout": dropout}
    model = keras.Sequential([keras.Input(shape=tuple(input_shape))], name=name)
    for index, entry in enumerate(layers):
        where = f"params.yaml: models.{name}.layers[{index}]"
        class_name, kwargs = _parse_entry(entry, where)
        kwargs = {**(defaults.get(class_name) or {}), **kwargs}
        kwargs = {key: _resolve(value, placeholders, f"{where}.{key}") for key, value in kwargs.items()}
        for key in REGULARIZER_KEYS:
            if isinstance(kwargs.get(key), dict):
                kwargs[key] = _regularizer(kwargs[key], f"{where}.{key}")
        try:
            model.add(LAYERS[class_name](**kwargs))
        except (TypeError, ValueError) as error:
            raise PipelineError(f"{where}: cannot build {class_name}({_format(kwargs)}): {error}") from error
    return model


def build_optimizer(training: dict[str, Any], name: str = "model") -> keras.optimizers.Optimizer:
    """The optimizer of a model's `training` block: `optimizer` (adam, nadam, rmsprop, sgd), `learning_rate`."""
    where = f"params.yaml: models.{name}.training"
    optimizer = str(training.get("optimizer", "")).lower()
    if optimizer not in OPTIMIZERS:
        raise PipelineError(f"{where}.optimizer is {optimizer or 'missing'!r}; use one of {sorted(OPTIMIZERS)}")
    learning_rate = training.get("learning_rate")
    if not isinstance(learning_rate, (int, float)) or isinstance(learning_rate, bool) or learning_rate <= 0:
        raise PipelineError(f"{where}.learning_rate must be a positive number, got {learning_rate!r}")
    return OPTIMIZERS[optimizer](learning_rate=float(learning_rate))


def _parse_entry(entry: Any, where: str) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        class_name, kwargs = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        class_name, kwargs = next(iter(entry.items()))
        kwargs = kwargs or {}  # `- MaxPooling2D:` with nothing after it
    else:
        raise PipelineError(f"{where} must be a layer name or {{ClassName: {{keyword: value}}}}, got {entry!r}")
    if class_name not in LAYERS:
        raise PipelineError(f"{where}: unknown layer type {class_name!r}; allowed types: {', '.join(LAYERS)}")
    if not isinstance(kwargs, dict):
        raise PipelineError(f"{where}: the keywords of {class_name} must be a mapping, got {kwargs!r}")
    return class_name, kwargs


def _resolve(value: Any, placeholders: dict[str, Any], where: str) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        if value not in placeholders:
            raise PipelineError(f"{where}: unknown placeholder {value!r}; use one of {', '.join(placeholders)}")
        return placeholders[value]
    return value


def _regularizer(value: dict[str, Any], where: str) -> keras.regularizers.Regularizer:
    unknown = set(value) - {"l1", "l2"}
    if unknown or not value:
        raise PipelineError(f"{where} must be {{l2: factor}}, {{l1: factor}} or both, got {value!r}")
    if set(value) == {"l2"}:
        return keras.regularizers.L2(value["l2"])
    if set(value) == {"l1"}:
        return keras.regularizers.L1(value["l1"])
    return keras.regularizers.L1L2(l1=value["l1"], l2=value["l2"])


def _format(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
