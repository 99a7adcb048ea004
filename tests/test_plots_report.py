"""The repository's evaluate, plot and report stages under a real `dvc repro` on two tiny trained models:
the comparison, the charts (valid, non-blank PNGs) and a report whose every link resolves."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from overfit_first import comparison, layout, plots
from overfit_first.config import validate
from overfit_first.errors import PipelineError

from helpers_eval import (
    OVERFIT_RUN,
    SIMPLIFIED_RUN,
    copy_project,
    dvc,
    stage_env_for,
    tiny_reproduced,
    unreachable_tracking_uri,
)
from helpers_train import DATASET, MODEL, project_params


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared reproduced project: a test here reruns `dvc repro`, which takes DVC's lock, while
    another worker reads the original."""
    return copy_project(tiny_reproduced(tmp_path_factory), tmp_path_factory.mktemp("plots-report") / "project")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_repro_is_complete_and_then_up_to_date(project: Path) -> None:
    log = (project / "repro.log").read_text()
    for stage in (f"evaluate@{OVERFIT_RUN}", f"evaluate@{SIMPLIFIED_RUN}", f"plot@{DATASET}", "report"):
        assert f"Running stage '{stage}'" in log
    # Tracking down: one warning per evaluation and one for the registry (plot), no failure.
    assert log.count("warning: MLflow logging failed") == 3, log

    env = stage_env_for(unreachable_tracking_uri())
    shown = dvc(project, "metrics", "show", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    files = json.loads(shown.stdout)[""]["data"]
    for model in ("tiny_overfit", "tiny_simplified"):
        row = files[layout.eval_metrics_file(DATASET, model).as_posix()]["data"]
        assert {"test_accuracy", "gap", "verdict", "recommendation", "superclass_test_accuracy"} <= set(row)
    assert files[layout.comparison_file(DATASET).as_posix()]["data"]["simplified"] == "tiny_simplified"

    # The plot stage depends on all of metrics/tiny/ and writes beside it: nothing is left to rerun.
    again = dvc(project, "repro", env=env)
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout, again.stdout


@pytest.mark.slow
def test_comparison_holds_the_gains_of_simplifying(project: Path) -> None:
    compared = read_json(project / layout.comparison_file(DATASET))
    overfit = read_json(project / layout.eval_metrics_file(DATASET, "tiny_overfit"))
    simplified = read_json(project / layout.eval_metrics_file(DATASET, "tiny_simplified"))
    val_gain = simplified["val_accuracy_inference"] - overfit["val_accuracy_inference"]
    test_gain = simplified["test_accuracy"] - overfit["test_accuracy"]
    assert compared == {
        "overfit": "tiny_overfit",
        "simplified": "tiny_simplified",
        "simplified_val_accuracy_gain": pytest.approx(val_gain, abs=2e-6),
        "simplified_test_accuracy_gain": pytest.approx(test_gain, abs=2e-6),
        "simplified_gap_closed": pytest.approx(overfit["gap"] - simplified["gap"], abs=2e-6),
    }


@pytest.mark.slow
def test_charts_are_real_images(project: Path) -> None:
    for name in plots.PNG_FILES:
        path = project / layout.report_dir(DATASET) / name
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"))
        assert image.format == "PNG" and min(image.size) >= 300, (name, image.size)
        assert pixels.std() > 10, f"{name} looks blank"
    with (project / layout.report_dir(DATASET) / plots.VALIDATION_CSV).open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    epochs = sum(
        read_json(project / layout.train_metrics_file(DATASET, model))["epochs_run"]
        for model in ("tiny_overfit", "tiny_simplified")
    )
    assert len(rows) == epochs and set(rows[0]) == {"epoch", "model", "val_accuracy"}


@pytest.mark.slow
def test_report_tables_and_every_link_resolves(project: Path) -> None:
    text = (project / layout.REPORT_FILE).read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == len(plots.PNG_FILES)
    assert all((project / layout.REPORTS / link).is_file() for link in links), links
    for model in ("tiny_overfit", "tiny_simplified"):
        metrics = read_json(project / layout.eval_metrics_file(DATASET, model))
        row = next(line for line in text.splitlines() if re.match(rf"\| `{model}` +\|", line))
        assert f"**{metrics['verdict']}**" in row and f"{metrics['test_accuracy']:.3f}" in row
    assert "Gains over the overfitting model `tiny_overfit`" in text
    rules = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))["evaluate"]
    assert f"train ≥ {rules['overfit_train_min']} and gap ≥ {rules['overfit_gap_min']}" in text


def test_grid_titles_say_actual_and_pred() -> None:
    images = np.random.default_rng(0).integers(0, 255, size=(20, 8, 8, 1), dtype=np.uint8)
    actual = ["cat", "dog"] * 10
    predicted = ["cat"] * 20
    figure = plots.prediction_grid(images, actual, predicted, "grid")
    axes = figure.get_axes()
    assert len(axes) == 16
    assert axes[1].get_title() == "Actual: dog\nPred: cat" and axes[1].title.get_color() == "firebrick"
    assert axes[0].get_images()[0].get_cmap().name == "gray", "one channel is drawn in grayscale"


def test_duplicate_roles_and_missing_evaluations_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = project_params()
    raw["data"]["datasets"] = ["d"]
    raw["data"]["image_folders"] = {"d": "folder"}
    raw["models"]["a"] = raw["models"]["b"] = {**raw["models"].pop(MODEL), "role": "overfit"}
    raw["runs"] = {name: {"dataset": "d", "model": name[-1], "tuned_by": "model.dropout"} for name in ("d-a", "d-b")}
    runs = validate(raw).dataset_runs("d")
    with pytest.raises(PipelineError, match=r"runs d-a and d-b both train a model with role 'overfit' on d.*role: oth"):
        comparison.by_role(runs)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=r"metrics/d/a.json not found: run `dvc repro --force evaluate@d-a`"):
        comparison.read_metrics(runs[0])
