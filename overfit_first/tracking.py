"""MLflow, all of it: the train stage's live run, the evaluation, the model registry, `relog`, the UI links.

An observer: nothing here changes an output of a stage, so no stage lists this module among its dvc.yaml deps
(tests/test_dvc_deps.py) and editing it retrains nothing.

Live runs. The train stage hands `LiveRun.callback` to training.fit: the MLflow run opens when training starts
(its duration is the training's), its parameters, tags and dataset inputs are logged at once, each epoch's
metrics as the epoch ends (after the epoch's backup), and MLflow samples CPU, memory and, where pynvml finds
one, GPU use into it (`system/...` metrics, every MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL seconds, default 10).
Once the stage has written its outputs, the best epoch's metrics, the learning curve, the model summary and
the model (signature and input example: float32 images in 0..1, what the model's input layer receives) go
into the same run, which ends FINISHED. The run's id is kept beside the training backup
(.cache/train/<run>/mlflow_run.json), so a resumed training continues its MLflow run.

Best effort. Every MLflow call goes through `best_effort`: a failure is one warning on stderr, never a failed
stage. The live run's calls are made by one background thread, so training never waits for the store; a store
that is down fails that thread's first call (HTTP_DEFAULTS bound it) and the rest are skipped. At the end of
training the stage waits for the thread at most OVERFIT_FIRST_MLFLOW_WAIT seconds (default 30). Whatever was
not logged is logged later from the saved files with

    python -m overfit_first.tracking relog <run-name>

once: a model file that a FINISHED run holds already (tags run and model_sha256) is not logged twice.

KILLED. A run cut short by Ctrl-C, SIGTERM or SIGHUP (overfit_first.errors turns them into Interrupted) ends
KILLED, and one ended by an error FAILED. One that its process could not end (SIGKILL, a power cut) is ended as
KILLED by the next logging of the same run name on the same machine, once its process is gone.

Registry. The plot stage calls `register_recommended`: each dataset's recommended model (`recommended`) becomes
a version of the registered model `overfit-first-<dataset>` with the alias `champion`.

Where runs go: MLFLOW_TRACKING_URI when set, else a SQLite store `mlflow.db` in the repository root, with
artifacts in `mlartifacts/` beside it, both absolute paths, so `dvc exp run --queue` or `--temp` (which run the
stage in a copy of the repository under .dvc/tmp/exps/) still logs to the original repository. Every MLflow call
goes to that one store, the registry's included, whatever the working directory (`store_client`).

Model-training view. Experiments are tagged `mlflow.experimentKind = custom_model_development`, what MLflow
3.0-3.x read to open an experiment on its runs rather than on the GenAI overview. MLflow 3.17 reads instead the
per-browser switch "GenAI | Model training" of its sidebar, or `?workflowType=machine_learning` in the URL:
every link this module prints carries that (`links` lists one per experiment; `make mlflow-ui` runs it). It has
no server option or experiment setting for it: its home page, and an experiment opened from its own list, open
the GenAI view until the switch is set once in the browser (`links` says so). Each logged model is named after
its run and carries its params, so the experiment's Models tab lists `fashion_mnist-cnn_simplified`, ...
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
import json
import logging
import math
import os
import queue
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no GUI backend, no global figure registry
from mlflow.data.dataset_source_registry import get_registered_sources, resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.schema import TensorDatasetSchema
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.types import Schema, TensorSpec

from overfit_first import layout, metrics, plots, progress
from overfit_first.config import KNOBS, Run, load_params
from overfit_first.data import fetch, raw
from overfit_first.data.splits import SCALE, dataset_dir, file_sha256, load_split, load_summary
from overfit_first.errors import PipelineError, run_stage
from overfit_first.layout import repo_root

# keras (with TensorFlow, about 10 s of CPU to import) is imported only where a model is at hand: the train stage's
# live run and `relog`; so are overfit_first.training, .accelerate and .evaluation, which import it themselves.
# The plot stage, the sweeps and this CLI's `links` import this module without it (tests/test_imports.py).
if TYPE_CHECKING:
    import keras

    from overfit_first.evaluation import Evaluation

# An unreachable server must fail in seconds, not after MLflow's default 7 retries with backoff
# (minutes); MLflow's own run links open the GenAI view, ours the model-training one. Set to change.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# A sweep (overfit_first.sweep): {DVC experiment name: MLflow run id of its step} for the queue's workers.
SWEEP_PARENTS = "OVERFIT_FIRST_MLFLOW_PARENTS"
WAIT_VARIABLE = "OVERFIT_FIRST_MLFLOW_WAIT"  # seconds the end of a train stage waits for its MLflow logging
WAIT_DEFAULT = 30.0
STOP_WAIT = 5.0  # seconds an interrupted stage gives the logging thread to end the run itself
RUN_ID_FILE = "mlflow_run.json"  # in training.cache_dir(run), beside the backup
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
ML_VIEW = "workflowType=machine_learning"
UI_URL = "http://127.0.0.1:5000"  # `make mlflow-ui`
ALIAS = "champion"
# MLflow 3.17 has no server option or experiment setting for the view (`mlflow.experimentKind` is not read): an
# address without ML_VIEW (its home page, an experiment opened from its own list) opens the view last chosen with
# the sidebar's switch in this browser (localStorage `mlflow.workflowType_v1`), GenAI until it is switched once.
SWITCH_ONCE = (
    "MLflow's home and an experiment opened from its own list show the GenAI view until the sidebar's switch is "
    "set to 'Model training' once in this browser (it remembers); the links above open that view anyway"
)
# summary.json entries that are descriptions rather than settings: too long to be useful as params.
SUMMARY_SKIP = {"class_names", "superclass_names", "class_counts"}
BACKEND_PACKAGES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",), "torch": ("torch",)}


class NotTracked(Exception):
    """What a step needs is not in the tracking store (e.g. the training run of the model it evaluates)."""


# ----------------------------------------------------------------------------------------------- the store


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


def ui_link(uri: str, experiment_id: str, run_id: str | None = None) -> str:
    """The experiment's runs (or one run) in the UI's model-training view: the server's own address, or
    `make mlflow-ui`'s for a local store."""
    served = uri.split(":", 1)[0] in ("http", "https")
    page = f"runs/{run_id}" if run_id else "runs"
    link = f"{uri.rstrip('/') if served else UI_URL}/#/experiments/{experiment_id}/{page}?{ML_VIEW}"
    return link if served else f"{link} (`make mlflow-ui`)"


# ------------------------------------------------------------------------------------- one training's run


class RunLog:
    """The MLflow calls for one training run, in their order: open, epoch (each), complete, end.

    They use MLflow's fluent API, whose active run belongs to the calling thread: LiveRun's logging thread
    makes them during training, `relog` makes them in the main thread. Each raises on failure.
    """

    def __init__(self, run: Run, summary: dict[str, Any], uri: str, root: Path, example: np.ndarray) -> None:
        self.run, self.summary, self.uri, self.root = run, summary, uri, root
        self.example = example.astype(np.float32) * np.float32(SCALE)  # uint8 image(s) -> the model's input
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.logged_epochs: set[int] = set()
        self.monitor: SystemMetrics | None = None

    def open(
        self,
        start_ms: int,
        resume: str | None = None,
        on_id: Callable[[str], None] | None = None,
        system_metrics: bool = False,
    ) -> None:
        """Create the run (started at `start_ms`), or resume the run `resume`; `on_id` gets its id at once.

        A new run gets its parameters, tags and dataset inputs; a resumed one has them already, and its
        epochs logged so far are not logged again. `system_metrics`: sample them until `end`.
        """
        client = store_client(self.uri)  # also the store of the fluent calls below
        self.experiment_id = ensure_experiment(
            client, experiment_name(self.run), self.uri, self.root / "mlartifacts" / self.run.dataset
        )
        end_orphans(client, self.experiment_id, self.run.name, keep=resume)
        resumed = resume is not None and resumable(client, resume, self.experiment_id)
        if resumed:
            self.run_id = resume
        else:
            self.run_id = client.create_run(
                self.experiment_id, start_time=start_ms, tags=run_tags(self.run), run_name=self.run.name
            ).info.run_id
        if on_id is not None:
            on_id(self.run_id)
        # This process owns the run from here on (end_orphans reads these tags), also a resumed one.
        mlflow.start_run(
            run_id=self.run_id, log_system_metrics=False, tags={"host": socket.gethostname(), "pid": str(os.getpid())}
        )
        if system_metrics:
            self.monitor = SystemMetrics(self.run_id, resume_logging=resumed, tracking_uri=self.uri)
            self.monitor.start()
        if resumed:
            self.logged_epochs = {int(point.step) for point in client.get_metric_history(self.run_id, "val_accuracy")}
            return
        mlflow.log_params(flat_params(self.run, self.summary))
        for split, context in (("train", "training"), ("valid", "validation")):
            mlflow.log_input(split_dataset(self.run, self.summary, split), context=context)

    def epoch(self, row: dict[str, float], timestamp_ms: int) -> None:
        """One epoch's row of the history (metrics.HISTORY_COLUMNS), at step = its epoch number (1-based)."""
        step = int(row["epoch"])
        mlflow.log_metrics(
            {key: float(row[key]) for key in metrics.HISTORY_COLUMNS[1:]}, step=step, timestamp=timestamp_ms
        )
        self.logged_epochs.add(step)

    def complete(self, model: keras.Model | None) -> None:
        """What the stage's output files hold: epochs not logged yet, the best epoch's numbers, the learning
        curve, the model summary and the model; then the tag `model_sha256` that evaluate finds the run by."""
        import keras

        rebuild = f"dvc repro --force train@{self.run.name}"
        trained = metrics.read(self.run.train_metrics_path, metrics.TrainMetrics, rebuild)
        history = metrics.read_history(self.run.history_path, rebuild)
        model = model if model is not None else keras.saving.load_model(self.run.model_path)
        missing = [row for row in history.to_dict("records") if int(row["epoch"]) not in self.logged_epochs]
        if missing:  # all of them for `relog`; after a resume, any epoch its killed predecessor did not send
            now = int(time.time() * 1000)
            store_client(self.uri).log_batch(
                self.run_id,
                metrics=[
                    Metric(key, float(row[key]), now, int(row["epoch"]))
                    for row in missing
                    for key in metrics.HISTORY_COLUMNS[1:]
                ],
            )
        # The best epoch's numbers get their own names: the per-epoch series above end at the last epoch.
        mlflow.log_metrics(
            {
                f"best_{key}" if key in metrics.HISTORY_COLUMNS else key: float(value)
                for key, value in trained.model_dump().items()
            }
        )
        # The numerics train.mixed_precision resolved to on this machine (`auto` depends on the hardware).
        dtype_policy = model.layers[0].dtype_policy.name
        mlflow.log_param("train.dtype_policy", dtype_policy)
        mlflow.log_figure(learning_curve(history, f"{self.run.dataset} {self.run.model}"), "learning_curve.png")
        mlflow.log_text(model_summary(model), "model_summary.txt")
        output = keras.ops.convert_to_numpy(model(self.example, training=False))
        Model.log(  # = mlflow.keras.log_model, through KERAS_FLAVOR
            artifact_path=None,
            # The experiment's Models tab lists logged models by name, with their params and linked metrics.
            name=logged_model_name(self.run),
            params={**flat_params(self.run, self.summary), "train.dtype_policy": dtype_policy},
            tags={"run": self.run.name, "dataset": self.run.dataset, "model": self.run.model, "role": self.run.role},
            flavor=KERAS_FLAVOR,
            model=model,
            # Explicit requirements: inferring them reloads the model in a subprocess (slow).
            pip_requirements=pip_requirements(),
            signature=infer_signature(self.example, output),
            input_example=self.example,
            # Checking the example would load the model back and predict with a progress bar: seconds, and
            # redrawn lines in a log. The signature is inferred from this very prediction.
            validate_serving_input=False,
        )
        mlflow.set_tag("model_sha256", file_sha256(self.run.model_path))

    def end(self, status: str) -> None:
        """End the run as `status`: the active run of this thread, or by its id when it never became active (`open`
        stopped between creating and starting it: a Ctrl-C, a store that failed), so that it does not stay RUNNING."""
        active = mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            mlflow.end_run(status)
        elif self.run_id is not None:
            store_client(self.uri).set_terminated(self.run_id, status)
        if self.monitor is not None:  # after the end, as MLflow does: its last samples may still land
            self.monitor.finish()
            self.monitor = None


def logged_model_name(run: Run) -> str:
    """The name of the run's LoggedModel, what the experiment's Models tab lists: the run's name
    (`fashion_mnist-cnn_simplified`), with `_` for each character MLflow refuses in it (/ : . % " ')."""
    return "".join("_" if character in "/:.%\"'" else character for character in run.name)


class SystemMetrics(SystemMetricsMonitor):
    """MLflow's system-metrics sampler (what mlflow.start_run(log_system_metrics=True) starts: CPU, memory,
    disk, network, GPU where pynvml finds one), which also logs its last, unfinished interval when it stops.
    MLflow drops that interval, so a run shorter than MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL had no sample."""

    def monitor(self) -> None:
        super().monitor()  # MLflow's loop: until the run ends or finish() is called
        # In this thread: psutil measures CPU use since this thread's previous sample (the interval's first).
        for monitor in self.monitors:
            monitor.clear_metrics()
        with contextlib.suppress(Exception):  # as MLflow's own loop: a lost sample is no failure of the run
            self.collect_metrics()
            self.publish_metrics(self.aggregate_metrics())


def _save_keras(path: str, validate_serving_input: bool = True, **kwargs: Any) -> None:
    """mlflow.keras.save_model; `validate_serving_input` is Model.log's, not the flavor's."""
    import mlflow.keras  # imports keras

    os.makedirs(path, exist_ok=True)  # mlflow.keras.save_model writes the input example before it makes `path`
    mlflow.keras.save_model(path=path, **kwargs)


# mlflow.keras, made to accept an input example: mlflow.keras.log_model(..., input_example=...) fails with
# FileNotFoundError .../model/input_example.json (MLflow 3.17; mlflow/mlflow issue 16183).
# Its name spelled out: mlflow.keras.__name__ would import keras with this module.
KERAS_FLAVOR = SimpleNamespace(__name__="mlflow.keras", save_model=_save_keras)


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


def run_tags(run: Run) -> dict[str, str]:
    tags = {
        "dataset": run.dataset,
        "model": run.model,
        "run": run.name,
        "mlflow.source.name": f"python -m stages.train {run.name}",
        "mlflow.source.type": "LOCAL",
        # Which process logs the run: a later run of the same name ends it if that process died (end_orphans).
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
    }
    commit = git_commit()
    if commit:
        tags["git_commit"] = tags["mlflow.source.git.commit"] = commit
    if os.environ.get("DVC_EXP_NAME"):  # set by `dvc exp run`
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
        parent = sweep_parent(os.environ["DVC_EXP_NAME"])
        if parent:
            tags["mlflow.parentRunId"] = parent
    return tags


def sweep_parent(experiment: str) -> str | None:
    """The step's child run a training of DVC experiment `experiment` nests under: SWEEP_PARENTS, a JSON object
    {experiment name: run id} that overfit_first.sweep hands to `dvc queue start`'s workers; None outside a sweep."""
    try:
        parent = json.loads(os.environ.get(SWEEP_PARENTS) or "{}").get(experiment)
    except (ValueError, AttributeError):
        return None
    return parent if isinstance(parent, str) else None


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


# ---------------------------------------------------------------------------------------- dataset inputs


class PreparedSplit(MetaDataset):
    """A prepared split as an MLflow dataset input: its digest is the split's checksum (summary.json), so two
    runs on the same data show the same digest; its profile holds the sizes and where the data came from."""

    def __init__(
        self, source: Any, name: str, digest: str, schema: TensorDatasetSchema, profile: dict[str, Any]
    ) -> None:
        self._profile = profile
        super().__init__(source, name=name, digest=digest)
        self._tensor_schema = schema

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {
            **super().to_dict(),
            "schema": json.dumps(self._tensor_schema.to_dict()),
            "profile": json.dumps(self._profile),
        }


def split_dataset(run: Run, summary: dict[str, Any], split: str) -> PreparedSplit:
    """`split` (train or valid) of the run's prepared data, as the run saw it: the training images are the
    first train.subset_size of every class (named `<dataset>-train-<n>` then), the validation split whole.

    Digest: the first 10 hex digits of the split file's SHA-256, as summary.json records it.
    """
    entry = summary["splits"][split]
    total = int(entry["count"])
    images = total if split != "train" else min(total, run.shared.subset_size or total)
    name = f"{run.dataset}-{split}" + (f"-{images}" if images < total else "")
    kind, location = data_origin(run.dataset)
    shape = tuple(int(size) for size in summary["image_shape"])
    schema = TensorDatasetSchema(
        features=Schema([TensorSpec(np.dtype(np.uint8), (-1, *shape), "images")]),
        targets=Schema([TensorSpec(np.dtype(np.int64), (-1,), "labels")]),
    )
    profile = {
        "images": images,
        "split_images": total,
        "classes": int(summary["num_classes"]),
        "image_shape": "x".join(map(str, shape)),
        "split_sha256": entry["sha256"],
        "origin": kind,
        "location": location,
        "description": summary.get("source") or run.dataset,
    }
    return PreparedSplit(dataset_source(location), name, entry["sha256"][:10], schema, profile)


def dataset_source(location: str) -> Any:
    """An MLflow dataset source for a URL (type http) or a path (type local)."""
    kind = "http" if "://" in location else "local"
    # Only that type's source: MLflow would otherwise warn that a path matches two registered ones.
    candidates = [source for source in get_registered_sources() if source._get_source_type() == kind]
    return resolve_dataset_source(location, candidate_sources=candidates[:1])


def data_origin(dataset: str) -> tuple[str, str]:
    """(kind, location) of the files the prepared data was made from, read from data/raw/<dataset>/meta.json.

    kind: `image folder`; `mirror` (params data.mirror or OVERFIT_FIRST_MIRROR); `official archive` (downloaded
    from the official URLs); `local copy` (found on this machine: Debian's package, Keras' or the download
    cache). location: the common directory or base URL of those files. Without meta.json: `prepared data` and
    data/prepared/<dataset>.
    """
    try:
        meta = json.loads((raw.RAW_ROOT / dataset / "meta.json").read_text(encoding="utf-8"))
        origins = [str(file["origin"]) for file in meta["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        origins = []
    if not origins:  # data/raw not checked out: the prepared split itself is all there is to point at
        return "prepared data", str(dataset_dir(dataset).resolve())
    location = origins[0] if len(origins) == 1 else os.path.commonpath(origins)
    if len(origins) > 1 and "://" in origins[0]:
        location = origins[0].rsplit("/", 1)[0] + "/"  # the base URL: commonpath would fold its '//'
    mirror = fetch.mirror_setting(load_params().data.mirror)
    if str(meta.get("source", "")).startswith("image folder"):
        kind = "image folder"
    elif mirror and origins[0].startswith(mirror.rstrip("/")):
        kind = "mirror"
    elif "://" in origins[0]:
        kind = "official archive"
    else:
        kind = "local copy"
    return kind, location


# ---------------------------------------------------------------------------------------- the live run


class LiveRun:
    """The observer of one training: `callback` for training.fit, and the MLflow run behind it.

    Every MLflow call runs in one background thread, in order, each through `best_effort`: the first failure
    prints the one warning and the later calls are skipped. Use it through `live_run`, which ends the run
    KILLED or FAILED when training is interrupted or fails; `finish` ends it FINISHED.
    """

    def __init__(self, run: Run, summary: dict[str, Any], example: np.ndarray) -> None:
        from overfit_first import training
        from overfit_first.accelerate import is_chief

        self.run = run
        root = repo_root()
        self.uri = tracking_uri(root)
        self.log = RunLog(run, summary, self.uri, root, example)
        self.enabled = is_chief()  # the other workers of TF_CONFIG train the same model: one run is enough
        self.id_file = training.cache_dir(run) / RUN_ID_FILE
        self.tasks: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.done = threading.Event()  # the thread has left: every task it will ever run has run
        self.failed = False  # after the first failure, the thread skips every later call
        self.warned = threading.Event()  # one warning per run, whichever thread fails first
        self.closed = False
        self.thread: threading.Thread | None = None
        self.callback = live_callback_class()(self)
        self.consequence = (
            f"run {run.name} is missing or incomplete in {self.uri} (training is not affected). Once the tracking "
            f"store is back and the stage has written {run.model_path}, {run.train_metrics_path} and "
            f"{run.history_path}, log them with `python -m overfit_first.tracking relog {run.name}`"
        )

    def start(self) -> None:
        """Open the run now (training starts): a new one, or the one of the backup this training resumes."""
        if not self.enabled or self.thread is not None:
            return
        start_ms = int(time.time() * 1000)
        resume = self.resume_id()
        self.submit(lambda: self.log.open(start_ms, resume, on_id=self.keep_id, system_metrics=True))
        self.thread = threading.Thread(target=self.work, name="mlflow-live-run", daemon=True)
        self.thread.start()

    def resume_id(self) -> str | None:
        """The run id kept beside the backup (training.fit has already discarded a backup that does not belong
        to this training, and the id with it). RunLog.open continues that run if the store holds it: a run id
        is unique across stores, and one store may have several addresses (a proxy, localhost or 127.0.0.1)."""
        try:
            kept = json.loads(self.id_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return kept.get("run_id") if isinstance(kept, dict) else None

    def keep_id(self, run_id: str) -> None:
        # The cache is gone once the stage has written its outputs (a very slow store): nothing to resume then.
        with contextlib.suppress(OSError):
            self.id_file.write_text(json.dumps({"run_id": run_id, "tracking_uri": self.uri}), encoding="utf-8")

    def epoch(self, number: int, logs: dict[str, Any]) -> None:
        row = {
            "epoch": number,
            "train_accuracy": logs.get("accuracy", math.nan),
            "val_accuracy": logs.get("val_accuracy", math.nan),
            "train_loss": logs.get("loss", math.nan),
            "val_loss": logs.get("val_loss", math.nan),
        }
        timestamp = int(time.time() * 1000)
        self.submit(lambda: self.log.epoch(row, timestamp))

    def submit(self, task: Callable[[], None]) -> None:
        if self.enabled:
            self.tasks.put(task)

    def work(self) -> None:
        while (task := self.tasks.get()) is not None:
            if self.failed:
                continue
            if not best_effort(lambda task=task: self.locked(task), self.consequence, self.warned):
                self.failed = True
                if self.log.run_id is not None:  # opened, then failed: it must not stay RUNNING
                    best_effort(lambda: self.log.end("FAILED"), None)
        self.done.set()

    def locked(self, task: Callable[[], None]) -> None:
        with store_lock(self.uri):  # per call, not per run: parallel trainings log side by side
            task()

    def finish(self, model: keras.Model) -> bool:
        """After the stage wrote its outputs: log them into the run, end it FINISHED; True when all was logged.

        Waits for the logging thread OVERFIT_FIRST_MLFLOW_WAIT seconds at most (default 30); past that, one
        warning, and the run is ended FAILED if the store answers.
        """
        if not self.enabled:
            print(f"{self.run.name}: not logged to MLflow: this is not the chief worker of TF_CONFIG", flush=True)
            return True
        self.start()  # no-op unless training never started (a backup of a finished training)
        self.submit(lambda: self.log.complete(model))
        self.submit(lambda: self.log.end("FINISHED"))
        self.close()
        wait = float(os.environ.get(WAIT_VARIABLE) or WAIT_DEFAULT)
        if not self.done.wait(wait):
            self.failed = True

            def timed_out() -> None:
                raise TimeoutError(f"no answer within {wait:g} s, {WAIT_VARIABLE}")

            best_effort(timed_out, self.consequence, self.warned)
            self.end_directly("FAILED")
            return False
        if self.failed:
            return False
        link = ui_link(self.uri, str(self.log.experiment_id), self.log.run_id)
        print(
            f"{self.run.name}: logged to MLflow run {self.log.run_id} in experiment {experiment_name(self.run)} "
            f"at {self.uri}; see {link}",
            flush=True,
        )
        return True

    def abort(self, status: str) -> None:
        """End the run as `status` (KILLED, FAILED) so that it never stays RUNNING: by the logging thread when it
        gets to it within STOP_WAIT seconds, else directly (the thread's call may be the one hanging)."""
        if self.thread is None or self.done.is_set():
            return
        if not self.closed:
            self.submit(lambda: self.log.end(status))
            self.close()
            if self.done.wait(STOP_WAIT):
                return
        self.failed = True  # the thread skips whatever is still queued (the end of `finish`, say)
        self.end_directly(status)

    def close(self) -> None:
        """No task after this: the thread leaves once it has run the queued ones."""
        self.tasks.put(None)
        self.closed = True

    def end_directly(self, status: str) -> None:
        run_id = self.log.run_id
        if run_id is not None:
            best_effort(lambda: store_client(self.uri).set_terminated(run_id, status), None)


@functools.cache
def live_callback_class() -> type[keras.callbacks.Callback]:
    """LiveCallback, defined at its first use: its base class is Keras', which this module imports only there."""
    import keras

    class LiveCallback(keras.callbacks.Callback):
        """Keras' side of LiveRun: epoch-level hooks only (a batch-level hook would slow every training step),
        each through `best_effort`, so that nothing here can stop training."""

        def __init__(self, live: LiveRun) -> None:
            super().__init__()
            self.live = live

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            best_effort(self.live.start, self.live.consequence, self.live.warned)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            best_effort(lambda: self.live.epoch(epoch + 1, logs or {}), self.live.consequence, self.live.warned)

    return LiveCallback


@contextlib.contextmanager
def live_run(run: Run, summary: dict[str, Any], example: np.ndarray) -> Iterator[LiveRun]:
    """A LiveRun for the train stage; its MLflow run ends KILLED when a stop signal (or Ctrl-C) interrupts the
    block, FAILED when an error does. `example`: one or more prepared images (uint8), the model's input example."""
    live = LiveRun(run, summary, example)
    try:
        yield live
    except KeyboardInterrupt:  # errors.Interrupted too: SIGTERM and SIGHUP
        live.abort("KILLED")
        raise
    except BaseException:
        live.abort("FAILED")
        raise


# ------------------------------------------------------------------------------------------------ sweeps


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
    stays RUNNING. `runs` is set as soon as they exist (overfit_first.sweep.run_sweep)."""

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


def end_abandoned_sweep(sweep: Any) -> None:
    """End the runs a stopped sweep `sweep` left RUNNING (end_stale_sweep_runs), where it has nothing to collect."""

    def end() -> None:
        uri = tracking_uri(repo_root())
        client = store_client(uri)
        experiment = client.get_experiment_by_name(experiment_name_of(sweep.dataset))
        if experiment is not None:
            with store_lock(uri):
                end_stale_sweep_runs(client, experiment.experiment_id, sweep.name)

    best_effort(end, f"the sweep {sweep.name}'s MLflow runs left RUNNING stay so")


def start_sweep(sweep: Any, points: list[Any]) -> SweepRuns | None:
    """Create the parent run of an overfit_first.sweep.Sweep and a child per step, RUNNING until finish_sweep;
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


def find_sweep(sweep: Any, points: list[Any]) -> SweepRuns | None:
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
    results: dict[str, list[Any]],
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


# ------------------------------------------------------------------------------------------------ relog


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
        f"store is back with `python -m overfit_first.tracking relog {run.name}`"
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


# ------------------------------------------------------------------------------------------- evaluation


def training_run(client: mlflow.MlflowClient, run: Run, status: str | None = None) -> Any:
    """The MLflow run that trained `run`'s current model file: tags `run` and `model_sha256` (its SHA-256); the
    newest, of `status` when given; NotTracked when there is none."""
    sha256 = file_sha256(run.model_path)
    experiment = client.get_experiment_by_name(experiment_name(run))
    wanted = f"tags.run = '{run.name}' and tags.model_sha256 = '{sha256}'"
    found = (
        []
        if experiment is None
        else client.search_runs(
            [experiment.experiment_id],
            filter_string=wanted + (f" and attributes.status = '{status}'" if status else ""),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    )
    if not found:
        raise NotTracked(
            f"no {status + ' ' if status else ''}MLflow run tagged run={run.name} and model_sha256={sha256[:12]}... "
            f"in experiment {experiment_name(run)}"
        )
    return found[0]


def log_evaluation(run: Run, evaluation: Evaluation) -> bool:
    """Add the test metrics, verdict and evaluation charts to the MLflow run that trained this very model
    (`training_run`). Best effort, as in training: any failure is one warning and False, never a failed stage."""
    uri = tracking_uri(repo_root())

    def log() -> None:
        client = store_client(uri)
        with store_lock(uri):
            run_id = training_run(client, run).info.run_id
            now = int(time.time() * 1000)
            # Only the evaluation's own numbers: the training run already holds the copied training metrics.
            values = evaluation.metrics.model_dump(include=set(metrics.EVALUATED), exclude_none=True)
            numbers = {key: value for key, value in values.items() if isinstance(value, float | int)}
            client.log_batch(run_id, metrics=[Metric(key, float(value), now, 0) for key, value in numbers.items()])
            client.set_tag(run_id, "verdict", evaluation.metrics.verdict)
            client.set_tag(run_id, "recommendation", evaluation.metrics.recommendation)
            client.log_dict(run_id, evaluation.per_class, "evaluation/per_class.json")
            class_names = list(evaluation.per_class["classes"])
            client.log_figure(
                run_id,
                plots.confusion_matrices({run.model: evaluation.confusion}, class_names),
                "evaluation/confusion_matrix.png",
            )
            client.log_figure(
                run_id,
                plots.prediction_grid(
                    evaluation.test_images,
                    evaluation.actual,
                    evaluation.predicted,
                    f"{run.model} on the {run.dataset} test set",
                ),
                "evaluation/predictions.png",
            )
        print(f"{run.name}: test metrics logged to MLflow run {run_id} at {uri}", flush=True)

    return best_effort(
        log,
        f"the evaluation of {run.name} is in {run.eval_metrics_path} only. Once the training "
        f"run is logged (`python -m overfit_first.tracking relog {run.name}`), rerun "
        f"`python -m stages.evaluate {run.name}`",
    )


# ------------------------------------------------------------------------------------------------ registry


def registered_name(dataset: str) -> str:
    return f"overfit-first-{dataset}"


def recommended(runs: list[Run], results: dict[str, metrics.EvalMetrics]) -> Run | None:
    """The model to use for a dataset: among its runs whose verdict is `good fit`, the highest validation
    accuracy (the evaluate stage's, measured in inference mode like the verdict; never the test accuracy, which
    must stay unseen by any choice). A tie goes to the smaller model (fewer parameters: the article's
    "simplify"), then to the run listed first (`runs` order). None when no run is a good fit."""
    fits = [run for run in runs if results[run.name].verdict == "good fit"]
    if not fits:
        return None
    return max(
        fits,
        key=lambda run: (results[run.name].val_accuracy_inference, -results[run.name].total_params, -runs.index(run)),
    )


def register_recommended(dataset: str, runs: list[Run], results: dict[str, metrics.EvalMetrics]) -> bool:
    """Register `recommended`'s model as a version of `overfit-first-<dataset>` with the alias `champion`.

    The version is the model logged by the run's training (its signature and input example included); one
    already registered is reused, not duplicated. With no good fit, the alias is removed: no model is
    recommended, and an older champion must not look like one. Best effort: one warning and False on failure.
    """
    choice = recommended(runs, results)
    uri = tracking_uri(repo_root())
    name = registered_name(dataset)

    def register() -> None:
        client = store_client(uri)
        with store_lock(uri):
            if choice is None:
                _drop_alias(client, name)
                print(
                    f"{dataset}: no run is a good fit: no model recommended; registered model {name} has no `{ALIAS}`",
                    flush=True,
                )
                return
            registered = _register_version(client, name, choice, results[choice.name])
            experiment_id = client.get_run(registered.run_id).info.experiment_id
        result = results[choice.name]
        print(
            f"{dataset}: recommended model {choice.model} (good fit, validation accuracy "
            f"{result.val_accuracy_inference:.4f}) is {name} version {registered.version}, alias {ALIAS}: "
            f"mlflow.pyfunc.load_model('models:/{name}@{ALIAS}'); its run: "
            f"{ui_link(uri, experiment_id, registered.run_id)}",
            flush=True,
        )

    return best_effort(
        register,
        f"the recommended model of {dataset} is not registered in {uri}. Once its training "
        "run is logged (`python -m overfit_first.tracking relog <run>`), rerun "
        f"`python -m stages.plot {dataset}`",
    )


def _drop_alias(client: mlflow.MlflowClient, name: str) -> None:
    try:
        client.get_model_version_by_alias(name, ALIAS)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):  # no such model or alias: nothing to drop
            return
        raise
    client.delete_registered_model_alias(name, ALIAS)


def _register_version(client: mlflow.MlflowClient, name: str, run: Run, result: metrics.EvalMetrics) -> Any:
    trained = training_run(client, run)
    outputs = trained.outputs.model_outputs if trained.outputs else []
    if not outputs:
        raise NotTracked(f"MLflow run {trained.info.run_id} of {run.name} holds no logged model")
    model_id = outputs[-1].model_id
    try:
        client.create_registered_model(
            name,
            description=(
                "The recommended model of the overfit-first pipeline for this dataset (alias champion): among the runs "
                "whose verdict is good fit, the highest validation accuracy; ties go to fewer parameters. Inputs: "
                "float32 images in 0..1 (uint8 pixels / 255), shape (n, height, width, channels); outputs: class "
                "probabilities."
            ),
        )
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"models:/{model_id}"
    # By source: a tracking server's search leaves the versions' model_id out.
    version = next(
        (found for found in client.search_model_versions(f"name = '{name}'") if found.source == source), None
    )
    if version is None:
        version = client.create_model_version(
            name,
            source=source,
            run_id=trained.info.run_id,
            model_id=model_id,
            tags={
                "run": run.name,
                "model": run.model,
                "verdict": result.verdict,
                "val_accuracy_inference": str(result.val_accuracy_inference),
                "test_accuracy": str(result.test_accuracy),
                "model_sha256": trained.data.tags["model_sha256"],
            },
        )
    client.set_registered_model_alias(name, ALIAS, version.version)
    return version


# ------------------------------------------------------------------------------------------ figures, model


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
    import keras

    requirements = [f"keras=={version('keras')}"]
    for package in BACKEND_PACKAGES.get(keras.backend.backend(), ()):
        try:
            requirements.append(f"{package}=={version(package)}")
            break
        except PackageNotFoundError:
            continue
    return requirements


# ------------------------------------------------------------------------------------------------ the CLI


def links(store: str, url: str) -> None:
    """Print each overfit-first experiment of `store` as a link to its runs in the UI's model-training view."""

    def show() -> None:
        experiments = store_client(store).search_experiments(
            filter_string="name LIKE 'overfit-first/%'", order_by=["name"]
        )
        for experiment in experiments:
            print(
                f"{experiment.name}: {url.rstrip('/')}/#/experiments/{experiment.experiment_id}/runs?{ML_VIEW}",
                flush=True,
            )
        if not experiments:
            print(f"no overfit-first experiment in {store} yet: run `dvc repro`", flush=True)
        print(SWITCH_ONCE, flush=True)

    best_effort(show, f"no links to the experiments of {store}")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m overfit_first.tracking",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("relog", help="log a trained run to MLflow from its output files").add_argument("run")
    show = commands.add_parser("links", help="each experiment's runs in the UI's model-training view")
    show.add_argument("--store", help="tracking URI (default: MLFLOW_TRACKING_URI, else the repository's mlflow.db)")
    show.add_argument("--url", default=UI_URL, help=f"the UI's address (default {UI_URL}, `make mlflow-ui`)")
    args = parser.parse_args()
    layout.require_repo_root()
    if args.command == "relog":
        relog(args.run)
    else:
        links(args.store or tracking_uri(repo_root()), args.url)


if __name__ == "__main__":
    run_stage(main)
