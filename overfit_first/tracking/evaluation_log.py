"""The evaluate stage's side: the MLflow run that trained a model file (`training_run`, found by the file's
SHA-256), and `log_evaluation`, which adds the test metrics, the verdict and the evaluation's charts to it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Metric

from overfit_first import metrics, plots
from overfit_first.config import Run
from overfit_first.data.splits import file_sha256
from overfit_first.layout import repo_root
from overfit_first.tracking.store import (
    NotTracked,
    best_effort,
    experiment_name,
    store_client,
    store_lock,
    tracking_uri,
)

if TYPE_CHECKING:
    from overfit_first.evaluation import Evaluation


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
        f"run is logged (`python -m overfit_first tracking relog {run.name}`), rerun "
        f"`python -m stages.evaluate {run.name}`",
    )
