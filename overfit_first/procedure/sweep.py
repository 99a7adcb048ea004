"""A sweep of DVC experiments over one params key, the machinery the ladder and the data-size curve share: what a
sweep is, and the checks of its plan against params.yaml and the prepared data before anything is queued.

A sweep named NAME has steps (values of the key) and, optionally, seeds; each (step, seed) is one DVC experiment
`NAME-<step>[-s<seed>]`, queued with `dvc exp run --queue -n <that> -S key=value [-S train.seed=seed]
evaluate@<run> ...` (only the swept runs' stages and what they need run: DVC skips what did not change), run by
`dvc queue start -j N`. `dvc exp show` lists them under the sweep's name. The sweep waits with a line per change
of state, then reads each experiment's metrics (`dvc exp show --json`); a failed experiment is reported with the
last lines of `dvc queue logs` and the others are still used. Running it: overfit_first.procedure.sweep_run (through
overfit_first.procedure.dvc_client); its report (table, chart, results json): overfit_first.procedure.sweep_report.

Statistics over seeds: mean, min, max and sample standard deviation. Whether two steps differ beyond noise is
the project's one rule (overfit_first.procedure.noise.relations): the two-sample case of Student's t over the two steps'
seed values, Holm over the comparisons a report makes for one run; with one seed a step has no noise estimate.

MLflow (overfit_first.tracking, best effort): the sweep is one parent run with one child run per step; each
training run of a step's experiments is nested under that child (OVERFIT_FIRST_MLFLOW_PARENTS, read by tracking).
None stays RUNNING: stopped (Ctrl-C, SIGTERM, SIGHUP) they end KILLED, on an error FAILED (tracking.SweepGuard),
and `--collect` completes them, or ends KILLED those a stopped process left RUNNING.
"""

from __future__ import annotations

import copy
import math
import re
import shlex
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from overfit_first.config import PARAMS_FILE, Params, Run, load_params, read_yaml, validate
from overfit_first.data.splits import dataset_dir, load_summary
from overfit_first.errors import PipelineError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$")
METRICS = ("train_accuracy_inference", "val_accuracy_inference", "test_accuracy", "gap")
SHORT = {"train_accuracy_inference": "train", "val_accuracy_inference": "validation", "test_accuracy": "test"}
SHORT["gap"] = "gap"
# Sweep.kind -> its command's name: `python -m overfit_first <name>` (the index of commands, overfit_first/__main__.py)
COMMANDS = {"ladder": "ladder", "data curve": "data_curve"}

SEED = "train.seed"  # what --seeds sets in every experiment


@dataclass(frozen=True)
class Step:
    """One value of the swept key: `label` names it (experiment names, tables), `value` is what -S sets."""

    label: str
    value: Any
    x: float | None  # its position on a chart's axis; None: categorical (augmentation on/off)
    as_is: bool = False  # params.yaml's own value: no -S for the key (a block such as an augmentation)


@dataclass(frozen=True)
class Point:
    """One DVC experiment of a sweep: a step, maybe a seed."""

    step: Step
    seed: int | None
    name: str


@dataclass(frozen=True)
class Sweep:
    """What to queue: `key` over `steps`, each repeated over `seeds` (None: params.yaml's train.seed only)."""

    name: str
    key: str
    steps: list[Step]
    seeds: list[int] | None
    runs: list[Run]
    kind: str  # "ladder" or "data curve": words for messages and MLflow

    @property
    def dataset(self) -> str:
        return self.runs[0].dataset

    def collect_command(self) -> str:
        """The command that writes this sweep's report from its experiments: this one's, with --collect."""
        arguments = [*sys.argv[1:], *([] if "--collect" in sys.argv[1:] else ["--collect"])]
        return shlex.join(["python", "-m", "overfit_first", COMMANDS[self.kind], *arguments])

    def points(self) -> list[Point]:
        seeds: list[int | None] = list(self.seeds) if self.seeds else [None]
        return [
            Point(step, seed, f"{self.name}-{step.label}" + ("" if seed is None else f"-s{seed}"))
            for step in self.steps
            for seed in seeds
        ]

    def sets(self, point: Point) -> list[str]:
        """The `-S key=value` arguments of one point."""
        values = [] if point.step.as_is else [f"{self.key}={yaml_value(point.step.value)}"]
        if point.seed is not None:
            values.append(f"{SEED}={point.seed}")
        return values


@dataclass
class Stat:
    """One metric over seeds, in its own units (accuracies and gaps: fractions 0..1)."""

    values: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def text(self, digits: int = 3) -> str:
        """`0.871` with one value, `0.871 (0.860-0.880)` with more: mean and range (`(-0.067 to 0.200)`)."""
        if len(self.values) == 1:
            return f"{self.mean:.{digits}f}"
        separator = " to " if self.low < 0 else "-"  # "-0.067-0.200" would misread
        return f"{self.mean:.{digits}f} ({self.low:.{digits}f}{separator}{self.high:.{digits}f})"

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "min": self.low, "max": self.high, "std": self.std, "values": self.values}


@dataclass
class StepResult:
    """One step of one run, over the seeds that succeeded: each of METRICS as a Stat, and the verdicts."""

    step: Step
    stats: dict[str, Stat] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # names of this step's failed experiments

    @property
    def ok(self) -> bool:
        return bool(self.stats)


StepResults = list[StepResult]


def yaml_value(value: Any) -> str:
    """A value as `-S` reads it (YAML): null, true, 0.4."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def number_label(value: float | int) -> str:
    """A value as the part of an experiment name: 0.4, 250, 1e-05."""
    return str(value)


def get_key(raw: dict[str, Any], key: str) -> Any:
    """The value of the dotted `key` in parsed params.yaml; PipelineError naming the key when it is not there."""
    node: Any = raw
    for depth, part in enumerate(key.split(".")):
        if not isinstance(node, dict) or part not in node:
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "(not a mapping)"
            where = ".".join(key.split(".")[:depth]) or "the top level"
            raise PipelineError(
                f"params.yaml has no key {key!r}: {where} holds {known}. Give a dotted key of params.yaml, "
                "e.g. model.dropout or train.subset_size"
            )
        node = node[part]
    return node


def set_key(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of parsed params.yaml with the dotted `key` set to `value`."""
    changed = copy.deepcopy(raw)
    node = changed
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return changed


def parse_numbers(key: str, texts: Sequence[str], integer: bool) -> list[float | int]:
    """--values as numbers (ints when the key holds an int); PipelineError naming the bad value and the fix."""
    numbers: list[float | int] = []
    for text in texts:
        try:
            number = float(text)
        except ValueError:
            raise PipelineError(
                f"--values: {text!r} is not a number; {key} takes numbers, e.g. --values 0 0.2 0.4"
            ) from None
        if not math.isfinite(number):
            raise PipelineError(f"--values: {text!r} is not a finite number")
        if integer:
            if number != int(number):
                raise PipelineError(f"--values: {text!r} is not a whole number; {key} takes whole numbers")
            numbers.append(int(number))
        else:
            numbers.append(number)
    if len(set(numbers)) != len(numbers):
        raise PipelineError(f"--values lists a value twice: {' '.join(texts)}")
    return numbers


def check_steps(raw: dict[str, Any], key: str, steps: Sequence[Step]) -> None:
    """Validate params.yaml with each step's value (config.validate): a value the schema refuses stops the sweep
    before anything is queued, with the schema's message."""
    for step in steps:
        validate(set_key(raw, key, step.value), source=f"params.yaml with {key}={yaml_value(step.value)}")


def params_keys(run: Run, params: Params) -> list[str]:
    """The params keys the run's train and evaluate stages depend on (dvc.yaml)."""
    return [f"runs.{run.name}", f"models.{run.model}", "train", params.runs[run.name].tuned_by, "evaluate"]


def affects(key: str, run: Run, params: Params) -> bool:
    """Whether changing `key` reruns the run's train or evaluate stage: one is a prefix of the other."""
    return any(key == dep or key.startswith(f"{dep}.") or dep.startswith(f"{key}.") for dep in params_keys(run, params))


def select_runs(params: Params, key: str, names: Sequence[str] | None) -> list[Run]:
    """The runs to sweep: `names` (each must depend on `key`), or every run that does; all of one dataset."""
    affected = [params.run(name) for name in params.runs if affects(key, params.run(name), params)]
    if names:
        runs = [params.run(name) for name in names]  # PipelineError naming the defined runs
        unaffected = [run.name for run in runs if run not in affected]
        if unaffected:
            raise PipelineError(
                f"--runs {' '.join(unaffected)}: not affected by {key}, so sweeping it would retrain nothing; runs "
                f"that depend on {key}: {', '.join(run.name for run in affected) or 'none'}"
            )
    else:
        runs = affected
    if not runs:
        raise PipelineError(f"no run of params.yaml depends on {key}: nothing to sweep")
    datasets = sorted({run.dataset for run in runs})
    if len(datasets) > 1:
        raise PipelineError(f"the runs are of datasets {', '.join(datasets)}: one dataset per sweep; pass --runs")
    return runs


def check_name(name: str) -> None:
    if not NAME.match(name):
        raise PipelineError(
            f"sweep name {name!r}: use letters, digits, '-' and '_' (at most 41, starting with a letter or digit): "
            "it prefixes the DVC experiment names"
        )


def check_seeds(seeds: Sequence[int] | None) -> list[int] | None:
    if not seeds:
        return None
    bad = [seed for seed in seeds if not 0 <= seed <= 2**32 - 1]
    if bad:
        raise PipelineError(f"--seeds {bad}: seeds are 0..2**32-1")
    return list(dict.fromkeys(seeds))


@dataclass(frozen=True)
class TrainImages:
    """The prepared training split of a dataset, as data/prepared/<dataset>/summary.json (the prepare stage) states:
    what train.subset_size can select from."""

    dataset: str
    count: int  # training images; a subset_size at or above it trains on all of them
    classes: int  # classes with training images: data.splits.stratified_subset takes one of each first

    @property
    def allowed(self) -> str:
        return f"{self.classes} to {self.count}"


def train_images(dataset: str) -> TrainImages:
    """What the dataset's prepared training split holds; PipelineError naming the command that (re)builds it."""
    directory = dataset_dir(dataset)
    if not (directory / "summary.json").is_file():
        raise PipelineError(
            f"{directory / 'summary.json'} is missing: the training-set sizes are checked against the prepared data "
            f"before anything is queued; run `dvc repro prepare@{dataset}` first"
        )
    summary = load_summary(directory)  # PipelineError when corrupt
    try:
        train = summary["splits"]["train"]
        count, classes = int(train["count"]), sum(1 for n in train["class_counts"] if int(n) > 0)
    except (KeyError, TypeError, ValueError) as error:
        raise PipelineError(
            f"{directory / 'summary.json'} has no training count or class counts ({error!r}): rebuild it with "
            f"`dvc repro --force prepare@{dataset}`"
        ) from error
    return TrainImages(dataset, count, classes)


def check_subset_sizes(
    option: str, sizes: Sequence[int], images: TrainImages, fractions: Sequence[float] | None = None, base: int = 0
) -> None:
    """Refuse train.subset_size values that would not train on what they say, before anything is queued: fewer
    than one image per class (stratified_subset would drop classes), more than the prepared training images (it
    would silently mean all of them), or one size twice. `fractions`: what the user gave instead, each of `base`
    images (data_curve --fractions), named in the message with the size it gives."""

    def named(index: int) -> str:
        if fractions is None:
            return str(sizes[index])
        return f"{fractions[index]:g} (= {sizes[index]} of {base} training images)"

    for index, size in enumerate(sizes):
        if size < images.classes:
            raise PipelineError(
                f"{option} {named(index)}: fewer than the {images.classes} classes of {images.dataset}'s training "
                f"images (a stratified subset needs at least one image per class); allowed: {images.allowed} images"
            )
        if size > images.count:
            raise PipelineError(
                f"{option} {named(index)}: more than the {images.count} prepared training images of "
                f"{images.dataset} (a larger size would silently train on all of them); allowed: {images.allowed} "
                "images"
            )
    for index, size in enumerate(sizes):
        first = sizes.index(size)
        if first != index:
            twice = f"lists {size} twice" if fractions is None else f"{named(first)} and {named(index)} are one size"
            raise PipelineError(f"{option} {twice}: give each size once ({images.allowed} images)")


def load() -> tuple[Params, dict[str, Any]]:
    """params.yaml validated, and as parsed (to validate each step's changed copy)."""
    params = load_params()
    return params, read_yaml(PARAMS_FILE)
