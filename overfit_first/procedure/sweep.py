"""The machinery the ladder and the data-size curve share: a sweep of DVC experiments over one params key.

A sweep named NAME has steps (values of the key) and, optionally, seeds; each (step, seed) is one DVC experiment
`NAME-<step>[-s<seed>]`, queued with `dvc exp run --queue -n <that> -S key=value [-S train.seed=seed]
evaluate@<run> ...` (only the swept runs' stages and what they need run: DVC skips what did not change), run by
`dvc queue start -j N`. `dvc exp show` lists them under the sweep's name. The sweep waits with a line per change
of state, then reads each experiment's metrics (`dvc exp show --json`); a failed experiment is reported with the
last lines of `dvc queue logs` and the others are still used.

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
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overfit_first import atomic, layout, tracking
from overfit_first.config import PARAMS_FILE, Params, Run, load_params, read_yaml, validate
from overfit_first.data.splits import dataset_dir, load_summary
from overfit_first.errors import PipelineError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$")
POLL_S = 5.0
LOG_LINES = 30  # of a failed experiment's `dvc queue logs`
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


# ------------------------------------------------------------------------------------------------ dvc


def dvc(*args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    """`dvc <args>` in the current directory; its stdout. PipelineError with its output when it fails."""
    command = ["dvc", *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env)
    except OSError as error:
        raise PipelineError(f"`{' '.join(command)}` could not run ({error}): is the virtualenv active?") from error
    if check and result.returncode != 0:
        raise PipelineError(f"`{' '.join(command)}` failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def existing_names(names: Sequence[str]) -> list[str]:
    """Those of `names` that `dvc exp list` (this commit's experiments) or `dvc queue status` already hold."""
    listed = set(dvc("exp", "list", "--name-only").split())
    listed |= set(queue_status())
    return [name for name in names if name in listed]


def queue_status() -> dict[str, str]:
    """`dvc queue status` as {experiment name: Queued | Running | Success | Failed}."""
    states: dict[str, str] = {}
    for line in dvc("queue", "status").splitlines()[1:]:
        words = line.split()
        if len(words) >= 3 and words[-1] in ("Queued", "Running", "Success", "Failed"):
            states[words[1]] = words[-1]
    return states


def queue(sweep: Sweep, points: Sequence[Point]) -> None:
    """`dvc exp run --queue` each point, targets: the swept runs' evaluate stages (and what they depend on).

    Interrupted (Ctrl-C, SIGTERM), it says which experiments it queued (not started) and how to remove them."""
    targets = [f"evaluate@{run.name}" for run in sweep.runs]
    queued: list[str] = []
    try:
        for point in points:
            sets = [arg for value in sweep.sets(point) for arg in ("-S", value)]
            print(f"queue {point.name}: {' '.join(sweep.sets(point)) or 'params.yaml as it is'}", flush=True)
            dvc("exp", "run", "--queue", "-n", point.name, *sets, *targets)
            queued.append(point.name)
    except KeyboardInterrupt:
        if queued:
            print(
                f"the {sweep.kind} {sweep.name} was stopped while queueing: {', '.join(queued)} stay queued in DVC's "
                f"queue, not started; remove them with `dvc queue remove {' '.join(queued)}` before running the "
                "sweep again (`dvc queue status` lists the queue)",
                file=sys.stderr,
                flush=True,
            )
        raise


def start_and_wait(
    sweep: Sweep, names: Sequence[str], jobs: int, env: dict[str, str], poll_s: float = POLL_S
) -> dict[str, str]:
    """`dvc queue start -j <jobs>`, then `wait`: the experiments' final states.

    The queue's workers run apart from this process: stopping it (Ctrl-C, SIGTERM, SIGHUP) stops only the waiting.
    Then, before the way out every command takes (errors.run_stage), it says so: which experiments were still
    queued or running, how to stop them, and the command that writes the report once they are done."""
    states: dict[str, str] = {}
    try:
        print(f"dvc queue start -j {jobs}", flush=True)
        start_queue(jobs, env)
        return wait(names, poll_s, states)
    except KeyboardInterrupt:
        print(still_queued_message(sweep, names, states), file=sys.stderr, flush=True)
        raise


def start_queue(jobs: int, env: dict[str, str]) -> None:
    """`dvc queue start -j <jobs>`; PipelineError with its output when it fails.

    Its output goes to a file, not a pipe: the workers it starts in the background inherit its stdout and stderr
    and live until the queue is empty, and reading a pipe to its end would wait for them (a whole sweep without a
    line of progress)."""
    command = ["dvc", "queue", "start", "-j", str(jobs)]
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as output:
        try:
            result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        except OSError as error:
            raise PipelineError(f"`{' '.join(command)}` could not run ({error}): is the virtualenv active?") from error
        if result.returncode != 0:
            output.seek(0)
            raise PipelineError(f"`{' '.join(command)}` failed (exit {result.returncode}):\n{output.read()}")


def still_queued_message(sweep: Sweep, names: Sequence[str], states: dict[str, str]) -> str:
    """What an interrupted wait leaves behind, and what to do: `states` holds the last states seen (maybe none)."""
    pending = [name for name in names if states.get(name) not in ("Success", "Failed")]
    example = pending[0] if pending else names[0]
    return "\n".join(
        [
            f"the {sweep.kind} {sweep.name} stopped waiting, but its queued experiments keep running in DVC's queue "
            f"(not finished when last seen: {', '.join(pending) or 'none'}; `dvc queue status` shows them):",
            "  to stop them: `dvc queue stop --kill` (every running experiment of the queue, then its workers; "
            f"`dvc queue remove --queued` drops those not started), or one at a time: `dvc queue kill {example}`",
            f"  to write the report once they are done: `{sweep.collect_command()}`",
        ]
    )


def wait(names: Sequence[str], poll_s: float = POLL_S, shown: dict[str, str] | None = None) -> dict[str, str]:
    """Wait until none of `names` is queued or running, printing each change of state; their final states.

    `shown`, when given, is kept up to date with the last state seen of each (what an interruption reports)."""
    shown = {} if shown is None else shown
    started = time.monotonic()
    while True:
        states = queue_status()
        mine = {name: states.get(name, "Missing") for name in names}
        changed = {name: state for name, state in mine.items() if shown.get(name) != state}
        if changed:
            done = sum(state in ("Success", "Failed") for state in mine.values())
            minutes = (time.monotonic() - started) / 60
            for name, state in changed.items():
                print(f"[{minutes:5.1f} min] {name}: {state} ({done}/{len(names)} done)", flush=True)
            shown.update(changed)
        if not any(state in ("Queued", "Running") for state in mine.values()):
            return mine
        time.sleep(poll_s)


def log_tail(name: str, lines: int = LOG_LINES) -> str:
    """The last lines of a (failed) experiment's output, `dvc queue logs <name>`."""
    text = dvc("queue", "logs", name, check=False)
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(no log)"


def experiment_metrics(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{name: {metrics file: {metric: value}}} of the named experiments `dvc exp show --json` lists (this commit's)
    that succeeded: a failed or queued one is left out (DVC would show the metrics it started from)."""
    found: dict[str, dict[str, Any]] = {}
    for baseline in json.loads(dvc("exp", "show", "--json", "--hide-failed", "--hide-queued") or "[]"):
        for experiment in baseline.get("experiments") or []:
            if (experiment.get("executor") or {}).get("state", "success") != "success":
                continue
            for rev in experiment.get("revs") or []:
                if rev.get("name") in names:
                    metrics = (rev.get("data") or {}).get("metrics") or {}
                    found[rev["name"]] = {
                        Path(path).as_posix(): (result or {}).get("data") or {} for path, result in metrics.items()
                    }
    return found


def run_sweep(
    sweep: Sweep, jobs: int, collect_only: bool, guard: tracking.SweepGuard | None = None
) -> tuple[dict[str, StepResults], dict[str, str], tracking.SweepRuns | None]:
    """Queue and run the sweep (unless `collect_only`: its experiments ran already), wait, collect.

    Returns ({run name: [StepResult per step]}, {failed experiment: its log's last lines}, the MLflow runs: the
    parent and its children are created before queueing (best effort); tracking.finish_sweep completes them).
    `guard` gets those runs as soon as they exist: the caller writes the report and finishes the runs inside it
    (`with tracking.SweepGuard() as guard:`), so that a stop signal or an error anywhere on the way ends them
    (KILLED, FAILED) instead of leaving them RUNNING; without one they are guarded until this returns.
    """
    if guard is None:
        with tracking.SweepGuard() as own:
            return run_sweep(sweep, jobs, collect_only, own)
    points = sweep.points()
    names = [point.name for point in points]
    mlflow_runs = None
    if not collect_only:
        taken = existing_names(names)
        if taken:
            raise PipelineError(
                f"experiments {', '.join(taken)} exist already: choose another sweep name, collect them with "
                f"--collect, or remove them with `dvc exp remove {' '.join(taken)}` (`dvc queue remove` if queued)"
            )
        mlflow_runs = guard.runs = tracking.start_sweep(sweep, points)
        queue(sweep, points)
        env = dict(os.environ)
        if mlflow_runs is not None:
            env[tracking.SWEEP_PARENTS] = json.dumps(mlflow_runs.by_experiment)
        states = start_and_wait(sweep, names, jobs, env)
    else:
        states = queue_status()
        if not existing_names(names):
            tracking.end_abandoned_sweep(sweep)  # its runs a stopped sweep left RUNNING: nothing will finish them
            raise PipelineError(
                f"--collect: no experiment of sweep {sweep.name} ({names[0]}, ...) exists: run it first, without "
                "--collect (`dvc exp list --all-commits` lists the experiments there are)"
            )
        mlflow_runs = guard.runs = tracking.find_sweep(sweep, points)
    found = {name: metrics for name, metrics in experiment_metrics(names).items() if states.get(name) != "Failed"}
    failed = {name: log_tail(name) for name in names if name not in found}
    for name in failed:
        if states.get(name) != "Failed":
            failed[name] = f"(state {states.get(name, 'unknown')}: not in `dvc exp show`)\n{failed[name]}"
    return summarize(sweep, points, found), failed, mlflow_runs


def stop_if_failed(failed: dict[str, str], directory: Path) -> None:
    """After the report is written: a sweep with failed experiments exits non-zero, naming them."""
    if failed:
        raise PipelineError(
            f"{len(failed)} experiment(s) failed: {', '.join(failed)}; their logs' last lines are in "
            f"{directory}/README.md (the others are reported)"
        )


StepResults = list[StepResult]


def summarize(sweep: Sweep, points: Sequence[Point], found: dict[str, dict[str, Any]]) -> dict[str, StepResults]:
    """Per run, one StepResult per step: its metrics over the seeds whose experiment succeeded."""
    results: dict[str, StepResults] = {}
    for run in sweep.runs:
        path = run.eval_metrics_path.as_posix()
        rows = []
        for step in sweep.steps:
            row = StepResult(step)
            for point in (point for point in points if point.step == step):
                metrics = found.get(point.name, {}).get(path)
                if not metrics or not all(isinstance(metrics.get(m), int | float) for m in METRICS):
                    row.failed.append(point.name)
                    continue
                for metric in METRICS:
                    row.stats.setdefault(metric, Stat([])).values.append(float(metrics[metric]))
                row.verdicts.append(str(metrics.get("verdict", "?")))
            rows.append(row)
        results[run.name] = rows
    return results


# --------------------------------------------------------------------------------------------- report


def table(rows: StepResults, key: str, extra: dict[str, str] | None = None) -> str:
    """A Markdown table: per step train, validation, test accuracy, gap (mean and range), verdicts, `extra`."""
    head = f"| {key} | train | validation | test | gap | verdicts |" + (" |" if extra else "")
    lines = [
        head.replace(" | |", " | note |") if extra else head,
        "|---|--:|--:|--:|--:|---|" + ("---|" if extra else ""),
    ]
    for row in rows:
        note = f" {(extra or {}).get(row.step.label, '')} |" if extra is not None else ""
        if not row.ok:
            lines.append(f"| {row.step.label} | failed | | | | {', '.join(row.failed)} |{note}")
            continue
        cells = [row.stats[metric].text() for metric in METRICS]
        verdicts = ", ".join(row.verdicts) + (f"; failed: {', '.join(row.failed)}" if row.failed else "")
        lines.append(f"| {row.step.label} | {' | '.join(cells)} | {verdicts} |{note}")
    return "\n".join(lines)


def failures_markdown(failed: dict[str, str]) -> str:
    if not failed:
        return ""
    parts = ["## Failed experiments\n"]
    for name, tail in failed.items():
        parts.append(f"`{name}` failed; the last lines of `dvc queue logs {name}`:\n\n```\n{tail}\n```\n")
    return "\n".join(parts)


def results_json(results: dict[str, StepResults]) -> dict[str, Any]:
    return {
        run: [
            {
                "step": row.step.label,
                "value": row.step.value,
                "status": "failed" if not row.ok else "ok",
                "metrics": {SHORT[m]: stat.to_dict() for m, stat in row.stats.items()},
                "verdicts": row.verdicts,
                "failed_experiments": row.failed,
            }
            for row in rows
        ]
        for run, rows in results.items()
    }


def results_from_json(runs: Any, source: str = "the report's json") -> dict[str, StepResults]:
    """The inverse of results_json: {run: [StepResult per step]} from a report json's "runs". A Step gets the
    recorded label and value, and x = float(value) when every value of its run is a number, else None (categorical:
    augmentation off/on); as_is, how a step was queued, is not recorded (False). PipelineError naming `source` and
    the key when one is missing or odd (not a list, a string, a finite number where one is due)."""
    long_names = {short: metric for metric, short in SHORT.items()}
    kinds = {str: "string", list: "list", dict: "mapping"}

    def odd(where: str, what: str) -> PipelineError:
        return PipelineError(
            f"{source}: {where} {what}; restore the file (`git checkout -- {source}`) or write the report again "
            "(run the sweep, or --collect)"
        )

    def get(node: Any, key: str, kind: type, where: str) -> Any:
        if not isinstance(node, dict) or key not in node:
            raise odd(where, f"has no key {key!r}")
        if not isinstance(node[key], kind):
            raise odd(f"{where}.{key}", f"is {node[key]!r}, not a {kinds[kind]}")
        return node[key]

    def strings(node: Any, key: str, where: str) -> list[str]:
        for index, text in enumerate(texts := get(node, key, list, where)):
            if not isinstance(text, str):
                raise odd(f"{where}.{key}[{index}]", f"is {text!r}, not a string")
        return list(texts)

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

    if not isinstance(runs, dict) or not runs:
        raise odd("runs", f"is {runs!r}, not a mapping of run names to their steps")
    results: dict[str, StepResults] = {}
    for run, steps in runs.items():
        if not isinstance(steps, list) or not steps:
            raise odd(f"runs.{run}", f"is {steps!r}, not a list of steps")
        numeric = all(isinstance(step, dict) and number(step.get("value")) for step in steps)
        rows: StepResults = []
        for index, step in enumerate(steps):
            where = f"runs.{run}[{index}]"
            if not isinstance(step, dict) or "value" not in step:
                raise odd(where, "has no key 'value'")
            value = step["value"]
            row = StepResult(Step(get(step, "step", str, where), value, float(value) if numeric else None))
            for short, stat in get(step, "metrics", dict, where).items():
                if short not in long_names:
                    raise odd(f"{where}.metrics", f"has {short!r}, not one of {', '.join(long_names)}")
                values = get(stat, "values", list, f"{where}.metrics.{short}")
                for position, figure in enumerate(values):
                    if not number(figure):
                        raise odd(f"{where}.metrics.{short}.values[{position}]", f"is {figure!r}, not a number")
                if not values:
                    raise odd(f"{where}.metrics.{short}.values", "is empty")
                row.stats[long_names[short]] = Stat([float(figure) for figure in values])
            status = get(step, "status", str, where)
            if status != ("ok" if row.ok else "failed") or 0 < len(row.stats) < len(METRICS):
                raise odd(
                    f"{where}.metrics",
                    f"holds {', '.join(step['metrics']) or 'nothing'} with status {status!r}: an ok step holds "
                    f"{', '.join(long_names)}, a failed one nothing",
                )
            row.verdicts = strings(step, "verdicts", where)
            row.failed = strings(step, "failed_experiments", where)
            rows.append(row)
        results[run] = rows
    return results


def chart(results: dict[str, StepResults], key: str, path: Path, title: str) -> None:
    """Two panels: validation accuracy and gap against the key's value, one line per run, mean with the range
    over seeds as error bars; categorical steps (augmentation off/on) are evenly spaced."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.subplots(1, 2)
    for run, rows in results.items():
        done = [row for row in rows if row.ok]
        if not done:
            continue
        numeric = all(row.step.x is not None for row in rows)
        xs = [row.step.x if numeric else rows.index(row) for row in done]
        for ax, metric in zip(axes, ("val_accuracy_inference", "gap")):
            stats = [row.stats[metric] for row in done]
            means = [stat.mean for stat in stats]
            errors = [[m - s.low for m, s in zip(means, stats)], [s.high - m for m, s in zip(means, stats)]]
            ax.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=run)
            if not numeric:
                ax.set_xticks(range(len(rows)), [row.step.label for row in rows])
    for ax, label in zip(axes, ("validation accuracy", "gap (train - validation)")):
        ax.set_xlabel(key)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(title)
    figure.savefig(path, dpi=100)


def write_report(directory: Path, files: dict[str, str | dict[str, Any]], chart_file: str, draw: Any) -> None:
    """Write the report directory whole (atomic: the old one or the new one, never half): text files, JSON files
    (dict values) and the chart, drawn by `draw(path)`."""
    with atomic.atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        for name, content in files.items():
            text = json.dumps(content, indent=2) + "\n" if isinstance(content, dict) else content
            (tmp / name).write_text(text, encoding="utf-8")
        draw(tmp / chart_file)


def report_dir(kind: str, name: str) -> Path:
    return layout.REPORTS / kind / name
