"""The evaluate stage on two tiny models trained for real: its numbers checked against independent
computations, the article's verdicts, superclass accuracy, and its MLflow logging into the training's run
(read back from a real SQLite tracking store)."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import yaml

from overfit_first import evaluation, layout, tracking
from overfit_first.config import EvaluateConfig, load_params, validate
from overfit_first.data.splits import Split, file_sha256, load_split
from overfit_first.errors import PipelineError
from overfit_first.verdict import RECOMMENDATIONS, still_learning, verdict

from conftest import REPO, run_stage
from helpers_eval import (
    OVERFIT_RUN,
    SIMPLIFIED_RUN,
    SUPERCLASS_OF,
    copy_project,
    repo_evaluate_section,
    stage_env_for,
    tiny_trained,
    unreachable_tracking_uri,
)
from helpers_train import DATASET

TRAIN_KEYS = (
    "train_accuracy",
    "val_accuracy",
    "train_loss",
    "val_loss",
    "trainable_params",
    "total_params",
    "epochs_run",
    "best_epoch",
    "seconds_per_epoch",
    "train_images",
)

# The article's reported (train, validation) accuracy and the words it uses for them.
ARTICLE = {
    "mlp, CIFAR-10": (0.540, 0.512, "underfit"),
    "mlp_256, CIFAR-100": (0.401, 0.243, "partial overfit"),
    "cnn_overfit, CIFAR-10": (0.984, 0.696, "true overfit"),
    "cnn_simplified, CIFAR-10": (0.865, 0.850, "good fit"),
    "cnn_overfit, CIFAR-100": (0.957, 0.446, "true overfit"),
}


@pytest.mark.parametrize("name", ARTICLE)
def test_the_article_numbers_get_the_article_verdicts(name: str) -> None:
    train, val, expected = ARTICLE[name]
    assert verdict(train, val, EvaluateConfig(**repo_evaluate_section())) == expected


def with_evaluate(section: dict | None) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    if section is None:
        params.pop("evaluate")
    else:
        params["evaluate"] = {**params["evaluate"], **section}
    return params


RULES = EvaluateConfig(**{**repo_evaluate_section(), "still_learning_window": 5})
# Validation accuracy per epoch, and whether the run was still learning when it stopped.
HISTORIES = {
    "rising to the last epoch": ([0.30, 0.40, 0.45, 0.50, 0.52, 0.55, 0.58, 0.60], True),
    "rising, last epoch a small dip": ([0.30, 0.40, 0.45, 0.50, 0.52, 0.55, 0.60, 0.59], True),
    "plateau for ten epochs (what early stopping sees)": ([0.5, 0.7, *[0.71, 0.70] * 5, 0.705], False),
    "best long ago, falling since (overfitting)": ([0.5, 0.7, 0.8, 0.78, 0.76, 0.75, 0.74, 0.73, 0.72], False),
    "flat with a lucky last epoch": ([0.70, 0.71, 0.70, 0.71, 0.70, 0.71, 0.70, 0.69, 0.72], False),
    # The default profile's overfitting CNN, seed 1, epochs 19-30: a plateau since epoch 19, best at 27
    "a noisy plateau, best near the end by less than the noise": (
        [0.849, 0.850, 0.783, 0.827, 0.845, 0.838, 0.832, 0.844, 0.856, 0.832, 0.851, 0.827],
        False,
    ),
    "short run, best at the end": ([0.3, 0.5], True),
    "single epoch": ([0.3], False),
}


@pytest.mark.parametrize("name", HISTORIES)
def test_a_run_still_improving_is_still_learning(name: str) -> None:
    values, expected = HISTORIES[name]
    assert still_learning(values, 1000, RULES) is expected


def test_still_learning_wins_over_the_accuracies() -> None:
    """The default profile's augmented run (train 0.39, validation 0.54, rising) was called "underfit"."""
    assert verdict(0.386, 0.537, RULES, learning=True) == "still learning"
    assert verdict(0.386, 0.537, RULES, learning=False) == "underfit"
    assert RECOMMENDATIONS["still learning"].startswith("validation accuracy was still rising")


def test_the_noise_margin_shrinks_with_a_larger_validation_set() -> None:
    rise = [0.70, 0.80, 0.80, 0.80, 0.80, 0.80, 0.807]  # +0.7 points at the last epoch
    assert not still_learning(rise, 1000, RULES), "within one standard error (1.3 points) of 1,000 images"
    assert still_learning(rise, 50_000, RULES), "beyond it (0.18 points) on 50,000"


def test_bad_thresholds_are_named_with_the_fix() -> None:
    with pytest.raises(PipelineError, match=r"evaluate\.overfit_gap_min = 1\.5: .*less than or equal to 1"):
        validate(with_evaluate({"overfit_gap_min": 1.5}))
    with pytest.raises(PipelineError, match=r"underfit_train_max \(0\.9\) must not exceed overfit_train_min \(0\.8\)"):
        validate(with_evaluate({"overfit_train_min": 0.8, "underfit_train_max": 0.9}))
    with pytest.raises(PipelineError, match=r"evaluate = \(missing\): Field required"):
        validate(with_evaluate(None))
    with pytest.raises(PipelineError, match=r"evaluate\.gap_min = 0\.1: Extra inputs are not permitted"):
        validate(with_evaluate({"gap_min": 0.1}))


def test_superclass_map_comes_from_the_label_pairs() -> None:
    x = np.zeros((4, 2, 2, 1), dtype=np.uint8)
    train = Split(x, np.array([0, 1, 2, 1]), np.array([1, 1, 0, 1]))
    test = Split(x, np.array([3, 0, 0, 3]), np.array([0, 1, 1, 0]))
    mapping = evaluation.superclass_map([train, test], 5, "data/prepared/x")
    assert mapping.tolist() == [1, 1, 0, 0, -1], "class 4 never appears: a prediction of it counts as wrong"
    assert evaluation.superclass_map([train, Split(x, test.y)], 5, "d") is None, "no coarse labels, no superclasses"
    clash = Split(x, np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    with pytest.raises(PipelineError, match=r"data/prepared/x: class 0 appears under superclasses 0 and 1.*hierarchy"):
        evaluation.superclass_map([clash], 2, "data/prepared/x")


@pytest.fixture(scope="module")
def tracking_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def log_training_runs(uri: str, project: Path) -> dict[str, str]:
    """What the train stage logs for each run, by the tracking contract (tags dataset, model, run, model_sha256).

    An older training of the same run (another model file) comes first: it must stay untouched.
    """
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(f"overfit-first/{DATASET}")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(f"overfit-first/{DATASET}")
    ids = {}
    for name, sha256 in (("older", "0" * 64), (OVERFIT_RUN, None)):
        model = OVERFIT_RUN.split("-", 1)[1]
        sha256 = sha256 or file_sha256(project / layout.model_file(DATASET, model))
        tags = {"dataset": DATASET, "model": model, "run": OVERFIT_RUN, "model_sha256": sha256}
        run = client.create_run(experiment_id, tags=tags, run_name=OVERFIT_RUN)
        client.log_metric(run.info.run_id, "best_val_accuracy", 0.5)
        client.set_terminated(run.info.run_id)
        ids[name] = run.info.run_id
    return ids


def read_predictions(project: Path, model: str) -> list[dict[str, str]]:
    with (project / layout.predictions_file(DATASET, model)).open(newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
def test_evaluation_is_right_and_lands_in_the_training_run(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, tracking_store: str
) -> None:
    project = copy_project(tiny_trained(tmp_path_factory), tmp_path / "project")
    ids = log_training_runs(tracking_store, project)
    result = run_stage("stages.evaluate", OVERFIT_RUN, cwd=project, env=stage_env_for(tracking_store))
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    model = OVERFIT_RUN.split("-", 1)[1]
    metrics = json.loads((project / layout.eval_metrics_file(DATASET, model)).read_text())
    trained = json.loads((project / layout.train_metrics_file(DATASET, model)).read_text())

    # Flat: the train stage's keys unchanged, then the evaluation's.
    assert list(metrics)[: len(TRAIN_KEYS)] == list(TRAIN_KEYS)
    assert {key: metrics[key] for key in TRAIN_KEYS} == trained
    # The training log, published where git keeps it: byte for byte the train stage's (DVC-cached) files.
    for cached, published in (
        (layout.train_metrics_file, layout.published_train_metrics_file),
        (layout.history_file, layout.published_history_file),
    ):
        assert (project / published(DATASET, model)).read_bytes() == (project / cached(DATASET, model)).read_bytes()
    assert all(isinstance(value, (int, float, str)) for value in metrics.values())
    rounded = {"abs": 2e-6}  # numbers are rounded to 6 decimals: a difference of two, by up to 1e-6
    train_accuracy = metrics["train_accuracy_inference"]
    assert metrics["gap"] == pytest.approx(train_accuracy - metrics["val_accuracy_inference"], **rounded)
    assert metrics["gap_test"] == pytest.approx(train_accuracy - metrics["test_accuracy"], **rounded)
    assert metrics["gap_history"] == pytest.approx(trained["train_accuracy"] - trained["val_accuracy"], **rounded)
    # Keras validated the best epoch in inference mode too: the same weights give the same accuracy.
    assert metrics["val_accuracy_inference"] == pytest.approx(trained["val_accuracy"], abs=1 / 60)
    rules = load_params(project / "params.yaml").evaluate
    assert metrics["verdict"] == verdict(metrics["train_accuracy_inference"], metrics["val_accuracy_inference"], rules)
    assert metrics["recommendation"] == RECOMMENDATIONS[metrics["verdict"]]

    # Test accuracy and loss, recomputed independently from the saved model and the predictions file.
    directory = project / "data" / "prepared" / DATASET
    test = load_split(directory, "test")
    rows = read_predictions(project, model)
    names = ["top-left", "top-right", "bottom"]
    assert [row["actual"] for row in rows] == [names[label] for label in test.y], "test-split order"
    predicted = np.array([names.index(row["predicted"]) for row in rows])
    assert metrics["test_accuracy"] == pytest.approx(np.mean(predicted == test.y), **rounded)
    saved = keras.saving.load_model(project / layout.model_file(DATASET, model))
    keras_loss, keras_accuracy = saved.evaluate(test.x.astype("float32") / 255.0, test.y, verbose=0)
    assert metrics["test_loss"] == pytest.approx(keras_loss, rel=1e-4)
    assert metrics["test_accuracy"] == pytest.approx(keras_accuracy, **rounded)
    superclass_right = SUPERCLASS_OF[predicted] == SUPERCLASS_OF[test.y]
    assert metrics["superclass_test_accuracy"] == pytest.approx(np.mean(superclass_right), **rounded)
    assert metrics["superclass_test_accuracy"] >= metrics["test_accuracy"], "a right class is a right superclass"

    per_class = json.loads((project / layout.per_class_file(DATASET, model)).read_text())
    for index, name in enumerate(names):
        members = test.y == index
        expected = np.mean(predicted[members] == index)
        assert per_class["classes"][name] == {
            "accuracy": pytest.approx(expected, **rounded),
            "images": int(members.sum()),
        }
    assert sum(entry["images"] for entry in per_class["superclasses"].values()) == len(test.y)
    assert not [path.name for path in (project / "metrics" / DATASET).iterdir() if path.name.startswith(".")], (
        "no temporary files left behind"
    )

    # MLflow: the evaluation joined the run that trained this very model file, not the older one.
    client = mlflow.MlflowClient(tracking_uri=tracking_store)
    logged = client.get_run(ids[OVERFIT_RUN]).data
    assert logged.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert logged.metrics["gap"] == pytest.approx(metrics["gap"])
    assert logged.metrics["superclass_test_accuracy"] == pytest.approx(metrics["superclass_test_accuracy"])
    assert logged.tags["verdict"] == metrics["verdict"]
    artifacts = {item.path for item in client.list_artifacts(ids[OVERFIT_RUN], "evaluation")}
    assert artifacts == {"evaluation/confusion_matrix.png", "evaluation/predictions.png", "evaluation/per_class.json"}
    assert "test_accuracy" not in client.get_run(ids["older"]).data.metrics


@pytest.mark.slow
def test_tracking_problems_never_fail_the_stage(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    tracking_store: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = copy_project(tiny_trained(tmp_path_factory), tmp_path / "project")
    result = run_stage("stages.evaluate", SIMPLIFIED_RUN, cwd=project, env=stage_env_for(unreachable_tracking_uri()))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning: MLflow logging failed") == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert (project / layout.eval_metrics_file(DATASET, SIMPLIFIED_RUN.split("-", 1)[1])).is_file()

    # A reachable store without this model's training run: the same single warning, naming the fix.
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_store)
    params = load_params(project / "params.yaml")
    run = params.run(SIMPLIFIED_RUN)
    found = tracking.log_evaluation(run, evaluation.evaluate(run, params.evaluate))
    assert found is False
    warning = capsys.readouterr().err
    assert f"no MLflow run tagged run={SIMPLIFIED_RUN} and model_sha256=" in warning
    assert f"python -m overfit_first tracking relog {SIMPLIFIED_RUN}" in warning


@pytest.mark.slow
def test_missing_or_broken_inputs_name_the_file_and_the_fix(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_project(tiny_trained(tmp_path_factory), tmp_path / "project")
    monkeypatch.chdir(project)
    params = load_params(project / "params.yaml")
    run = params.run(OVERFIT_RUN)
    model_path = layout.model_file(run.dataset, run.model)
    model_path.write_bytes(model_path.read_bytes()[:3000])  # Keras itself says "File not found" here
    with pytest.raises(PipelineError, match=rf"{model_path} is corrupt or truncated .*dvc repro --force train@"):
        evaluation.evaluate(run, params.evaluate)
    with zipfile.ZipFile(model_path, "w") as archive:  # a zip archive, but not a Keras model
        archive.writestr("notes.txt", "not a model")
    with pytest.raises(PipelineError, match=rf"{model_path} cannot be loaded .*dvc repro --force train@{OVERFIT_RUN}"):
        evaluation.evaluate(run, params.evaluate)
    model_path.unlink()
    with pytest.raises(PipelineError, match=rf"{model_path} not found: train the run first with `dvc repro train@"):
        evaluation.evaluate(run, params.evaluate)

    # A model trained on another train.subset_size than params.yaml now says: stale, retrain.
    raw = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    raw["train"]["subset_size"] = 30
    params = validate(raw)
    run = params.run(SIMPLIFIED_RUN)
    stale = r"trained on 150 images, but train.subset_size .* select 30: the model is stale"
    with pytest.raises(PipelineError, match=stale):
        evaluation.evaluate(run, params.evaluate)
