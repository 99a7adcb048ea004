"""Sanity checks before a long run (overfit_first.sanity): each deliberately broken input fails the check it
should, naming the likely cause; the command's exit status; and the optional first step of train@<run> leaves the
trained weights exactly as they are without it."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from overfit_first import layout, sanity
from overfit_first.config import ModelSpec, SanityConfig
from overfit_first.models import build_model

from conftest import run_stage
from helpers_train import (
    DATASET,
    MODEL,
    NUM_CLASSES,
    RUN,
    TINY_CNN,
    make_images,
    make_project,
    project_params,
    sqlite_uri,
    train_env,
)

SETTINGS = SanityConfig()


def checks(learning_rate: float = 0.01, labels: str = "correct", scale: float = 1 / 255) -> list[sanity.Check]:
    """The three checks of the tiny CNN on the helpers' learnable images (a bright square whose place is the
    class), with the labels `correct`, `constant` or `shuffled` (train and held-out alike)."""
    train, held = make_images(200, seed=0), make_images(120, seed=1)
    y_train, y_held = train.y, held.y
    if labels == "constant":
        y_train, y_held = np.zeros_like(y_train), np.zeros_like(y_held)
    elif labels == "shuffled":
        rng = np.random.default_rng(1)
        y_train, y_held = rng.permutation(y_train), rng.permutation(y_held)
    raw = copy.deepcopy(TINY_CNN)
    raw["fit"]["learning_rate"] = learning_rate
    spec = ModelSpec.model_validate(raw)
    keras.utils.set_random_seed(0)
    return sanity.check_model(
        lambda: build_model(spec, train.x.shape[1:], NUM_CLASSES, {"$dropout": 0.25}),
        spec.fit,
        train.x,
        y_train,
        held.x,
        y_held,
        NUM_CLASSES,
        SETTINGS,
        scale=scale,
    )


def failed(results: list[sanity.Check]) -> dict[str, str]:
    return {check.name: f"{check.cause} / {check.fix}" for check in results if not check.passed}


def test_fit_check_names_a_too_high_learning_rate_for_a_rising_or_nan_loss() -> None:
    for history in ([1.1, 3.0, 7.5], [1.1, 0.9, math.nan]):
        check = sanity.fit_check(0.4, history, 300, 64, SETTINGS, 1.0, "models.m.fit.learning_rate")
        assert not check.passed and check.cause == sanity.CAUSE_LR_HIGH, check
        assert "lower models.m.fit.learning_rate (now 1)" in check.fix
    slow = sanity.fit_check(0.6, [1.1, 0.9, 0.8], 300, 64, SETTINGS, 1e-6, "models.m.fit.learning_rate")
    assert not slow.passed and slow.cause == sanity.CAUSE_LR_LOW_OR_CAPACITY
    assert sanity.fit_check(1.0, [1.1, 0.1], 12, 64, SETTINGS, 1e-3, "x").passed


def test_constant_labels_fail_the_baseline_check_before_any_model_runs() -> None:
    check = sanity.baseline_check(None, np.zeros((4, 2, 2, 1)), np.zeros(4, int), np.full(8, 2), 0.1)
    assert not check.passed and check.cause == sanity.CAUSE_LABELS
    assert "every training label is class 2" in check.measured


@pytest.mark.slow
def test_learnable_data_passes_every_check() -> None:
    results = checks()
    assert not failed(results), "\n".join(check.line() for check in results)
    assert [check.name for check in results] == [
        "initial loss",
        "fit a small subset",
        "labels vs input-independent baseline",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("broken", "check", "cause"),
    [
        ({"labels": "constant"}, "labels vs input-independent baseline", "broken labels"),
        ({"labels": "shuffled"}, "labels vs input-independent baseline", "shuffled relative to the images"),
        ({"scale": 1.0}, "initial loss", "broken input scaling"),
        ({"learning_rate": 1e-6}, "fit a small subset", "learning rate too low"),
    ],
    ids=["constant-labels", "shuffled-labels", "unscaled-pixels", "absurdly-low-learning-rate"],
)
def test_each_broken_input_fails_its_check_naming_the_cause(broken: dict, check: str, cause: str) -> None:
    results = checks(**broken)
    problems = failed(results)
    assert check in problems and cause in problems[check], "\n".join(result.line() for result in results)


@pytest.mark.slow
def test_command_passes_a_good_run_and_names_the_runs_for_an_unknown_one(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    result = run_stage("overfit_first.sanity", RUN, cwd=project, env=train_env(sqlite_uri(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"sanity checks passed: {RUN}" in result.stdout and result.stdout.count("  pass  ") == 3
    assert f"{RUN}: sanity checks, dtype policy float32" in result.stdout  # auto on a CPU
    unknown = run_stage("overfit_first.sanity", "nope", cwd=project, env=train_env(sqlite_uri(tmp_path)))
    assert unknown.returncode == 1 and f"no run 'nope' under `runs`; defined runs: {RUN}" in unknown.stderr


@pytest.mark.slow
def test_the_checks_run_in_the_trainings_dtype_policy(tmp_path: Path) -> None:
    params = project_params()
    params["train"]["mixed_precision"] = "bf16"
    project = make_project(tmp_path / "project", params)
    result = run_stage("overfit_first.sanity", RUN, cwd=project, env=train_env(sqlite_uri(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{RUN}: sanity checks, dtype policy mixed_bfloat16" in result.stdout


@pytest.mark.slow
def test_a_failed_check_stops_the_train_stage_before_it_writes_anything(tmp_path: Path) -> None:
    params = project_params(epochs=2, learning_rate=1e-6)
    params["sanity"] = {"before_training": True}
    project = make_project(tmp_path / "project", params)
    result = run_stage("stages.train", RUN, cwd=project, env=train_env(sqlite_uri(tmp_path)))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  fit a small subset" in result.stdout and "learning rate too low" in result.stdout
    assert f"sanity checks of {RUN} failed (above): training not started" in result.stderr
    assert not (project / layout.model_file(DATASET, MODEL)).exists()


@pytest.mark.slow
def test_sanity_before_training_leaves_the_trained_weights_identical(tmp_path: Path) -> None:
    weights = {}
    for before_training in (False, True):
        params = project_params(epochs=3)
        params["sanity"] = {"before_training": before_training}
        project = make_project(tmp_path / f"sanity-{before_training}", params)
        result = run_stage("stages.train", RUN, cwd=project, env=train_env(sqlite_uri(tmp_path)))
        assert result.returncode == 0, result.stdout + result.stderr
        assert (f"sanity checks passed: {RUN}" in result.stdout) is before_training
        model = keras.models.load_model(project / layout.model_file(DATASET, MODEL), compile=False)
        weights[before_training] = model.get_weights()
        names = [layer.name for layer in model.layers]
        weights[f"names-{before_training}"] = names
    assert weights["names-False"] == weights["names-True"]
    assert len(weights[False]) == len(weights[True])
    for off, on in zip(weights[False], weights[True]):
        np.testing.assert_array_equal(off, on)
