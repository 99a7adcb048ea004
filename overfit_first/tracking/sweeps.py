"""A sweep's MLflow runs: a parent and one child run per step, created before the sweep's experiments are queued
(`start_sweep`), found again by --collect (`find_sweep`), completed with each step's numbers and the report
(`finish_sweep`), and never left RUNNING: `SweepGuard` ends them KILLED or FAILED when the sweep stops, and runs of a
sweep whose process is gone end KILLED."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow

from overfit_first.layout import repo_root
from overfit_first.tracking.ownership import process_exists
from overfit_first.tracking.store import (
    best_effort,
    ensure_experiment,
    experiment_name_of,
    store_client,
    store_lock,
    tracking_uri,
)
from overfit_first.tracking.sweep_types import Sweep, SweepPoint, SweepResult
from overfit_first.tracking.ui import ui_link


@dataclasses.dataclass
class SweepRuns:
    """A sweep's MLflow runs: the parent, one child per step (by step label), and which child each DVC experiment's
    training runs nest under (tag mlflow.parentRunId); all in the dataset's experiment, where the trainings log."""

    uri: str
    experiment_id: str
    parent: str
    children: dict[str, str]
    by_experiment: dict[str, str]
    name: str  # the sweep's


class SweepGuard:
    """Around everything a sweep command does from creating its MLflow runs to finishing them (finish_sweep): if a
    stop signal or Ctrl-C leaves the block, the runs still RUNNING end KILLED, if an error does, FAILED; so none
    stays RUNNING. `runs` is set as soon as they exist (overfit_first.procedure.sweep_run.run_sweep)."""

    def __init__(self) -> None:
        self.runs: SweepRuns | None = None

    def __enter__(self) -> SweepGuard:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> None:
        if error is not None and self.runs is not None:
            end_sweep(self.runs, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
            self.runs = None


def end_sweep(runs: SweepRuns, status: str) -> None:
    """End `runs` (parent and children) still RUNNING as `status`; a line on stderr says which, and what --collect
    does later. Best effort: the store may be what failed."""
    ended: list[str] = []

    def end() -> None:
        client = store_client(runs.uri)
        with store_lock(runs.uri):
            for run_id in [*runs.children.values(), runs.parent]:
                if client.get_run(run_id).info.status == "RUNNING":
                    client.set_terminated(run_id, status)
                    ended.append(run_id)

    best_effort(end, f"the sweep {runs.name}'s MLflow runs may stay RUNNING; its --collect ends them")
    if ended:
        print(
            f"MLflow: sweep {runs.name}: {len(ended)} run(s) ended {status} (parent {runs.parent}); --collect "
            "completes them from its experiments",
            file=sys.stderr,
            flush=True,
        )


def end_stale_sweep_runs(client: mlflow.MlflowClient, experiment_id: str, name: str) -> list[str]:
    """End as KILLED the runs of sweep `name` left RUNNING by a process that is gone: of this machine and no longer
    running (SIGKILL, a reboot), or untagged with one (an older version of the project left them RUNNING when
    stopped). A run of a live process (the sweep still waiting in another terminal) or another machine is left."""
    host = socket.gethostname()
    ended = []
    for stale in client.search_runs([experiment_id], f"tags.sweep = '{name}' and attributes.status = 'RUNNING'"):
        tags = stale.data.tags
        if "host" in tags and (tags["host"] != host or not tags.get("pid", "").isdigit()):
            continue
        if "host" in tags and process_exists(int(tags["pid"])):
            continue
        client.set_terminated(stale.info.run_id, "KILLED")
        ended.append(stale.info.run_id)
    if ended:
        print(f"MLflow: sweep {name}: {len(ended)} run(s) left RUNNING by a stopped process ended KILLED", flush=True)
    return ended


def end_abandoned_sweep(sweep: Sweep) -> None:
    """End the runs a stopped sweep `sweep` left RUNNING (end_stale_sweep_runs), where it has nothing to collect."""

    def end() -> None:
        uri = tracking_uri(repo_root())
        client = store_client(uri)
        experiment = client.get_experiment_by_name(experiment_name_of(sweep.dataset))
        if experiment is not None:
            with store_lock(uri):
                end_stale_sweep_runs(client, experiment.experiment_id, sweep.name)

    best_effort(end, f"the sweep {sweep.name}'s MLflow runs left RUNNING stay so")


def start_sweep(sweep: Sweep, points: Sequence[SweepPoint]) -> SweepRuns | None:
    """Create the parent run of an overfit_first.procedure.sweep.Sweep and a child per step, RUNNING until finish_sweep;
    None (and one warning) when the store cannot be written: the sweep runs anyway, untracked. Each is tagged with
    this process (host, pid), so that a later --collect can tell runs of a stopped sweep from a live one's."""
    created: list[SweepRuns] = []

    def create() -> None:
        root = repo_root()
        uri = tracking_uri(root)
        client = store_client(uri)
        made: list[str] = []
        with store_lock(uri):
            experiment = ensure_experiment(
                client, experiment_name_of(sweep.dataset), uri, root / "mlartifacts" / sweep.dataset
            )
            tags = {
                "sweep": sweep.name,
                "sweep_kind": sweep.kind,
                "sweep_key": sweep.key,
                "mlflow.source.type": "LOCAL",
                "host": socket.gethostname(),
                "pid": str(os.getpid()),
            }
            try:
                parent = client.create_run(experiment, run_name=sweep.name, tags=tags).info.run_id
                made.append(parent)
                client.log_param(parent, "key", sweep.key)
                client.log_param(parent, "values", " ".join(step.label for step in sweep.steps))
                client.log_param(parent, "seeds", " ".join(map(str, sweep.seeds or [])) or "params.yaml train.seed")
                client.log_param(parent, "runs", " ".join(run.name for run in sweep.runs))
                children = {}
                for step in sweep.steps:
                    child_tags = {**tags, "mlflow.parentRunId": parent, "sweep_step": step.label}
                    child = client.create_run(experiment, run_name=f"{sweep.name}-{step.label}", tags=child_tags)
                    made.append(child.info.run_id)
                    client.log_param(child.info.run_id, sweep.key, step.label)
                    children[step.label] = child.info.run_id
            except BaseException as error:  # half made: none of them may stay RUNNING
                with contextlib.suppress(Exception):
                    for run_id in made:
                        client.set_terminated(run_id, "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
                raise
        by_experiment = {point.name: children[point.step.label] for point in points}
        created.append(SweepRuns(uri, experiment, parent, children, by_experiment, sweep.name))

    best_effort(create, f"the sweep {sweep.name} is not tracked in MLflow (its experiments are)")
    return created[0] if created else None


def find_sweep(sweep: Sweep, points: Sequence[SweepPoint]) -> SweepRuns | None:
    """The newest parent run of a sweep of this name and its children (to complete them on --collect)."""
    found: list[SweepRuns] = []

    def search() -> None:
        uri = tracking_uri(repo_root())
        client = store_client(uri)
        experiment = client.get_experiment_by_name(experiment_name_of(sweep.dataset))
        if experiment is None:
            return
        ids = [experiment.experiment_id]
        parents = [
            run
            for run in client.search_runs(
                ids, f"tags.sweep = '{sweep.name}'", order_by=["attributes.start_time DESC"], max_results=200
            )
            if "sweep_step" not in run.data.tags
        ]
        if not parents:
            return
        parent = parents[0].info.run_id
        children = {
            run.data.tags["sweep_step"]: run.info.run_id
            for run in client.search_runs(ids, f"tags.`mlflow.parentRunId` = '{parent}'", max_results=1000)
            if "sweep_step" in run.data.tags
        }
        by_experiment = {point.name: children[point.step.label] for point in points if point.step.label in children}
        found.append(SweepRuns(uri, experiment.experiment_id, parent, children, by_experiment, sweep.name))

    best_effort(search, f"the sweep {sweep.name}'s MLflow runs could not be found; they stay as they are")
    return found[0] if found else None


def finish_sweep(
    runs: SweepRuns | None,
    results: Mapping[str, Sequence[SweepResult]],
    failed: dict[str, str],
    report: Path | None,
    recommendations: dict[str, str],
) -> None:
    """Complete a sweep's MLflow runs: each child gets its step's mean metrics per run (`<run>/val_accuracy`, ...)
    and their standard deviations over seeds (`<run>/val_accuracy_std`), and ends FINISHED, or FAILED when every
    experiment of its step failed; training runs of the sweep's experiments logged without a parent (workers
    started before the sweep) are nested now; the parent gets the report's files and the recommendations (tags
    `recommended/<run>`; `failed_experiments` names any) and ends FINISHED. Runs of earlier attempts of the same
    sweep left RUNNING by a stopped process end KILLED (end_stale_sweep_runs)."""
    if runs is None:
        return

    def complete() -> None:
        client = store_client(runs.uri)
        with store_lock(runs.uri):
            for label, child in runs.children.items():
                rows = [row for rows in results.values() for row in rows if row.step.label == label]
                for run_name, run_rows in results.items():
                    for row in run_rows:
                        if row.step.label == label:
                            for metric, stat in row.stats.items():
                                name = f"{run_name}/{metric.removesuffix('_inference')}"
                                client.log_metric(child, name, stat.mean)
                                client.log_metric(child, f"{name}_std", stat.std)
                client.set_terminated(child, "FINISHED" if any(row.ok for row in rows) else "FAILED")
            for experiment, child in runs.by_experiment.items():
                for trained in client.search_runs([runs.experiment_id], f"tags.dvc_exp_name = '{experiment}'"):
                    if "mlflow.parentRunId" not in trained.data.tags:
                        client.set_tag(trained.info.run_id, "mlflow.parentRunId", child)
            for run_name, label in recommendations.items():
                client.set_tag(runs.parent, f"recommended/{run_name}", label)
            if report is not None:
                for path in sorted(report.iterdir()):
                    client.log_artifact(runs.parent, str(path))
            if failed:
                client.set_tag(runs.parent, "failed_experiments", " ".join(failed))
            client.set_terminated(runs.parent, "FINISHED")  # a failed step is the child's, not the sweep's
            end_stale_sweep_runs(client, runs.experiment_id, runs.name)
        link = ui_link(runs.uri, runs.experiment_id, runs.parent)
        print(f"MLflow: the sweep is run {runs.parent} (a child run per step) in {runs.uri}; see {link}", flush=True)

    best_effort(complete, "the sweep's MLflow runs are incomplete (its report and DVC experiments are not)")
