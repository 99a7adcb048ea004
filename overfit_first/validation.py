"""Validate params.yaml before any work starts, with messages that name the key, the value and what is allowed.

The schema is declared with pydantic, so types, ranges and unknown keys are checked by a well-kept
library; the cross-checks between sections (runs -> datasets and models) follow in `validate`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from overfit_first.errors import PipelineError
from overfit_first.verdict import EvaluateSettings

BUILTIN_DATASETS = ("fashion_mnist", "mnist", "cifar10", "cifar100")
# The Keras layer classes a model description may use (the builder instantiates keras.layers.<name>).
LAYER_TYPES = (
    "Activation",
    "BatchNormalization",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling2D",
    "MaxPooling2D",
)
PLACEHOLDERS = ("$num_classes", "$dropout")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


PositiveInt = Annotated[int, Field(ge=1)]


class DataParams(Strict):
    datasets: list[str] = Field(min_length=1)
    mirror: str | None = None
    image_folders: dict[str, str] = {}


class PrepareParams(Strict):
    valid_size: PositiveInt = 5000
    limit: PositiveInt | None = None
    pad_to: Annotated[int, Field(ge=8, le=1024)] | None = 32
    seed: int = 0


class ModelKnobs(Strict):
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)]

    @field_validator("dropout", mode="before")
    @classmethod
    def _int_is_a_float(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class TrainParams(Strict):
    seed: int = 0
    max_epochs: PositiveInt | None = None
    limit: PositiveInt | None = None
    batchnorm_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    # overfit_first.accelerate: auto = on when a GPU is present, off on a CPU (where both are slower).
    mixed_precision: Literal["auto", True, False] = "auto"
    xla: Literal["auto", True, False] = "auto"

    @field_validator("mixed_precision", "xla", mode="before")
    @classmethod
    def _auto_true_or_false(cls, value: Any) -> Any:
        if value == "auto" or isinstance(value, bool):
            return value
        raise PydanticCustomError(
            "auto_true_false", "must be auto, true or false (auto: on when a GPU is present, off on a CPU)"
        )


class TrainingSettings(Strict):
    optimizer: Literal["adam", "nadam", "sgd", "rmsprop"]
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)]
    batch_size: Annotated[int, Field(ge=1, le=65536)]
    epochs: PositiveInt
    early_stopping: bool


class Augmentation(Strict):
    rotation_degrees: Annotated[float, Field(ge=0, le=180)] = 0
    width_shift: Annotated[float, Field(ge=0, lt=1)] = 0
    height_shift: Annotated[float, Field(ge=0, lt=1)] = 0
    shear: Annotated[float, Field(ge=0, lt=1)] = 0
    zoom: Annotated[float, Field(ge=0, lt=1)] = 0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    fill_mode: Literal["nearest", "reflect", "wrap", "constant"] = "nearest"

    model_config = ConfigDict(extra="forbid", strict=False)


LayerEntry = str | dict[str, dict[str, Any] | None]


class ModelSpec(Strict):
    role: Literal["mlp", "overfit", "simplified", "augmented", "other"]
    layers: list[LayerEntry] = Field(min_length=1)
    layer_defaults: dict[str, dict[str, Any]] = {}
    training: TrainingSettings
    augmentation: Augmentation | None = None


class RunSpec(Strict):
    dataset: str
    model: str
    tuned_by: str
    max_epochs: PositiveInt | None = None  # this run's own epoch cap (quick profiles)


class Params(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: DataParams
    prepare: PrepareParams
    model: ModelKnobs
    train: TrainParams
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    models: dict[str, ModelSpec] = Field(min_length=1)
    runs: dict[str, RunSpec] = Field(min_length=1)


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("str", "dict[str,nullable[dict[str,any]]]", "int", "float", "constrained-int"):
            continue  # pydantic's union-branch names say nothing to a user
        else:
            parts.append(f".{item}" if parts else str(item))
    return "".join(parts)


def _format(error: ValidationError, source: str) -> str:
    lines = []
    seen = set()
    for detail in error.errors():
        key = _location(detail["loc"])
        if key in seen:
            continue
        seen.add(key)
        value = detail.get("input")
        shown = "(missing)" if detail["type"] == "missing" else repr(value)
        lines.append(f"  {key} = {shown}: {detail['msg']}")
    return f"{source} is invalid:\n" + "\n".join(lines)


def _layer_errors(name: str, spec: ModelSpec) -> list[str]:
    errors = []
    for index, entry in enumerate(spec.layers):
        layer_type = entry if isinstance(entry, str) else next(iter(entry), None)
        if isinstance(entry, dict) and len(entry) != 1:
            errors.append(f"  models.{name}.layers[{index}] = {entry!r}: one layer per entry ({{Type: {{kwargs}}}})")
        elif layer_type not in LAYER_TYPES:
            errors.append(
                f"  models.{name}.layers[{index}] = {layer_type!r}: unknown layer type; allowed: {', '.join(LAYER_TYPES)}"
            )
    for layer_type in spec.layer_defaults:
        if layer_type not in LAYER_TYPES:
            errors.append(f"  models.{name}.layer_defaults.{layer_type}: unknown layer type; allowed: {', '.join(LAYER_TYPES)}")
    return errors


def _uses_placeholder(spec: ModelSpec, placeholder: str) -> bool:
    return any(isinstance(entry, dict) and placeholder in (entry.get(next(iter(entry))) or {}).values() for entry in spec.layers)


def _has_key(params: dict[str, Any], dotted: str) -> bool:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def validate(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    """Check every section; raise one PipelineError listing every problem found."""
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        raise PipelineError(_format(error, source)) from None
    errors: list[str] = []
    known_datasets = set(BUILTIN_DATASETS) | set(params.data.image_folders)
    for dataset in params.data.datasets:
        if dataset not in known_datasets:
            errors.append(f"  data.datasets: {dataset!r} is not a known dataset; known: {', '.join(sorted(known_datasets))}")
    if len(set(params.data.datasets)) != len(params.data.datasets):
        errors.append(f"  data.datasets = {params.data.datasets}: lists a dataset twice")
    for name, spec in params.models.items():
        errors.extend(_layer_errors(name, spec))
    for run_name, run in params.runs.items():
        if run.dataset not in params.data.datasets:
            errors.append(
                f"  runs.{run_name}.dataset = {run.dataset!r}: not in data.datasets {params.data.datasets}; add it there"
            )
        if run.model not in params.models:
            errors.append(f"  runs.{run_name}.model = {run.model!r}: unknown model; defined: {', '.join(params.models)}")
            continue
        if not _has_key(raw, run.tuned_by):
            errors.append(f"  runs.{run_name}.tuned_by = {run.tuned_by!r}: no such key in {source}")
        elif _uses_placeholder(params.models[run.model], "$dropout") and run.tuned_by != "model.dropout":
            errors.append(
                f"  runs.{run_name}.tuned_by = {run.tuned_by!r}: model {run.model} uses $dropout, so it must be "
                "'model.dropout' (otherwise DVC would not retrain it when model.dropout changes)"
            )
    if errors:
        raise PipelineError(f"{source} is invalid:\n" + "\n".join(errors))
    return params
