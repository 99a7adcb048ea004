"""One training's MLflow run, call by call (RunLog: open, each epoch, complete, end), which the live run and
`relog` share; the name of its logged model, and MLflow's system-metrics sampler made to keep its last interval."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow.entities import Metric
from mlflow.models import Model, infer_signature
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

from overfit_first import metrics, plots
from overfit_first.config import Run
from overfit_first.data.splits import SCALE, file_sha256
from overfit_first.tracking.artifacts import KERAS_FLAVOR, model_summary, pip_requirements
from overfit_first.tracking.datasets import split_dataset
from overfit_first.tracking.ownership import end_orphans, resumable
from overfit_first.tracking.run_info import flat_params, run_tags
from overfit_first.tracking.store import ensure_experiment, experiment_name, store_client

# keras is imported only where a model is at hand (overfit_first.tracking, tests/test_entry_points.py).
if TYPE_CHECKING:
    import keras


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
        # The plot stage's learning-curve figure (overfit_first.plots), this run's row alone.
        curve = f"{self.run.dataset} {self.run.model}"
        mlflow.log_figure(plots.learning_curves({curve: history}, {curve: trained.best_epoch}), "learning_curve.png")
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
