"""The model registry: after evaluation, the plot stage registers each dataset's recommended model (the best
good fit by validation accuracy) with the alias `champion`; loaded back through mlflow.pyfunc it predicts the
test images as the evaluate stage does. A real `mlflow server`, the real train, evaluate and plot stages."""

from __future__ import annotations

import copy
import csv
import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest

from overfit_first import layout, tracking
from overfit_first.config import validate
from overfit_first.data.splits import SCALE, file_sha256, load_split
from overfit_first.metrics import EvalMetrics

from conftest import run_stage, write_params
from helpers_train import DATASET, TINY_CNN, make_project, project_params, train_env

NAME = "overfit-first-tiny"
CHAMPION = f"models:/{NAME}@champion"
MODELS = ("tiny_cnn", "tiny_small")
RUNS = [f"{DATASET}-{model}" for model in MODELS]
EVERY_RUN_FITS = {
    "overfit_train_min": 0.95,
    "overfit_gap_min": 1.0,
    "underfit_train_max": 0.01,
    "still_learning_window": 5,
    "batch_size": 512,
}


def registry_params() -> dict:
    """Two tiny CNNs (the second with fewer filters) of one epoch each (never "still learning"), judged by
    thresholds under which every run is a good fit."""
    params = project_params(epochs=1)
    small = copy.deepcopy(params["models"]["tiny_cnn"])
    small["layers"][0] = {"Conv2D": {"filters": 2}}
    params["models"]["tiny_small"] = small
    params["runs"] = {
        run: {"dataset": DATASET, "model": model, "tuned_by": "model.dropout"} for run, model in zip(RUNS, MODELS)
    }
    params["evaluate"] = dict(EVERY_RUN_FITS)
    return params


@pytest.fixture
def registry(mlflow_server: str) -> Iterator[mlflow.MlflowClient]:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server)  # models:/ URIs resolve through it
    yield mlflow.MlflowClient(mlflow_server)
    mlflow.set_tracking_uri(previous)


def stage(module: str, argument: str, project: Path, server: str) -> str:
    result = run_stage(module, argument, cwd=project, env=train_env(server))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stderr, result.stderr
    return result.stdout


def evaluated(project: Path, model: str) -> EvalMetrics:
    return EvalMetrics.model_validate_json((project / layout.eval_metrics_file(DATASET, model)).read_text())


@pytest.mark.slow
def test_the_recommended_model_is_registered_and_predicts_as_evaluate_does(
    tmp_path: Path, mlflow_server: str, registry: mlflow.MlflowClient
) -> None:
    params = registry_params()
    project = make_project(tmp_path / "project", params)
    for run in RUNS:
        stage("stages.train", run, project, mlflow_server)
    for run in RUNS:
        stage("stages.evaluate", run, project, mlflow_server)
    plotted = stage("stages.plot", DATASET, project, mlflow_server)

    results = {run: evaluated(project, model) for run, model in zip(RUNS, MODELS)}
    assert {result.verdict for result in results.values()} == {"good fit"}
    # The rule: the best validation accuracy among the good fits, a tie to fewer parameters, then the first run.
    best = max(
        RUNS, key=lambda run: (results[run].val_accuracy_inference, -results[run].total_params, -RUNS.index(run))
    )
    model = best.split("-", 1)[1]
    version = registry.get_model_version_by_alias(NAME, "champion")
    trained = registry.get_run(version.run_id)
    assert trained.data.tags["run"] == best
    assert trained.data.tags["model_sha256"] == file_sha256(project / layout.model_file(DATASET, model))
    assert version.tags["verdict"] == "good fit" and version.tags["run"] == best
    assert f"is {NAME} version {version.version}, alias champion" in plotted and CHAMPION in plotted

    # The signature and input example the train stage logged: float32 images in 0..1.
    info = mlflow.models.get_model_info(CHAMPION)
    assert info.signature.inputs.to_dict() == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": (-1, 32, 32, 1)}}
    ]
    assert info.saved_input_example_info is not None

    # Loaded back through pyfunc, it predicts what the evaluate stage predicted, image by image.
    loaded = mlflow.pyfunc.load_model(CHAMPION)
    test = load_split(project / "data" / "prepared" / DATASET, "test")
    probabilities = np.asarray(loaded.predict(test.x.astype(np.float32) * np.float32(SCALE)))
    names = json.loads((project / "data" / "prepared" / DATASET / "summary.json").read_text())["class_names"]
    with (project / layout.predictions_file(DATASET, model)).open(newline="") as stream:
        expected = [row["predicted"] for row in csv.DictReader(stream)]
    assert [names[index] for index in probabilities.argmax(axis=1)] == expected

    # Again: the same version keeps the alias, none is added.
    stage("stages.plot", DATASET, project, mlflow_server)
    assert registry.get_model_version_by_alias(NAME, "champion").version == version.version
    assert len(registry.search_model_versions(f"name = '{NAME}'")) == 1

    # No good fit any more (every run underfits under these thresholds): no champion.
    params["evaluate"]["underfit_train_max"] = 0.95
    write_params(project, params)
    for run in RUNS:
        stage("stages.evaluate", run, project, mlflow_server)
    assert {evaluated(project, model).verdict for model in MODELS} == {"underfit"}
    assert "no run is a good fit" in stage("stages.plot", DATASET, project, mlflow_server)
    with pytest.raises(mlflow.exceptions.MlflowException):
        registry.get_model_version_by_alias(NAME, "champion")


# ------------------------------------------------------------------------------- the choice itself (fast)


def result(verdict: str, val: float, params: int) -> EvalMetrics:
    numbers = dict(
        train_accuracy=0.9,
        val_accuracy=val,
        train_loss=0.3,
        val_loss=0.4,
        trainable_params=params,
        total_params=params,
        epochs_run=5,
        best_epoch=3,
        seconds_per_epoch=1.0,
        train_images=100,
        train_accuracy_inference=0.9,
        val_accuracy_inference=val,
        test_accuracy=0.5,
        test_loss=1.0,
        gap=0.9 - val,
        gap_test=0.4,
        gap_history=0.1,
        test_images=10,
    )
    return EvalMetrics(**numbers, verdict=verdict, recommendation="")


def three_runs() -> list:
    params = project_params()
    for name in ("a", "b", "c"):
        params["models"][name] = copy.deepcopy(TINY_CNN)
    params["runs"] = {
        f"{DATASET}-{name}": {"dataset": DATASET, "model": name, "tuned_by": "model.dropout"}
        for name in ("a", "b", "c")
    }
    return validate(params).dataset_runs(DATASET)


def test_the_best_good_fit_by_validation_accuracy_ties_to_the_smaller_then_the_first() -> None:
    runs = three_runs()
    names = [run.name for run in runs]

    def choose(*entries: tuple[str, float, int]) -> str | None:
        chosen = tracking.recommended(runs, {name: result(*entry) for name, entry in zip(names, entries)})
        return chosen and chosen.model

    # A truly overfitting model with a better validation accuracy is not recommended: it is not a good fit.
    assert choose(("true overfit", 0.9, 10), ("good fit", 0.8, 10), ("good fit", 0.7, 10)) == "b"
    assert choose(("good fit", 0.8, 30), ("good fit", 0.8, 20), ("good fit", 0.7, 10)) == "b"  # fewer parameters
    assert choose(("good fit", 0.8, 20), ("good fit", 0.8, 20), ("underfit", 0.9, 10)) == "a"  # listed first
    assert choose(("underfit", 0.8, 20), ("still learning", 0.8, 20), ("partial overfit", 0.9, 10)) is None
