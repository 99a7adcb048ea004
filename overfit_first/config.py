"""params.yaml as one typed config: read once per stage, validated once, passed on as typed sections.

    params = config.load_params()          # Params, or one PipelineError listing every bad key
    run = params.run("fashion_mnist-mlp")  # Run: the one type for one entry of `runs`

The file is parsed exactly as DVC parses it (ruamel.yaml, YAML 1.2: `1e-4` is a float, `no`/`on` are
strings), so the stages and `dvc params diff` / `dvc exp run -S` never disagree about a value. Every default
lives here, in the schema; params.yaml states each one. The cross-checks between sections (runs -> datasets
and models, placeholders -> knobs) follow the schema in `validate`.

Global knobs reach the model builder by one mechanism, placeholders in a model's layers (`KNOBS`):
    $num_classes          the dataset's class count
    $dropout              model.dropout: the simplified CNNs' tunable dropout
    $batchnorm_momentum   train.batchnorm_momentum (null: the keyword is dropped, Keras' 0.99 applies)
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from overfit_first import layout
from overfit_first.errors import PipelineError

PARAMS_FILE = Path("params.yaml")
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
ROLES = ("mlp", "overfit", "simplified", "augmented", "other")  # also the order runs are listed in
# placeholder -> the params.yaml key it reads ($num_classes comes from the data, not from params.yaml).
KNOBS = {"$dropout": "model.dropout", "$batchnorm_momentum": "train.batchnorm_momentum"}
PLACEHOLDERS = ("$num_classes", *KNOBS)
# Dataset names become directory names (data/raw/<name>) and DVC stage keys.
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Strict(BaseModel):
    """A params section: unknown keys are errors. Keys that change numbers have no default here, so that a key
    deleted from params.yaml stops the stage instead of training with a value nobody chose (a missing
    train.subset_size would mean every image); optional features (mirror, augmentation, sanity) keep defaults."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


PositiveInt = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # what NumPy and keras.utils.set_random_seed accept
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]


def _int_is_a_float(value: Any) -> Any:
    """YAML writes 1 for 1.0; strict mode would refuse it for a float field."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class DataConfig(Strict):
    """`data`: which datasets `download` and `prepare` build, and from where."""

    datasets: list[str] = Field(min_length=1)
    mirror: str | None = None  # a directory or base URL searched before the official URLs
    image_folders: dict[str, str] = {}  # name -> directory or archive of train/<class>/*, test/<class>/*


class PrepareConfig(Strict):
    """`prepare`: how the official training set is split and sampled (overfit_first.data.prepare)."""

    valid_size: PositiveInt  # the FIRST valid_size training images, as in the article
    sample_size: PositiveInt | None  # seeded stratified random sample of the rest (null: all)
    sample_seed: Seed
    pad_to: Annotated[int, Field(ge=8, le=1024)] | None


class ModelKnobs(Strict):
    """`model`: the knob `dvc exp run -S model.dropout=...` tunes (placeholder `$dropout`)."""

    dropout: Annotated[float, Field(ge=0.0, lt=1.0)]

    _float = field_validator("dropout", mode="before")(_int_is_a_float)


Switch = Literal["auto", True, False]
Precision = Literal["auto", "bf16", "fp16", False]


class TrainConfig(Strict):
    """`train`: settings every train stage shares."""

    seed: Seed
    # The first subset_size prepared training images of every class, in proportion (null: all): a run-time
    # subset of what `prepare` wrote, so one prepared dataset serves every size.
    subset_size: PositiveInt | None
    batchnorm_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] | None  # placeholder $batchnorm_momentum
    # overfit_first.accelerate: mixed precision auto = bf16 on GPUs of compute capability >= 8.0, fp16 on older
    # GPUs, float32 on CPUs; XLA auto = on when a GPU is present, off on a CPU (where it is slower).
    mixed_precision: Precision
    xla: Switch

    _float = field_validator("batchnorm_momentum", mode="before")(_int_is_a_float)

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _precision(cls, value: Any) -> Any:
        if value in ("auto", "bf16", "fp16") or value is False:
            return value
        raise PydanticCustomError(
            "precision",
            "must be auto, bf16, fp16 or false (auto: bf16 on GPUs of compute capability 8.0 or later, fp16 on "
            "older GPUs, false on CPUs)",
        )

    @field_validator("xla", mode="before")
    @classmethod
    def _auto_true_or_false(cls, value: Any) -> Any:
        if value == "auto" or isinstance(value, bool):
            return value
        raise PydanticCustomError(
            "auto_true_false", "must be auto, true or false (auto: on when a GPU is present, off on a CPU)"
        )


class EvaluateConfig(Strict):
    """`evaluate`: the verdict thresholds (overfit_first.verdict) and the inference batch size."""

    overfit_train_min: Fraction
    overfit_gap_min: Fraction
    underfit_train_max: Fraction
    # A run whose best validation accuracy of its last still_learning_window epochs beats the best before them
    # by more than the validation set's noise had not converged: "still learning" (overfit_first.verdict).
    still_learning_window: Annotated[int, Field(ge=2, le=50)]
    # Inference keeps no gradients: a batch much larger than training's is fast and fits in memory.
    batch_size: Annotated[int, Field(ge=1, le=65536)]

    _float = field_validator("overfit_train_min", "overfit_gap_min", "underfit_train_max", mode="before")(
        _int_is_a_float
    )

    @model_validator(mode="after")
    def _ordered(self) -> EvaluateConfig:
        if self.underfit_train_max > self.overfit_train_min:
            raise ValueError(
                f"underfit_train_max ({self.underfit_train_max}) must not exceed overfit_train_min "
                f"({self.overfit_train_min}): a model cannot underfit at a train accuracy that counts as overfitting"
            )
        return self


class SanityConfig(Strict):
    """`sanity`: the checks before a long run (overfit_first.sanity); an observer section, no stage's DVC param."""

    # Run `python -m overfit_first.sanity <run>` at the start of train@<run>, in a child process (the training's
    # random state is untouched); a failed check stops the stage before training.
    before_training: bool = False
    # Initial data loss within init_loss_tolerance x ln(num_classes) of ln(num_classes).
    init_loss_tolerance: Annotated[float, Field(gt=0.0, le=10.0)] = 0.25
    fit_batches: Annotated[int, Field(ge=1, le=64)] = 2  # the subset to fit: this many of the model's batches
    fit_max_steps: Annotated[int, Field(ge=1, le=100000)] = 300  # optimizer steps allowed to fit it
    fit_accuracy_min: Fraction = 0.95  # inference-mode accuracy on that subset that counts as fitted
    heldout_images: PositiveInt = 500  # validation images the fitted model is compared with the baseline on
    baseline_margin: Fraction = 0.1  # by how much it must beat the majority-class rate there

    _float = field_validator("init_loss_tolerance", "fit_accuracy_min", "baseline_margin", mode="before")(
        _int_is_a_float
    )


class FitConfig(Strict):
    """`models.<model>.fit`: the article's optimizer and `model.fit` settings for that model."""

    optimizer: Literal["adam", "nadam", "sgd", "rmsprop"]
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)]
    batch_size: Annotated[int, Field(ge=1, le=65536)]
    epochs: PositiveInt  # the article's epoch count; runs.<run>.epochs may lower it for a quick profile
    early_stopping: bool  # the article's EarlyStopping(patience=10) on validation accuracy

    _float = field_validator("learning_rate", mode="before")(_int_is_a_float)


class Augmentation(Strict):
    """`models.<model>.augmentation`: the article's ImageDataGenerator settings (overfit_first.inputs)."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)

    rotation_degrees: Annotated[float, Field(ge=0, le=180)] = 0
    width_shift: Annotated[float, Field(ge=0, lt=1)] = 0
    height_shift: Annotated[float, Field(ge=0, lt=1)] = 0
    shear: Annotated[float, Field(ge=0, lt=1)] = 0
    zoom: Annotated[float, Field(ge=0, lt=1)] = 0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    fill_mode: Literal["nearest", "reflect", "wrap", "constant"] = "nearest"


LayerEntry = str | dict[str, dict[str, Any] | None]


class ModelSpec(Strict):
    """`models.<model>`: an architecture as a list of Keras layers, and how the article trained it."""

    role: Literal["mlp", "overfit", "simplified", "augmented", "other"]
    layers: list[LayerEntry] = Field(min_length=1)
    layer_defaults: dict[str, dict[str, Any]] = {}
    fit: FitConfig
    augmentation: Augmentation | None = None

    def placeholders(self) -> set[str]:
        """The `$name` values its layers and layer defaults use."""
        kwargs = [next(iter(entry.values())) or {} for entry in self.layers if isinstance(entry, dict)]
        kwargs += list(self.layer_defaults.values())
        values = [value for mapping in kwargs for value in mapping.values()]
        return {value for value in values if isinstance(value, str) and value.startswith("$")}


class RunSpec(Strict):
    """`runs.<run>`: one model trained on one dataset, one `train@<run>` stage."""

    dataset: str
    model: str
    # The params key, besides `train`, that the run's train stage depends on: model.dropout for the models that
    # use $dropout, so that `dvc exp run -S model.dropout=...` retrains only them (dvc.yaml reads it).
    tuned_by: str
    epochs: PositiveInt | None = None  # lowers models.<model>.fit.epochs for this run (quick profiles)


@dataclass(frozen=True)
class Run:
    """One entry of params.yaml `runs`, with everything its stages need: the one run type."""

    name: str
    dataset: str
    model: str  # the key of params.yaml `models`
    spec: ModelSpec  # models.<model>, as params.yaml holds it (placeholders unresolved)
    knobs: dict[str, Any]  # placeholder -> value, $num_classes excepted (it comes from the data)
    shared: TrainConfig  # params.yaml `train`: what every run shares (seed, subset size, numerics)
    epochs: int  # models.<model>.fit.epochs, or runs.<run>.epochs when lower

    @property
    def role(self) -> str:
        return self.spec.role

    @property
    def model_path(self) -> Path:
        return layout.model_file(self.dataset, self.model)

    @property
    def train_metrics_path(self) -> Path:
        return layout.train_metrics_file(self.dataset, self.model)

    @property
    def history_path(self) -> Path:
        return layout.history_file(self.dataset, self.model)

    @property
    def eval_metrics_path(self) -> Path:
        return layout.eval_metrics_file(self.dataset, self.model)


class Params(BaseModel):
    """The whole params.yaml. An unknown section is an error: `dvc exp run -S modle.dropout=0.4` adds one, and
    ignoring it would train the default silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataConfig
    prepare: PrepareConfig
    model: ModelKnobs
    train: TrainConfig
    evaluate: EvaluateConfig
    models: dict[str, ModelSpec] = Field(min_length=1)
    runs: dict[str, RunSpec] = Field(min_length=1)
    sanity: SanityConfig = SanityConfig()

    def run(self, name: str) -> Run:
        """The run `runs.<name>`; a PipelineError names the defined runs."""
        if name not in self.runs:
            raise PipelineError(f"params.yaml: no run '{name}' under `runs`; defined runs: {', '.join(self.runs)}")
        entry = self.runs[name]
        spec = self.models[entry.model]
        return Run(
            name=name,
            dataset=entry.dataset,
            model=entry.model,
            spec=spec,
            knobs={"$dropout": self.model.dropout, "$batchnorm_momentum": self.train.batchnorm_momentum},
            shared=self.train,
            epochs=min(spec.fit.epochs, entry.epochs or math.inf),
        )

    def dataset_runs(self, dataset: str) -> list[Run]:
        """The runs of `dataset`, ordered by role (ROLES), then as listed."""
        runs = [self.run(name) for name, entry in self.runs.items() if entry.dataset == dataset]
        return sorted(runs, key=lambda run: ROLES.index(run.role))


def read_yaml(path: Path) -> Any:
    """A YAML file parsed as DVC parses params.yaml (ruamel.yaml's safe loader: YAML 1.2)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except YAMLError as error:
        raise PipelineError(f"{path} is not valid YAML: {error}") from error


def load_params(path: Path = PARAMS_FILE) -> Params:
    """params.yaml, validated: every problem found in one PipelineError (key, bad value, what is allowed).

    Every stage starts here, so this is where a stage run from a subdirectory stops (layout.require_repo_root).
    """
    layout.require_repo_root()
    if not path.is_file():
        hint = f"restore it with `git checkout {path}`" if Path(layout.ROOT_MARKER).is_file() else layout.RUN_FROM_ROOT
        raise PipelineError(f"{path} not found: {hint}")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise PipelineError(f"{path} must hold a mapping of sections (data, prepare, train, ...)")
    return validate(raw, source=str(path))


def validate(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    """Check every section of a parsed params.yaml; raise one PipelineError listing every problem found."""
    errors = _unknown_sections(raw, source)
    try:
        params = Params.model_validate({key: value for key, value in raw.items() if key in Params.model_fields})
    except ValidationError as error:
        raise PipelineError(f"{source} is invalid:\n" + "\n".join([*errors, *_format(error)])) from None
    known_datasets = set(BUILTIN_DATASETS) | set(params.data.image_folders)
    for dataset in params.data.datasets:
        if dataset not in known_datasets:
            known = ", ".join(sorted(known_datasets))
            errors.append(f"  data.datasets: {dataset!r} is not a known dataset; known: {known}")
    if len(set(params.data.datasets)) != len(params.data.datasets):
        errors.append(f"  data.datasets = {params.data.datasets}: lists a dataset twice")
    clash = sorted(set(params.data.image_folders) & set(BUILTIN_DATASETS))
    if clash:
        errors.append(f"  data.image_folders: {', '.join(clash)} shadow built-in datasets; rename them")
    for name in params.data.image_folders:
        if not DATASET_NAME.match(name):
            errors.append(f"  data.image_folders.{name}: the name may only hold letters, digits, '_', '.', '-'")
    for name, spec in params.models.items():
        errors.extend(_layer_errors(name, spec))
    for run_name, run in params.runs.items():
        if run.dataset not in params.data.datasets:
            errors.append(
                f"  runs.{run_name}.dataset = {run.dataset!r}: not in data.datasets {params.data.datasets}; "
                "add it there"
            )
        if run.model not in params.models:
            defined = ", ".join(params.models)
            errors.append(f"  runs.{run_name}.model = {run.model!r}: unknown model; defined: {defined}")
            continue
        if not _has_key(raw, run.tuned_by):
            errors.append(f"  runs.{run_name}.tuned_by = {run.tuned_by!r}: no such key in {source}")
        elif "$dropout" in params.models[run.model].placeholders() and run.tuned_by != "model.dropout":
            errors.append(
                f"  runs.{run_name}.tuned_by = {run.tuned_by!r}: model {run.model} uses $dropout, so it must be "
                "'model.dropout' (otherwise DVC would not retrain it when model.dropout changes)"
            )
    if errors:
        raise PipelineError(f"{source} is invalid:\n" + "\n".join(errors))
    return params


def _unknown_sections(raw: dict[str, Any], source: str) -> list[str]:
    """One line per top-level key that is not a section, with the closest section name."""
    sections = list(Params.model_fields)
    errors = []
    for key in raw:
        if key in sections:
            continue
        close = difflib.get_close_matches(str(key), sections, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"sections: {', '.join(sections)}"
        errors.append(f"  {key}: unknown section of {source}; {hint} (remove it, or fix its name)")
    return errors


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


def _format(error: ValidationError) -> list[str]:
    lines = []
    seen = set()
    for detail in error.errors():
        key = _location(detail["loc"])
        if key in seen:
            continue
        seen.add(key)
        shown = "(missing)" if detail["type"] == "missing" else repr(detail.get("input"))
        lines.append(f"  {key} = {shown}: {detail['msg']}")
    return lines


def _layer_errors(name: str, spec: ModelSpec) -> list[str]:
    errors = []
    allowed = ", ".join(LAYER_TYPES)
    for index, entry in enumerate(spec.layers):
        layer_type = entry if isinstance(entry, str) else next(iter(entry), None)
        if isinstance(entry, dict) and len(entry) != 1:
            errors.append(f"  models.{name}.layers[{index}] = {entry!r}: one layer per entry ({{Type: {{kwargs}}}})")
        elif layer_type not in LAYER_TYPES:
            errors.append(f"  models.{name}.layers[{index}] = {layer_type!r}: unknown layer type; allowed: {allowed}")
    for layer_type in spec.layer_defaults:
        if layer_type not in LAYER_TYPES:
            errors.append(f"  models.{name}.layer_defaults.{layer_type}: unknown layer type; allowed: {allowed}")
    for placeholder in sorted(spec.placeholders() - set(PLACEHOLDERS)):
        errors.append(f"  models.{name}: unknown placeholder {placeholder!r}; use one of {', '.join(PLACEHOLDERS)}")
    return errors


def _has_key(params: dict[str, Any], dotted: str) -> bool:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
