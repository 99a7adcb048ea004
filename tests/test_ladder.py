"""The ladder's and the data-size curve's logic on synthetic tables (no training, no dvc): the recommendation uses
the seed spread, the data-size reading, and bad input refused before anything is queued."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from overfit_first import data_curve, ladder
from overfit_first.errors import PipelineError
from overfit_first.sweep import Stat, Step, StepResult, Sweep, affects, table

from conftest import REPO

METRICS = ("train_accuracy_inference", "val_accuracy_inference", "test_accuracy", "gap")


def row(label: str, val: list[float], gap: list[float], failed: bool = False) -> StepResult:
    """A step whose validation accuracies and gaps over seeds are `val` and `gap` (train = val + gap)."""
    result = StepResult(Step(label, float(label), float(label)))
    if failed:
        result.failed = [f"sweep-{label}"]
        return result
    result.stats = {
        "train_accuracy_inference": Stat([v + g for v, g in zip(val, gap)]),
        "val_accuracy_inference": Stat(list(val)),
        "test_accuracy": Stat([v - 0.02 for v in val]),
        "gap": Stat(list(gap)),
    }
    result.verdicts = ["good fit"] * len(val)
    return result


def test_recommends_the_smallest_gap_within_tolerance_of_the_best_validation() -> None:
    rows = [
        row("0.0", [0.850], [0.15]),  # best validation, large gap
        row("0.2", [0.845], [0.08]),  # within 0.01 of the best, smaller gap: recommended
        row("0.4", [0.830], [0.03]),  # smallest gap but 0.02 behind: too far
    ]
    label, notes, why = ladder.recommend(rows, tolerance=0.01)
    assert label == "0.2", (notes, why)
    assert notes["0.0"] == "best validation" and notes["0.4"].startswith("validation 0.020 below best")
    assert "smallest gap among the 2 step(s)" in why


def test_a_step_is_better_only_if_it_wins_by_more_than_the_seed_spread() -> None:
    rows = [
        row("0.0", [0.86, 0.84, 0.85], [0.15, 0.14, 0.16]),
        # 0.02 behind the best on average, but the seeds spread by 0.04: as good as the best
        row("0.4", [0.85, 0.81, 0.83], [0.06, 0.07, 0.05]),
        # the gap is 0.01 smaller than 0.4's, within their spread: tied; 0.4's higher validation decides
        row("0.6", [0.84, 0.80, 0.82], [0.05, 0.06, 0.04]),
    ]
    label, notes, why = ladder.recommend(rows, tolerance=0.01)
    assert label == "0.4", (notes, why)
    assert "gap within the seed spread of 0.6" in why
    one_seed = [row("0.0", [0.85], [0.15]), row("0.4", [0.83], [0.06])]
    assert ladder.recommend(one_seed, tolerance=0.01)[0] == "0.0"  # no spread: 0.02 behind is too far


def test_failed_steps_are_skipped_and_reported() -> None:
    rows = [row("0.0", [0.8], [0.1]), row("0.2", [], [], failed=True)]
    label, notes, _ = ladder.recommend(rows)
    assert label == "0.0" and notes["0.2"] == "failed"
    assert "| 0.2 | failed | | | | sweep-0.2 |" in table(rows, "model.dropout", notes)
    assert ladder.recommend([row("0.2", [], [], failed=True)])[0] is None


def test_data_curve_reading_gap_shrinking_means_get_data_flat_means_regularize() -> None:
    shrinking = [row("250", [0.70, 0.72], [0.25, 0.27]), row("1000", [0.84, 0.85], [0.12, 0.13])]
    assert data_curve.reading(shrinking).endswith("get more data")
    assert "validation accuracy rises" in data_curve.reading(shrinking)
    flat = [row("250", [0.80, 0.84], [0.13, 0.11]), row("1000", [0.82, 0.85], [0.12, 0.10])]
    assert data_curve.reading(flat).endswith("regularize or change the architecture")
    # a 0.03 shrink inside a 0.06 seed spread is noise, not a trend
    noisy = [row("250", [0.80, 0.80], [0.16, 0.10]), row("1000", [0.80, 0.80], [0.11, 0.09])]
    assert data_curve.reading(noisy).endswith("regularize or change the architecture")
    assert data_curve.reading([shrinking[0]]) == "fewer than two sizes succeeded: no reading"


def arguments(**given: object) -> argparse.Namespace:
    defaults = {"name": "dropout", "param": None, "values": None, "augmentation": False, "runs": None}
    defaults.update(seeds=None, jobs=1, tolerance=ladder.TOLERANCE, collect=False)
    defaults.update(given)
    return argparse.Namespace(**defaults)


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(REPO)
    return REPO


def test_default_ladder_is_dropout_over_the_runs_it_retrains(in_repo: Path) -> None:
    sweep, tolerance = ladder.plan(arguments(seeds=[0, 1, 2]))
    assert sweep.key == "model.dropout" and [step.label for step in sweep.steps] == ["0.0", "0.2", "0.4", "0.6"]
    assert [run.name for run in sweep.runs] == [
        "fashion_mnist-cnn_simplified",
        "fashion_mnist-cnn_simplified_augmented",
    ]
    points = sweep.points()
    assert len(points) == 12 and points[1].name == "dropout-0.0-s1"
    assert sweep.sets(points[1]) == ["model.dropout=0.0", "train.seed=1"]
    assert tolerance == ladder.TOLERANCE


def test_augmentation_ladder_switches_the_run_models_block_off_and_keeps_it_on(in_repo: Path) -> None:
    sweep, _ = ladder.plan(arguments(name="aug", augmentation=True, runs=["fashion_mnist-cnn_simplified_augmented"]))
    assert sweep.key == "models.cnn_simplified_augmented.augmentation"
    off, on = sweep.points()
    assert sweep.sets(off) == ["models.cnn_simplified_augmented.augmentation=null"] and sweep.sets(on) == []


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"param": "model.dropuot", "values": ["0.1"]}, "params.yaml has no key 'model.dropuot': model holds dropout"),
        ({"values": ["0.1", "lots"]}, "--values: 'lots' is not a number; model.dropout takes numbers"),
        ({"values": ["0.1", "1.5"]}, "model.dropout = 1.5: Input should be less than 1"),
        ({"param": "train.subset_size", "values": ["100", "250.5"]}, "'250.5' is not a whole number"),
        ({"param": "models.mlp.fit.optimizer", "values": ["1"]}, "is not a number: the ladder sweeps numeric keys"),
        ({"runs": ["fashion_mnist-nope"]}, "no run 'fashion_mnist-nope' under `runs`; defined runs:"),
        ({"runs": ["fashion_mnist-mlp"]}, "--runs fashion_mnist-mlp: not affected by model.dropout"),
        ({"name": "a/b"}, "sweep name 'a/b': use letters, digits"),
        ({"seeds": [-1]}, "--seeds [-1]: seeds are 0..2**32-1"),
        ({"augmentation": True, "runs": ["fashion_mnist-cnn_simplified"]}, "augmentation is not set"),
    ],
)
def test_bad_input_is_refused_naming_the_key_and_the_fix(in_repo: Path, given: dict, message: str) -> None:
    with pytest.raises(PipelineError, match=None) as error:
        ladder.plan(arguments(**given))
    assert message in str(error.value)


def test_data_curve_defaults_to_quarter_half_all_of_the_profile_for_overfit_and_simplified(in_repo: Path) -> None:
    args = argparse.Namespace(name="size", fractions=None, sizes=None, runs=None, seeds=[0, 1, 2], tolerance=0.01)
    sweep, _ = data_curve.plan(args)
    assert isinstance(sweep, Sweep) and sweep.key == "train.subset_size"
    assert [step.value for step in sweep.steps] == [250, 500, 1000]
    assert [run.name for run in sweep.runs] == ["fashion_mnist-cnn_overfit", "fashion_mnist-cnn_simplified"]
    with pytest.raises(PipelineError, match="fractions of the profile's training images"):
        data_curve.plan(argparse.Namespace(**{**vars(args), "fractions": [0.5, 2.0]}))


def test_a_key_affects_the_runs_whose_stages_depend_on_it(in_repo: Path) -> None:
    from overfit_first.config import load_params

    params = load_params()
    overfit, simplified = params.run("fashion_mnist-cnn_overfit"), params.run("fashion_mnist-cnn_simplified")
    assert affects("train.seed", overfit, params) and affects("train.seed", simplified, params)
    assert not affects("model.dropout", overfit, params) and affects("model.dropout", simplified, params)
    assert affects("models.cnn_overfit.fit.learning_rate", overfit, params)
    assert not affects("models.cnn_overfit.fit.learning_rate", simplified, params)
    assert not affects("sanity.fit_batches", overfit, params)  # an observer section: retrains nothing
