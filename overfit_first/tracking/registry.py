"""The model registry: each dataset's recommended model (`recommended`: the good fit with the best validation
accuracy) becomes a version of `overfit-first-<dataset>` with the alias `champion` (`register_recommended`)."""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from overfit_first import metrics
from overfit_first.config import Run
from overfit_first.layout import repo_root
from overfit_first.tracking.evaluation_log import training_run
from overfit_first.tracking.store import NotTracked, best_effort, store_client, store_lock, tracking_uri
from overfit_first.tracking.ui import ui_link

ALIAS = "champion"


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
        "run is logged (`python -m overfit_first tracking relog <run>`), rerun "
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
