"""Where runs go and how every MLflow call is made: the store's URI (MLFLOW_TRACKING_URI, else the repository's
mlflow.db), a client bound to it, the lock local writers take turns on, `best_effort` (the one wrapper of every MLflow
call), and a dataset's experiment, created where needed and tagged for the UI's model-training view."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from overfit_first import progress
from overfit_first.config import Run

# An unreachable server must fail in seconds, not after MLflow's default 7 retries with backoff
# (minutes); MLflow's own run links open the GenAI view, ours the model-training one. Set to change.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


class NotTracked(Exception):
    """What a step needs is not in the tracking store (e.g. the training run of the model it evaluates)."""


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"


def store_client(uri: str) -> mlflow.MlflowClient:
    """A client of the store `uri` for runs and the model registry alike; and `uri` made this process's store.

    The one way this module reaches a store. Explicit URIs on the client are not enough: MLflow makes calls of its
    own that take no URI and resolve against the process's tracking store, and without one set, against `mlflow.db`
    of the working directory (created empty): the fluent API (mlflow.log_metrics, Model.log) and the registry, which
    looks up a `models:/<model id>` source with a client of its own (mlflow/mlflow#23367). In a queued or
    `--temp` DVC experiment, or a pipeline folder (cifar/), the working directory is not the repository root:
    the champion was "not found" and a stray mlflow.db was left there. mlflow.set_tracking_uri also sets
    MLFLOW_TRACKING_URI, so a subprocess started afterwards uses the same store. The registry is the client's
    (`registry_uri`), not the process's: a user's MLFLOW_REGISTRY_URI is not this project's store.
    """
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Let one process at a time write to a local SQLite store (`dvc queue start -j 2` runs stages in parallel).

    SQLite has one writer at a time: a second writer waits 5 s at most, then fails with "database is locked"
    (logging a model takes longer), and two processes that find no mlflow.db both try to create its tables.
    Retrying is no cure: a retried run would leave its half-logged first attempt behind. So writers take turns
    on a lock file beside the database, which costs nothing when alone. A tracking server orders writes itself.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock = Path(uri.removeprefix("sqlite:///").split("?", 1)[0] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
        yield


def best_effort(action: Callable[[], None], consequence: str | None, warned: threading.Event | None = None) -> bool:
    """Run `action` (MLflow calls); True when it completed. The one wrapper of every MLflow call here.

    Any failure (a store that is down or slow: HTTP_DEFAULTS bound each request to about 10 s and one retry;
    NotTracked) is one warning, `warning: MLflow logging failed (<reason>): <consequence>`, and False. No
    warning when `consequence` is None (a clean-up after a failure), or when `warned` (one per run) is set
    already; it is set by the warning. Ctrl-C and stop signals are not caught.
    """
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    # MLflow's artifact transfer bars redraw in place: in a log, a flood of partial lines (overfit_first.progress).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", str(progress.is_terminal(sys.stderr)).lower())
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # our one warning replaces its retry messages
    # MLflow's notes on system metrics (GPU or not, started, stopped, a failed sample) are not the user's concern.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)
    # Nor is its note that it found uv.lock while inferring the logged model's requirements.
    logging.getLogger("mlflow.utils.uv_utils").setLevel(logging.WARNING)
    try:
        action()
    except Exception as error:  # noqa: BLE001 - tracking is best-effort: it never fails a stage
        if consequence is not None and not (warned is not None and warned.is_set()):
            if warned is not None:
                warned.set()
            reason = textwrap.shorten(str(error), 200, placeholder=" ...") or type(error).__name__
            print(f"warning: MLflow logging failed ({reason}): {consequence}", file=sys.stderr, flush=True)
        return False
    return True


def experiment_name(run: Run) -> str:
    return experiment_name_of(run.dataset)


def experiment_name_of(dataset: str) -> str:
    return f"overfit-first/{dataset}"


def ensure_experiment(client: mlflow.MlflowClient, name: str, uri: str, artifacts: Path) -> str:
    """The experiment's id, created if needed (a local store gets an absolute artifact location) and tagged
    for the model-training view (EXPERIMENT_KIND), also when an older version of the project created it."""
    key, kind = EXPERIMENT_KIND
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        # A server chooses its own artifact store; a local one would otherwise default to ./mlruns of the cwd.
        local = uri.split(":", 1)[0] not in ("http", "https", "databricks")
        try:
            return client.create_experiment(
                name, artifact_location=artifacts.as_uri() if local else None, tags={key: kind}
            )
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # created meanwhile by a parallel queued run
            if experiment is None:
                raise
    if experiment.tags.get(key) != kind:
        client.set_experiment_tag(experiment.experiment_id, key, kind)
    return experiment.experiment_id
