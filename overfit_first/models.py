"""Build the article's models from their params.yaml description (`models.<name>`).

A model is data: a list of Keras layers, each a class name (`Flatten`) or `{ClassName: {keyword: value}}`.
`layer_defaults` fills the keywords a layer leaves out; placeholders (`$num_classes`, and the global knobs of
overfit_first.config.KNOBS such as `$dropout`) are replaced by their values, a null value dropping the keyword
so that Keras' default applies; `{l2: 0.01}` as a regularizer becomes `keras.regularizers.L2`.
Only the backend-neutral Keras API is used here, so the same models run on TensorFlow, JAX or PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from overfit_first.config import LAYER_TYPES, FitConfig, ModelSpec
from overfit_first.errors import PipelineError

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
    spec: ModelSpec,
    input_shape: Sequence[int],
    num_classes: int,
    knobs: dict[str, Any],
    name: str = "model",
) -> keras.Model:
    """A keras.Sequential model for `spec` (params.yaml `models.<name>`) on images of `input_shape` (H, W, C).

    `knobs` maps the global placeholders to their values (config.Run.knobs). Raises PipelineError naming the
    layer that Keras refuses to build.
    """
    placeholders = {"$num_classes": num_classes, **knobs}
    model = keras.Sequential([keras.Input(shape=tuple(input_shape))], name=name)
    for index, entry in enumerate(spec.layers):
        where = f"params.yaml: models.{name}.layers[{index}]"
        class_name, kwargs = _parse_entry(entry)
        kwargs = {**spec.layer_defaults.get(class_name, {}), **kwargs}
        kwargs = {key: _resolve(value, placeholders) for key, value in kwargs.items()}
        kwargs = {key: value for key, value in kwargs.items() if value is not None}
        for key in REGULARIZER_KEYS:
            if isinstance(kwargs.get(key), dict):
                kwargs[key] = _regularizer(kwargs[key], f"{where}.{key}")
        try:
            model.add(LAYERS[class_name](**kwargs))
        except (TypeError, ValueError) as error:
            raise PipelineError(f"{where}: cannot build {class_name}({_format(kwargs)}): {error}") from error
    return model


def build_optimizer(fit: FitConfig) -> keras.optimizers.Optimizer:
    """The optimizer of a model's `fit` block (validated by overfit_first.config)."""
    return OPTIMIZERS[fit.optimizer](learning_rate=fit.learning_rate)


def _parse_entry(entry: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`Flatten` or `{Conv2D: {filters: 64}}` (shapes checked by overfit_first.config) -> (class name, kwargs)."""
    if isinstance(entry, str):
        return entry, {}
    class_name, kwargs = next(iter(entry.items()))
    return class_name, dict(kwargs or {})  # `- MaxPooling2D:` with nothing after it


def _resolve(value: Any, placeholders: dict[str, Any]) -> Any:
    return placeholders[value] if isinstance(value, str) and value in placeholders else value


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
