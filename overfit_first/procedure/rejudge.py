"""`--rejudge` of the ladder and the data-size curve: a written sweep report judged again under the current rule.

A report's json (ladder.json, data_curve.json) records every per-seed value of every metric
(sweep_report.results_json). `recorded` reads them back (sweep_report.results_from_json) with the sweep's name, key,
seeds, tolerance, failed experiments and the command that measured them, so that the command writes its report again
whole, README, json and chart, with the current `recommend` or `reading` (overfit_first.procedure.noise): nothing is
queued or trained, no MLflow run starts, `dvc` is not called.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overfit_first import layout
from overfit_first.errors import PipelineError
from overfit_first.procedure.sweep import COMMANDS, StepResults, Sweep, check_name
from overfit_first.procedure.sweep_report import results_from_json


@dataclass(frozen=True)
class Recorded:
    """What a report's json recorded: the sweep (steps from the recorded values, no runs: nothing is queued), the
    results, the failed experiments with their logs' last lines, the tolerance, and the command that measured the
    values (None: not recorded)."""

    sweep: Sweep
    results: dict[str, StepResults]
    failed: dict[str, str]
    tolerance: float
    command: str | None


def recorded(args: argparse.Namespace, path: Path, kind: str, measuring: Sequence[str]) -> Recorded:
    """The report json at `path` of the `kind` sweep `args.name`, the tolerance `args.tolerance` when given.

    PipelineError when an option of `measuring` (argparse names: they say what to measure) was given too, naming
    it; when the json is missing (naming the path and the commands that write it); when it is not JSON, lacks a key
    or holds an odd value (naming the file and the key)."""
    given = [f"--{option}" for option in measuring if getattr(args, option) not in (None, False)]
    if given:
        raise PipelineError(
            f"--rejudge cannot be combined with {', '.join(given)}: it measures nothing, it judges again the values "
            f"{path} recorded; drop {', '.join(given)}, or run the {kind} without --rejudge"
        )
    check_name(args.name)
    layout.require_repo_root()
    measure = f"`python -m overfit_first {COMMANDS[kind]} {args.name} ...`"
    fix = f"restore it (`git checkout -- {path}`) or write the report again ({measure}, or with --collect)"
    if not path.is_file():
        raise PipelineError(
            f"{path} is missing: --rejudge judges the values of a written report again; run the {kind} first "
            f"({measure}), or write its report from its experiments with --collect"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # UnicodeDecodeError, JSONDecodeError: ValueErrors
        raise PipelineError(f"{path} is not JSON ({error}): {fix}") from None

    if not isinstance(data, dict):
        raise PipelineError(f"{path} holds a {type(data).__name__}, not a JSON object: {fix}")

    def key(name: str, fits: Any, what: str, optional: bool = False) -> Any:
        if name not in data and not optional:
            raise PipelineError(f"{path} has no key {name!r}: {fix}")
        if name in data and not fits(data[name]):
            raise PipelineError(f"{path}: {name} is {data[name]!r}, not {what}; {fix}")
        return data.get(name)

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    name = key("sweep", lambda value: value == args.name, f"{args.name!r} (the report's folder)")
    swept = key("key", lambda value: isinstance(value, str), "a params key")
    seeds = key("seeds", lambda value: value is None or isinstance(value, list) and all(map(whole, value)), "seeds")
    tolerance = key("tolerance", lambda value: (whole(value) or isinstance(value, float)) and 0 <= value < 1, "in 0..1")
    command = key("command", lambda value: value is None or isinstance(value, str), "a command", optional=True)
    failed = key(
        "failed_experiments",
        lambda value: isinstance(value, dict) and all(isinstance(text, str) for text in value.values()),
        "{experiment: its log's last lines}",
    )
    key("runs", lambda value: True, "")
    results = results_from_json(data["runs"], str(path))
    steps = [row.step for row in next(iter(results.values()))]
    for run, rows in results.items():
        if [row.step.label for row in rows] != [step.label for step in steps]:
            raise PipelineError(f"{path}: runs.{run} has other steps than the first run; {fix}")
    if args.tolerance is not None:
        if not (math.isfinite(args.tolerance) and 0 <= args.tolerance < 1):
            raise PipelineError(f"--tolerance {args.tolerance}: an accuracy difference, 0 <= tolerance < 1")
        tolerance = args.tolerance
    sweep = Sweep(name, swept, steps, seeds, [], kind)
    return Recorded(sweep, results, failed, float(tolerance), command or readme_command(path.parent, kind))


def readme_command(directory: Path, kind: str) -> str | None:
    """The command a report's README.md names alone on its third line, in backticks, as reports did before their
    json recorded it (data-curve reports, which named it `python -m overfit_first.data_curve ...`: the module's path
    before issue 23); None when it names none (or the README is missing)."""
    try:
        lines = (directory / "README.md").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return None
    line = lines[2] if len(lines) > 2 else ""
    starts = (f"`python -m overfit_first.{COMMANDS[kind]} ", f"`python -m overfit_first {COMMANDS[kind]} ")
    if line.startswith(starts) and line.endswith("`") and line.count("`") == 2:
        return line[1:-1]
    return None


def provenance(command: str | None, rejudged_by: str | None, name: str) -> str:
    """The README's line below its title: the command that measured the values, and the one that judged them again
    (None: measured and judged by `command`)."""
    measured = f"`{command}`" if command else f"the experiments of sweep `{name}` (command not recorded)"
    if rejudged_by is None:
        return measured
    return (
        f"The values were measured by {measured} and judged again, without retraining, by `{rejudged_by}` under the "
        "current rule (overfit_first/procedure/noise.py)."
    )
