"""Running a sweep (overfit_first.procedure.sweep) as DVC experiments: queue each (step, seed), start the queue, wait
with a line per change of state, then collect each experiment's metrics, a failed one with the last lines of its log.

Every `dvc` command goes through overfit_first.procedure.dvc_client; the MLflow runs of the sweep are
overfit_first.tracking's (SweepGuard, start_sweep, find_sweep).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from overfit_first import tracking
from overfit_first.errors import PipelineError
from overfit_first.procedure import dvc_client
from overfit_first.procedure.sweep import METRICS, Point, Stat, StepResult, StepResults, Sweep

POLL_S = 5.0
LOG_LINES = 30  # of a failed experiment's `dvc queue logs`


def existing_names(names: Sequence[str]) -> list[str]:
    """Those of `names` that `dvc exp list` (this commit's experiments) or `dvc queue status` already hold."""
    listed = set(dvc_client.run("exp", "list", "--name-only").stdout.split())
    listed |= set(queue_status())
    return [name for name in names if name in listed]


def queue_status() -> dict[str, str]:
    """`dvc queue status` as {experiment name: Queued | Running | Success | Failed}."""
    states: dict[str, str] = {}
    for line in dvc_client.run("queue", "status").stdout.splitlines()[1:]:
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
            dvc_client.run("exp", "run", "--queue", "-n", point.name, *sets, *targets)
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
    """`dvc queue start -j <jobs>`; PipelineError with its output when it fails. It returns while the workers it
    starts in the background still run: the client reads their inherited output from files, not pipes."""
    dvc_client.run("queue", "start", "-j", str(jobs), env=env)


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
    text = dvc_client.run("queue", "logs", name, check=False).stdout
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(no log)"


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
    found = {
        name: metrics for name, metrics in dvc_client.experiment_metrics(names).items() if states.get(name) != "Failed"
    }
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
