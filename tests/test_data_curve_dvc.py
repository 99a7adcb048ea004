"""The data-size curve end to end, on a copy of the shared tiny pipeline (conftest): real `dvc exp run --queue`
experiments run in parallel by `dvc queue start -j 2` retrain the overfitting and the simplified run at two
training-set sizes, and the report reads how the gap moves.

It is also the suite's test of parallel queued experiments: the two experiments run at once, each logging its two
trainings to the repository's default SQLite MLflow store (writers take turns: overfit_first.tracking.store_lock;
two processes creating an absent store at once: test_mlflow_store), one MLflow run per training; `dvc exp diff`
compares the two experiments. The image folder is given relative to the repository (`../shared/pets.tar.gz`, as
the README's CIFAR folders are): a queued experiment runs in <repo>/.dvc/tmp/exps/..., where `../shared` is
somewhere else, so its `sources` stage must read the folder from the original repository (issue #11 row 6; the
download stage's side: test_download's test_relative_paths_are_read_from_the_original_repository_in_a_dvc_copy).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from scratch_repo import OVERFIT_RUN, SIMPLIFIED_RUN, dvc, queue_copy, sweep_command

pytestmark = pytest.mark.slow  # real dvc, git, MLflow and trainings

SIMPLIFIED, OVERFIT = SIMPLIFIED_RUN, OVERFIT_RUN
SIZES = ("15", "30")


@pytest.fixture
def repo(tiny_pipeline: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    with queue_copy(tiny_pipeline, tmp_path / "repo") as copied:
        yield copied


@pytest.mark.timeout(1800)
def test_data_curve_retrains_the_overfitting_and_simplified_runs_in_parallel_and_reads_the_gap(
    repo: tuple[Path, dict[str, str]],
) -> None:
    path, env = repo
    assert yaml.safe_load((path / "params.yaml").read_text(encoding="utf-8"))["data"]["image_folders"] == {
        "pets": "../shared/pets.tar.gz"
    }
    result = sweep_command(path, env, "data_curve", "size", "--sizes", *SIZES, "--jobs", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    report = path / "reports" / "data_curves" / "size"
    data = json.loads((report / "data_curve.json").read_text(encoding="utf-8"))
    assert data["sizes"] == [int(size) for size in SIZES] and set(data["runs"]) == {OVERFIT, SIMPLIFIED}
    for run in (OVERFIT, SIMPLIFIED):
        assert [row["status"] for row in data["runs"][run]] == ["ok", "ok"]
        assert data["readings"][run].endswith(("get more data", "regularize or change the architecture"))
        assert f"{run}: the gap" in result.stdout
    assert (report / "data_curve.png").stat().st_size > 0
    assert "**Reading:**" in (report / "README.md").read_text(encoding="utf-8")

    # Two experiments compare with `dvc exp diff` (an experiment against its baseline: test_dvc_remote).
    names = sorted(set(dvc(path, env, "exp", "list", "--name-only").split()))
    assert len(names) == 2, names
    exp_diff = json.loads(dvc(path, env, "exp", "diff", *names, "--json"))
    size = exp_diff["params"]["params.yaml"]["train.subset_size"]
    assert {size["old"], size["new"]} == {int(value) for value in SIZES}
    assert "metrics/pets/tiny_simplified.json" in exp_diff["metrics"]

    # One MLflow run per training of each experiment, complete: train and evaluate both logged into it.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("overfit-first/pets")
    runs = client.search_runs([experiment.experiment_id])  # the baseline's own `dvc repro` logged too
    trainings = [run for run in runs if {"run", "dvc_exp_name"} <= set(run.data.tags)]
    pairs = sorted((run.data.tags["dvc_exp_name"], run.info.run_name) for run in trainings)
    assert pairs == sorted((name, run) for name in names for run in (OVERFIT, SIMPLIFIED)), pairs
    for run in trainings:
        assert run.info.status == "FINISHED", run.data.tags
        assert run.data.params["train.subset_size"] in SIZES
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 2  # both epochs
        assert {"best_val_accuracy", "test_accuracy"} <= set(run.data.metrics), "train and evaluate both logged"
        assert run.data.tags.get("verdict"), "evaluate found the run the train stage logged"
        assert {"learning_curve.png", "model_summary.txt"} <= {
            item.path for item in client.list_artifacts(run.info.run_id)
        }
