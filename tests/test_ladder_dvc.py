"""The ladder end to end, on a copy of the shared tiny pipeline (conftest): real `dvc exp run --queue` experiments
run by `dvc queue start -j 2`, a real SQLite MLflow store. One ladder step fails on purpose (a pooling window larger
than the images: Keras refuses to build the model): it is reported as failed with its log's last lines, and the
other step is reported all the same. The data-size curve is test_data_curve_dvc (a file of its own, so that the
two run on both workers at once)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from scratch_repo import SIMPLIFIED_RUN, dvc, queue_copy, sweep_command

pytestmark = pytest.mark.slow  # real dvc, git, MLflow and trainings in every test

POOL = "models.tiny_simplified.layer_defaults.MaxPooling2D.pool_size"
SIMPLIFIED = SIMPLIFIED_RUN


@pytest.fixture
def repo(tiny_pipeline: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    with queue_copy(tiny_pipeline, tmp_path / "repo") as copied:
        yield copied


@pytest.mark.timeout(1800)
def test_ladder_reports_a_failed_step_with_its_log_and_the_others_with_mean_and_spread(
    repo: tuple[Path, dict[str, str]],
) -> None:
    path, env = repo
    args = ("pool", "--param", POOL, "--values", "2", "16", "--seeds", "0", "1", "--jobs", "2")
    result = sweep_command(path, env, "ladder", *args)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "2 experiment(s) failed: pool-16-s0, pool-16-s1" in result.stderr, output
    assert f"{SIMPLIFIED}: recommended {POOL} = 2" in result.stdout, output

    listed = set(dvc(path, env, "exp", "list", "--name-only").split())
    assert {"pool-2-s0", "pool-2-s1"} <= listed, listed  # `dvc exp show` lists the steps under the sweep's name

    report = path / "reports" / "ladders" / "pool"
    assert sorted(item.name for item in report.iterdir()) == ["README.md", "ladder.json", "ladder.png"]
    data = json.loads((report / "ladder.json").read_text(encoding="utf-8"))
    assert list(data["runs"]) == [SIMPLIFIED]  # only the run the key affects was retrained and reported
    ok, failed = data["runs"][SIMPLIFIED]
    assert ok["status"] == "ok" and len(ok["metrics"]["validation"]["values"]) == 2, ok  # both seeds
    assert failed["status"] == "failed" and failed["failed_experiments"] == ["pool-16-s0", "pool-16-s1"]
    assert data["recommended"][SIMPLIFIED]["step"] == "2"
    readme = (report / "README.md").read_text(encoding="utf-8")
    assert "| 16 | failed |" in readme and "`dvc queue logs pool-16-s0`" in readme
    assert "cannot build MaxPooling2D" in data["failed_experiments"]["pool-16-s0"], data["failed_experiments"]

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("overfit-first/pets")
    runs = client.search_runs([experiment.experiment_id], "tags.sweep = 'pool'")
    parents = [run for run in runs if "sweep_step" not in run.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", [run.data.tags for run in runs]
    parent = parents[0]
    assert parent.data.tags[f"recommended/{SIMPLIFIED}"] == "2"
    assert {"README.md", "ladder.json", "ladder.png"} <= {
        item.path for item in client.list_artifacts(parent.info.run_id)
    }
    children = {run.data.tags["sweep_step"]: run for run in runs if "sweep_step" in run.data.tags}
    assert set(children) == {"2", "16"}
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in children.values())
    assert children["2"].info.status == "FINISHED" and children["16"].info.status == "FAILED"
    assert f"{SIMPLIFIED}/val_accuracy" in children["2"].data.metrics
    # pool 2 with seed 0 is the committed baseline: DVC retrained nothing, so that experiment has no training run
    assert not client.search_runs([experiment.experiment_id], "tags.dvc_exp_name = 'pool-2-s0'")
    trained = client.search_runs([experiment.experiment_id], "tags.dvc_exp_name = 'pool-2-s1'")
    assert len(trained) == 1 and trained[0].data.tags["run"] == SIMPLIFIED, [run.data.tags for run in trained]
    assert trained[0].data.tags["mlflow.parentRunId"] == children["2"].info.run_id  # nested under its step

    again = sweep_command(path, env, "ladder", *args)  # the names are taken: refused, nothing queued
    assert again.returncode == 1 and "exist already" in again.stderr and "--collect" in again.stderr, again.stderr
