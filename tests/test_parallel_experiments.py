"""Parallel experiments: two `dvc exp run --queue` experiments run at once by `dvc queue start -j 2`, in a
temporary git + DVC repository with the project's code, both logging to its default SQLite MLflow store.

The store starts absent, so the two experiments also race to create it; overfit_first.tracking.store_lock
makes them take turns. Slow (two whole pipelines in parallel, about a minute on 2 cores), hence the timeout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from data_fixtures import image_folder, tar_gz
from helpers_train import DATASET, RUN, project_params
from scratch_repo import commit, dvc, failure_logs, new_repo, wait_for_queue

pytestmark = pytest.mark.slow  # real dvc, git, MLflow or a browser in every test

DROPOUTS = ("0.2", "0.3")


def make_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The project's code and dvc.yaml, one tiny run of 2 epochs on a tiny image folder, committed."""
    image_folder(tmp_path / "folder", classes=("cat", "dog", "frog"), n_train=8, n_test=2, size=(8, 8))
    archive = tar_gz(tmp_path / "folder", tmp_path / "tiny.tar.gz")
    params = project_params(epochs=2)
    params["data"]["image_folders"] = {DATASET: str(archive)}
    params["prepare"].update(valid_size=6, pad_to=None)
    params["evaluate"] = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["evaluate"]
    repo, env = new_repo(tmp_path, params)
    commit(repo, "pipeline")
    return repo, env


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_queued_experiments_run_in_parallel_with_one_mlflow_run_each(tmp_path: Path) -> None:
    repo, env = make_repo(tmp_path)
    for dropout in DROPOUTS:
        dvc(repo, env, "exp", "run", "--queue", "-S", f"model.dropout={dropout}")
    try:
        dvc(repo, env, "queue", "start", "-j", "2")
        status = wait_for_queue(repo, env, timeout=1200)
    finally:
        subprocess.run(
            [sys.executable, "-m", "dvc", "queue", "stop"], cwd=repo, env=env, capture_output=True, timeout=300
        )
    assert status.count("Success") == 2 and "Failed" not in status, status + failure_logs(repo, env, status)
    names = set(dvc(repo, env, "exp", "list", "--name-only").split())
    assert len(names) == 2, names

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"overfit-first/{DATASET}")
    assert experiment is not None, "nothing was logged to the repository's mlflow.db"
    runs = client.search_runs([experiment.experiment_id])
    by_name = {run.data.tags.get("dvc_exp_name"): run for run in runs}
    assert len(runs) == 2 and set(by_name) == names, [run.data.tags for run in runs]
    assert sorted(run.data.params["model.dropout"] for run in runs) == list(DROPOUTS)
    for run in runs:
        assert run.info.status == "FINISHED" and run.info.run_name == RUN
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 2  # both epochs
        assert {"best_val_accuracy", "test_accuracy"} <= set(run.data.metrics), "train and evaluate both logged"
        assert run.data.tags.get("verdict"), "evaluate found the run the train stage logged"
        assert {"learning_curve.png", "model_summary.txt"} <= {
            item.path for item in client.list_artifacts(run.info.run_id)
        }
