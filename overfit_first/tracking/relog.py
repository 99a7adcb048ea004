"""`relog`: a trained run logged to MLflow afterwards from its output files (the store was down during training),
once: a model file that a FINISHED run holds already is not logged again."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import mlflow

from overfit_first import metrics
from overfit_first.config import Run, load_params
from overfit_first.data.splits import dataset_dir, load_split, load_summary
from overfit_first.errors import PipelineError
from overfit_first.layout import repo_root
from overfit_first.tracking.evaluation_log import training_run
from overfit_first.tracking.run_log import RunLog
from overfit_first.tracking.store import (
    NotTracked,
    best_effort,
    experiment_name,
    store_client,
    store_lock,
    tracking_uri,
)
from overfit_first.tracking.ui import ui_link

# keras is imported only where a model is at hand (overfit_first.tracking, tests/test_entry_points.py).
if TYPE_CHECKING:
    import keras


def log_run(run: Run, summary: dict[str, Any], model: keras.Model | None = None) -> bool:
    """Log a trained run from its output files into a new MLflow run; on failure one warning and False.

    The run's start is set back by the training's duration (seconds_per_epoch x epochs_run), so its
    duration in the UI is the training's, as for a live run; the tag `relogged` says it was logged afterwards.
    A model file that a FINISHED run of the store holds already (tags `run` and `model_sha256`: a second `relog`,
    or one after a live run that did complete) is not logged again: that run is named, and True.
    """
    from overfit_first.accelerate import is_chief  # imports keras, as loading the model will

    if not is_chief():
        print(f"{run.name}: not logged to MLflow: this is not the chief worker of TF_CONFIG", flush=True)
        return True
    root = repo_root()
    uri = tracking_uri(root)
    example = load_split(dataset_dir(run.dataset), "valid").x[:1]
    log = RunLog(run, summary, uri, root, example)

    logged: list[Any] = []  # the FINISHED run that holds this model file already, if any

    def relog_files() -> None:
        trained = metrics.read(run.train_metrics_path, metrics.TrainMetrics, f"dvc repro --force train@{run.name}")
        with store_lock(uri):
            try:
                logged.append(training_run(store_client(uri), run, status="FINISHED"))
                return
            except NotTracked:
                pass
            try:
                log.open(int((time.time() - trained.seconds_per_epoch * trained.epochs_run) * 1000))
                mlflow.set_tag("relogged", "true")
                log.complete(model)
            except BaseException as error:
                # KILLED on Ctrl-C, SIGTERM or SIGHUP (errors.Interrupted), else FAILED; not what MLflow's exit
                # handler would do with a run left active (FINISHED). The store may be what failed: no new error.
                with contextlib.suppress(Exception):
                    log.end("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
                raise
            log.end("FINISHED")

    consequence = (
        f"run {run.name} is missing or incomplete in {uri}. Its model, metrics and history are saved in "
        f"{run.model_path}, {run.train_metrics_path} and {run.history_path}; log them once the tracking "
        f"store is back with `python -m overfit_first tracking relog {run.name}`"
    )
    if not best_effort(relog_files, consequence):
        return False
    if logged:
        found = logged[0]
        print(
            f"{run.name}: already logged to MLflow run {found.info.run_id} (FINISHED) in experiment "
            f"{experiment_name(run)} at {uri}, with this very model file ({run.model_path}, sha256 "
            f"{found.data.tags['model_sha256'][:12]}...): nothing logged again; see "
            f"{ui_link(uri, found.info.experiment_id, found.info.run_id)}",
            flush=True,
        )
        return True
    print(
        f"{run.name}: logged to MLflow run {log.run_id} in experiment {experiment_name(run)} at {uri}; see "
        f"{ui_link(uri, str(log.experiment_id), log.run_id)}",
        flush=True,
    )
    return True


def relog(run_name: str) -> None:
    """Log an already trained run again, from its files (after the tracking server was down)."""
    run = load_params().run(run_name)
    missing = [str(path) for path in (run.model_path, run.train_metrics_path, run.history_path) if not path.is_file()]
    if missing:
        raise PipelineError(f"{', '.join(missing)} not found: train the run first with `dvc repro train@{run_name}`")
    if not log_run(run, load_summary(dataset_dir(run.dataset))):
        raise PipelineError(f"run {run_name} could not be logged; check MLFLOW_TRACKING_URI and the server")
