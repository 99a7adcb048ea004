"""Which process owns a RUNNING run (its tags host and pid): the runs of a name that a process of this machine left
RUNNING when it died end KILLED, and a kept run id is continued only where this store's experiment holds it."""

from __future__ import annotations

import os
import socket

import mlflow
from mlflow.exceptions import MlflowException


def resumable(client: mlflow.MlflowClient, run_id: str, experiment_id: str) -> bool:
    """Whether `run_id` exists in this store's experiment, not deleted (another store has no such run)."""
    try:
        found = client.get_run(run_id)
    except MlflowException:
        return False
    return found.info.experiment_id == experiment_id and found.info.lifecycle_stage == "active"


def end_orphans(client: mlflow.MlflowClient, experiment_id: str, run_name: str, keep: str | None = None) -> None:
    """End as KILLED the runs of `run_name` left RUNNING by a process of this machine that no longer exists.

    Such a process was killed without a chance to end its run (SIGKILL, a reboot). A run of another machine,
    of a live process (a parallel `dvc exp run`), or `keep` (the run a resumed training continues) is not touched.
    """
    host = socket.gethostname()
    running = f"tags.run = '{run_name}' and attributes.status = 'RUNNING'"
    for orphan in client.search_runs([experiment_id], filter_string=running):
        tags = orphan.data.tags
        if orphan.info.run_id == keep:
            continue
        if tags.get("host") == host and tags.get("pid", "").isdigit() and not process_exists(int(tags["pid"])):
            client.set_terminated(orphan.info.run_id, "KILLED")
            print(
                f"{run_name}: MLflow run {orphan.info.run_id}, left RUNNING by process {tags['pid']} which no "
                "longer exists, ended as KILLED",
                flush=True,
            )


def process_exists(pid: int) -> bool:
    """Whether a process `pid` exists on this machine (signal 0 checks without sending anything)."""
    if pid <= 0:  # 0 and negative numbers name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        pass
    return True
