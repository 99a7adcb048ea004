"""MLflow tracking: one MLflow run per training run, logged from the files the train stage wrote.

The train stage writes its outputs (model, metrics, history) first and logs to MLflow last, so tracking
can never cost a training run: when the tracking server is down, one warning says so, and the run can be
logged later from the same files with

    python -m overfit_first.tracking relog <run-name>

A run cut short by Ctrl-C, SIGTERM or SIGHUP while logging ends as KILLED (overfit_first.errors turns the
signals into Interrupted). One that its process could not end (SIGKILL, a power cut) is ended as KILLED by
the next logging of the same run name on the same machine, once its process is gone: no run stays RUNNING.

Where runs go: MLFLOW_TRACKING_URI when set, else a SQLite store `mlflow.db` in the repository root, with
artifacts in `mlartifacts/` beside it, both absolute paths, so `dvc exp run --queue` (which runs the stage
in a copy of the repository under .dvc/tmp/exps/) still logs to the original repository.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no GUI backend, no global figure registry

from overfit_first import layout, metrics, plots, progress
from overfit_first.accelerate import is_chief
from overfit_first.config import KNOBS, Run, load_params
from overfit_first.data.splits import dataset_dir, file_sha256, load_summary
from overfit_first.errors import PipelineError, run_stage
from overfit_first.evaluation import Evaluation
from overfit_first.layout import repo_root

# An unreachable server must fail in seconds, not after MLflow's default 7 retries with backoff
# (minutes). Set in the environment to change them.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
# summary.json entries that are descriptions rather than settings: too long to be useful as params.
SUMMARY_SKIP = {"class_names", "superclass_names", "class_counts"}
BACKEND_PACKAGES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",), "torch": ("torch",)}


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"


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


def log_run(run: Run, summary: dict[str, Any], model: keras.Model | None = None) -> bool:
    """Log `run` from its output files; on any tracking failure print one warning and return False."""
    if not is_chief():
        print(f"{run.name}: not logged to MLflow: this is not the chief worker of TF_CONFIG", flush=True)
        return True
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    # MLflow's artifact transfer bars redraw in place: in a log, a flood of partial lines (overfit_first.progress).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", str(progress.is_terminal(sys.stderr)).lower())
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # our one warning replaces its retry messages
    root = repo_root()
    uri = tracking_uri(root)
    try:
        with store_lock(uri):
            run_id = _log(run, summary, model, uri, root)
    except Exception as error:  # noqa: BLE001 - tracking is best-effort: the outputs are already written
        reason = textwrap.shorten(str(error), 160, placeholder=" ...") or type(error).__name__
        print(
            f"warning: MLflow logging failed ({reason}): run {run.name} is missing or incomplete in "
            f"{uri}. Its model, metrics and history are saved in {run.model_path}, {run.train_metrics_path} and "
            f"{run.history_path}; log them once the tracking store is back with "
            f"`python -m overfit_first.tracking relog {run.name}`",
            file=sys.stderr, flush=True,
        )
        return False
    print(f"{run.name}: logged to MLflow run {run_id} in experiment {experiment_name(run)} at {uri}", flush=True)
    return True


def experiment_name(run: Run) -> str:
    return f"overfit-first/{run.dataset}"


def _log(run: Run, summary: dict[str, Any], model: keras.Model | None, uri: str, root: Path) -> str:
    import mlflow  # imported here: a slow import that only tracking needs
    import mlflow.keras
    from mlflow.entities import Metric
    from mlflow.models import infer_signature

    rebuild = f"dvc repro --force train@{run.name}"
    trained = metrics.read(run.train_metrics_path, metrics.TrainMetrics, rebuild)
    history = metrics.read_history(run.history_path, rebuild)
    model = model if model is not None else keras.saving.load_model(run.model_path)

    mlflow.set_tracking_uri(uri)
    experiment_id = ensure_experiment(mlflow, experiment_name(run), uri, root / "mlartifacts" / run.dataset)
    end_orphans(mlflow.MlflowClient(), experiment_id, run.name)
    with (mlflow.start_run(experiment_id=experiment_id, run_name=run.name, tags=run_tags(run)) as active,
          killed_if_interrupted(mlflow)):
        mlflow.log_params(flat_params(run, summary))
        now = int(time.time() * 1000)
        per_epoch = [
            Metric(key, row[key], now, int(row["epoch"]))
            for row in history.to_dict("records")
            for key in metrics.HISTORY_COLUMNS[1:]
        ]
        mlflow.MlflowClient().log_batch(active.info.run_id, metrics=per_epoch)
        # The best epoch's numbers get their own names: the per-epoch series above end at the last epoch.
        mlflow.log_metrics(
            {f"best_{key}" if key in metrics.HISTORY_COLUMNS else key: float(value)
             for key, value in trained.model_dump().items()}
        )
        mlflow.log_figure(learning_curve(history, f"{run.dataset} {run.model}"), "learning_curve.png")
        mlflow.log_text(model_summary(model), "model_summary.txt")
        example = np.zeros((1, *model.input_shape[1:]), dtype=np.float32)
        mlflow.keras.log_model(
            model,
            name="model",
            # Explicit requirements: inferring them reloads the model in a subprocess (slow).
            pip_requirements=pip_requirements(),
            signature=infer_signature(example, keras.ops.convert_to_numpy(model(example, training=False))),
        )
        return active.info.run_id


@contextlib.contextmanager
def killed_if_interrupted(mlflow: Any) -> Iterator[None]:
    """End the active run as KILLED when Ctrl-C or a stop signal arrives inside (MLflow's own exit says FAILED)."""
    try:
        yield
    except KeyboardInterrupt:  # errors.Interrupted too: SIGTERM and SIGHUP
        mlflow.end_run("KILLED")
        raise


def end_orphans(client: Any, experiment_id: str, run_name: str) -> None:
    """End as KILLED the runs of `run_name` left RUNNING by a process of this machine that no longer exists.

    Such a process was killed without a chance to end its run (SIGKILL, a reboot). A run of another machine,
    or of a live process (a parallel `dvc exp run`), is not touched.
    """
    host = socket.gethostname()
    running = f"tags.run = '{run_name}' and attributes.status = 'RUNNING'"
    for orphan in client.search_runs([experiment_id], filter_string=running):
        tags = orphan.data.tags
        if tags.get("host") == host and tags.get("pid", "").isdigit() and not process_exists(int(tags["pid"])):
            client.set_terminated(orphan.info.run_id, "KILLED")
            print(f"{run_name}: MLflow run {orphan.info.run_id}, left RUNNING by process {tags['pid']} which no "
                  "longer exists, ended as KILLED", flush=True)


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


def ensure_experiment(mlflow: Any, name: str, uri: str, artifacts: Path) -> str:
    """The experiment's id, creating it if needed; a local store gets an absolute artifact location."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # A server chooses its own artifact store; a local one would otherwise default to ./mlruns of the cwd.
    local = uri.split(":", 1)[0] not in ("http", "https", "databricks")
    try:
        return mlflow.create_experiment(name, artifact_location=artifacts.as_uri() if local else None)
    except mlflow.exceptions.MlflowException:
        experiment = mlflow.get_experiment_by_name(name)  # created meanwhile by a parallel queued run
        if experiment is None:
            raise
        return experiment.experiment_id


def run_tags(run: Run) -> dict[str, str]:
    # model_sha256 ties the MLflow run to the exact model file: evaluate finds the run by it.
    tags = {"dataset": run.dataset, "model": run.model, "run": run.name, "model_sha256": file_sha256(run.model_path),
            # Which process logs the run: a later run of the same name ends it if that process died (end_orphans).
            "host": socket.gethostname(), "pid": str(os.getpid())}
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    if os.environ.get("DVC_EXP_NAME"):  # set by `dvc exp run`
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def flat_params(run: Run, summary: dict[str, Any]) -> dict[str, Any]:
    """Everything the run depends on, as params.yaml names it: models.<m>.layers.3.Conv2D.filters = 128."""
    params = {
        "run.name": run.name,
        "run.dataset": run.dataset,
        "run.model": run.model,
        "run.epochs": run.epochs,
    }
    params.update({key: run.knobs[placeholder] for placeholder, key in KNOBS.items()})
    params.update(flatten(run.spec.model_dump(exclude_none=True), f"models.{run.model}"))
    params.update(flatten(run.shared.model_dump(), "train"))
    params.update(flatten({k: v for k, v in summary.items() if k not in SUMMARY_SKIP}, "data"))
    return params


def flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        if key not in SUMMARY_SKIP:
            flat.update(flatten(item, f"{prefix}.{key}"))
    return flat


def learning_curve(history: pd.DataFrame, title: str) -> Figure:
    """Train and validation accuracy (left) and loss (right) per epoch; the dotted line is the best epoch."""
    epochs = history["epoch"]
    best = history.loc[history["val_accuracy"].idxmax(), "epoch"]  # the first best, as ModelCheckpoint keeps
    figure = Figure(figsize=(11, 4))
    axes = figure.subplots(1, 2)
    for axis, metric in zip(axes, ("accuracy", "loss")):
        axis.plot(epochs, history[f"train_{metric}"], label=f"train {metric}")
        axis.plot(epochs, history[f"val_{metric}"], label=f"validation {metric}")
        axis.axvline(best, color="grey", linestyle=":", label=f"best epoch ({int(best)})")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def model_summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda text, **_: lines.append(text))
    return "\n".join(lines)


def pip_requirements() -> list[str]:
    """keras and the installed package of the active backend, pinned to the versions that trained."""
    requirements = [f"keras=={version('keras')}"]
    for package in BACKEND_PACKAGES.get(keras.backend.backend(), ()):
        try:
            requirements.append(f"{package}=={version(package)}")
            break
        except PackageNotFoundError:
            continue
    return requirements


def log_evaluation(run: Run, evaluation: Evaluation) -> bool:
    """Add the test metrics, verdict and evaluation charts to the MLflow run that trained this very model.

    That run is found by its tags `run` and `model_sha256` (the SHA-256 of the .keras file). Tracking is
    best-effort, as in training: any failure is one warning and False, never a failed stage.
    """
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri = tracking_uri(repo_root())
    sha256 = file_sha256(run.model_path)
    try:
        with store_lock(uri):
            run_id = _log_evaluation(run, evaluation, uri, sha256)
    except Exception as error:  # noqa: BLE001 - tracking is best-effort: the outputs are already written
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        _warn_evaluation(run, f"MLflow logging failed ({reason[:300]})", uri)
        return False
    if run_id is None:
        _warn_evaluation(run, f"no MLflow run tagged run={run.name} and model_sha256={sha256[:12]}... in experiment "
                   f"{experiment_name(run)}", uri)
        return False
    print(f"{run.name}: test metrics logged to MLflow run {run_id} at {uri}", flush=True)
    return True


def _warn_evaluation(run: Run, problem: str, uri: str) -> None:
    print(
        f"warning: {problem} at {uri}: the evaluation of {run.name} is in "
        f"{run.eval_metrics_path} only. Once the training run is logged "
        f"(`python -m overfit_first.tracking relog {run.name}`), rerun `python -m stages.evaluate {run.name}`",
        file=sys.stderr, flush=True,
    )


def _log_evaluation(run: Run, evaluation: Evaluation, uri: str, sha256: str) -> str | None:
    import mlflow  # imported here: a slow import that only tracking needs
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(experiment_name(run))
    if experiment is None:
        return None
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.run = '{run.name}' and tags.model_sha256 = '{sha256}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        return None
    run_id = found[0].info.run_id
    now = int(time.time() * 1000)
    # Only the evaluation's own numbers: the training run already holds the copied training metrics.
    values = evaluation.metrics.model_dump(include=set(metrics.EVALUATED), exclude_none=True)
    numbers = {key: value for key, value in values.items() if isinstance(value, float | int)}
    client.log_batch(run_id, metrics=[Metric(key, float(value), now, 0) for key, value in numbers.items()])
    client.set_tag(run_id, "verdict", evaluation.metrics.verdict)
    client.set_tag(run_id, "recommendation", evaluation.metrics.recommendation)
    client.log_dict(run_id, evaluation.per_class, "evaluation/per_class.json")
    class_names = list(evaluation.per_class["classes"])
    client.log_figure(run_id, plots.confusion_matrices({run.model: evaluation.confusion}, class_names),
                      "evaluation/confusion_matrix.png")
    client.log_figure(run_id, plots.prediction_grid(evaluation.test_images, evaluation.actual, evaluation.predicted,
                                                    f"{run.model} on the {run.dataset} test set"),
                      "evaluation/predictions.png")
    return run_id


def relog(run_name: str) -> None:
    """Log an already trained run again, from its files (after the tracking server was down)."""
    run = load_params().run(run_name)
    missing = [str(path) for path in (run.model_path, run.train_metrics_path, run.history_path) if not path.is_file()]
    if missing:
        raise PipelineError(f"{', '.join(missing)} not found: train the run first with `dvc repro train@{run_name}`")
    if not log_run(run, load_summary(dataset_dir(run.dataset))):
        raise PipelineError(f"run {run_name} could not be logged; check MLFLOW_TRACKING_URI and the server")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m overfit_first.tracking", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("relog", help="log a trained run to MLflow from its output files").add_argument("run")
    args = parser.parse_args()
    layout.require_repo_root()
    relog(args.run)


if __name__ == "__main__":
    run_stage(main)
