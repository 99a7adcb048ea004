"""Parallel queued experiments: two `dvc exp run --queue` experiments run at once by `dvc queue start -j 2`, on a
copy of the shared tiny pipeline (conftest), both logging to the repository's default SQLite MLflow store.

The store starts absent, so the two experiments also race to create it; overfit_first.tracking.store_lock makes
them take turns. The image folder is given relative to the repository (`../shared/pets.tar.gz`, as the README's
CIFAR folders are): a queued experiment runs in <repo>/.dvc/tmp/exps/..., where `../shared` is somewhere else, so
its `sources` stage must read the folder from the original repository (issue #11 row 6; the download stage's
side of it is test_download's test_relative_paths_are_read_from_the_original_repository_in_a_dvc_copy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scratch_repo import SIMPLIFIED_RUN, copy_repo, dvc, failure_logs, wait_for_queue

pytestmark = pytest.mark.slow  # real dvc, git, MLflow or a browser in every test

DROPOUTS = ("0.2", "0.3")


@pytest.mark.timeout(1800)
def test_queued_experiments_run_in_parallel_with_one_mlflow_run_each(
    tiny_pipeline: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    origin, env = tiny_pipeline
    repo = copy_repo(origin, tmp_path / "repo")
    (repo / "mlflow.db").unlink()
    assert yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))["data"]["image_folders"] == {
        "pets": "../shared/pets.tar.gz"
    }

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
    # Two experiments compare with `dvc exp diff`.
    first, second = sorted(names)
    exp_diff = json.loads(dvc(repo, env, "exp", "diff", first, second, "--json"))
    dropout = exp_diff["params"]["params.yaml"]["model.dropout"]
    assert {dropout["old"], dropout["new"]} == {float(value) for value in DROPOUTS}
    assert "metrics/pets/tiny_simplified.json" in exp_diff["metrics"]

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("overfit-first/pets")
    assert experiment is not None, "nothing was logged to the repository's mlflow.db"
    runs = client.search_runs([experiment.experiment_id])
    by_name = {run.data.tags.get("dvc_exp_name"): run for run in runs}
    assert len(runs) == 2 and set(by_name) == names, [run.data.tags for run in runs]  # only the run dropout changes
    assert sorted(run.data.params["model.dropout"] for run in runs) == list(DROPOUTS)
    for run in runs:
        assert run.info.status == "FINISHED" and run.info.run_name == SIMPLIFIED_RUN
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 2  # both epochs
        assert {"best_val_accuracy", "test_accuracy"} <= set(run.data.metrics), "train and evaluate both logged"
        assert run.data.tags.get("verdict"), "evaluate found the run the train stage logged"
        assert {"learning_curve.png", "model_summary.txt"} <= {
            item.path for item in client.list_artifacts(run.info.run_id)
        }
