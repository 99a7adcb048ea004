"""The metrics contract (overfit_first.metrics): one declaration that every writer and reader goes through."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from overfit_first import metrics, report
from overfit_first.config import validate
from overfit_first.errors import PipelineError

from conftest import REPO

TRAINED = {
    "train_accuracy": 0.9,
    "val_accuracy": 0.8,
    "train_loss": 0.3,
    "val_loss": 0.6,
    "trainable_params": 100,
    "total_params": 110,
    "epochs_run": 5,
    "best_epoch": 4,
    "seconds_per_epoch": 1.5,
    "train_images": 1000,
}
EVALUATED = {
    "train_accuracy_inference": 0.95,
    "val_accuracy_inference": 0.8,
    "test_accuracy": 0.79,
    "test_loss": 0.7,
    "gap": 0.15,
    "gap_test": 0.16,
    "gap_history": 0.1,
    "test_images": 500,
    "verdict": "true overfit",
    "recommendation": "simplify it",
}


def test_a_written_file_reads_back_with_its_keys_in_order(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    metrics.write(path, metrics.EvalMetrics(**TRAINED, **EVALUATED))
    written = json.loads(path.read_text())
    assert list(written) == [*TRAINED, *EVALUATED], "no superclass key for a dataset without superclasses"
    assert metrics.read(path, metrics.EvalMetrics, "dvc repro x") == metrics.EvalMetrics(**written)
    assert set(metrics.EVALUATED) == {*EVALUATED, "superclass_test_accuracy"}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "not found: run `dvc repro --force train@r`"),
        ("{not json", "is corrupt or from an older version"),
        (json.dumps({**TRAINED, "train_accuracy": 1.5}), "train_accuracy: Input should be less than or equal to 1"),
        (
            json.dumps({key: value for key, value in TRAINED.items() if key != "best_epoch"}),
            "best_epoch: Field required",
        ),
        (json.dumps({**TRAINED, "accuracy": 0.5}), "accuracy: Extra inputs are not permitted"),
    ],
)
def test_a_bad_file_names_itself_and_the_command_that_rebuilds_it(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "train.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PipelineError, match=r"train\.json") as error:
        metrics.read(path, metrics.TrainMetrics, "dvc repro --force train@r")
    assert problem in str(error.value) and "dvc repro --force train@r" in str(error.value)


def test_history_round_trip_and_missing_columns(tmp_path: Path) -> None:
    rows = [
        {"epoch": epoch, "train_accuracy": 0.5, "val_accuracy": 0.4, "train_loss": 1.0, "val_loss": 1.1, "seconds": 2.0}
        for epoch in (1, 2)
    ]
    path = tmp_path / "h.csv"
    text = metrics.history_csv(rows)
    assert text.splitlines()[0] == ",".join(metrics.HISTORY_COLUMNS), "seconds stays in the cache"
    path.write_text(text)
    history = metrics.read_history(path, "dvc repro train@r")
    assert history["epoch"].tolist() == [1.0, 2.0] and list(history.columns) == list(metrics.HISTORY_COLUMNS)
    path.write_text("epoch,train_accuracy\n1,0.5\n")
    with pytest.raises(PipelineError, match=r"h\.csv lacks val_accuracy, train_loss, val_loss: run `dvc repro"):
        metrics.read_history(path, "dvc repro train@r")


def test_confusion_matrix_counts_actual_by_predicted() -> None:
    matrix = metrics.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_report_tables_align_numbers_right() -> None:
    lines = report.markdown(pd.DataFrame([{"model": "`a`", "gap": "+0.100"}]), {"gap"})
    assert lines == ["| model   |    gap |", "|:--------|-------:|", "| `a`     | +0.100 |"]


def test_article_table_puts_the_articles_numbers_beside_ours() -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["data"]["datasets"] = ["cifar10_jpeg", "fashion_mnist"]
    raw["runs"] = {
        "cifar10_jpeg-cnn_overfit": {
            "dataset": "cifar10_jpeg",
            "model": "cnn_overfit",
            "tuned_by": "train",
            "epochs": 20,
        },
        "cifar10_jpeg-mlp": {"dataset": "cifar10_jpeg", "model": "mlp", "tuned_by": "train", "epochs": 40},
        "fashion_mnist-mlp": {"dataset": "fashion_mnist", "model": "mlp", "tuned_by": "train"},
    }
    params = validate(raw)
    common = {
        "train_accuracy": 0.9,
        "val_accuracy": 0.6,
        "train_loss": 0.3,
        "val_loss": 1.2,
        "trainable_params": 10,
        "total_params": 10,
        "epochs_run": 20,
        "best_epoch": 18,
        "seconds_per_epoch": 1.0,
        "train_images": 100,
        "test_loss": 1.3,
        "gap_test": 0.3,
        "gap_history": 0.3,
        "test_images": 100,
        "recommendation": "",
    }
    results = {
        "cifar10_jpeg-cnn_overfit": metrics.EvalMetrics(
            **common,
            train_accuracy_inference=0.99,
            val_accuracy_inference=0.60,
            test_accuracy=0.61,
            gap=0.39,
            verdict="true overfit",
        ),
        "cifar10_jpeg-mlp": metrics.EvalMetrics(
            **common,
            train_accuracy_inference=0.80,
            val_accuracy_inference=0.45,
            test_accuracy=0.44,
            gap=0.35,
            verdict="partial overfit",
        ),
    }
    lines = report.article_table(params.dataset_runs("cifar10_jpeg"), results, params.evaluate)
    overfit = next(line for line in lines if line.startswith("| `cnn_overfit`"))
    assert "150 (31) / 20 (18)" in overfit and "0.984 / 0.990" in overfit and "0.696 / 0.600" in overfit
    assert "– / 0.610" in overfit, "the article reports no test accuracy for this run"
    assert "true overfit / **true overfit**" in overfit and overfit.rstrip(" |").endswith("yes")
    mlp = next(line for line in lines if line.startswith("| `mlp`"))
    assert "0.506 / 0.440" in mlp and "underfit / **partial overfit**" in mlp and "**no**" in mlp
    assert report.article_table(params.dataset_runs("fashion_mnist"), {}, params.evaluate) == []
