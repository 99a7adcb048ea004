"""MLflow tracking against a real `mlflow server`, read back over its REST API; and training that survives
a tracking server that is down."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from overfit_first.data.splits import file_sha256
from overfit_first.tracking import repo_root, tracking_uri

from conftest import free_port, run_stage
from helpers_mlflow import api, search_runs
from helpers_train import RUN, make_project, output_paths, read_metrics, train_env


def git_init(project: Path) -> str:
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "params.yaml"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tiny project"], cwd=project, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.slow
def test_run_is_logged_to_a_tracking_server(tmp_path: Path, mlflow_server: str) -> None:
    project = make_project(tmp_path / "project")
    commit = git_init(project)
    runs_before = len(search_runs(mlflow_server))
    result = run_stage("stages.train", RUN, cwd=project, env=train_env(mlflow_server, DVC_EXP_NAME="dusty-mast"))
    assert result.returncode == 0, result.stderr
    assert "MLflow logging failed" not in result.stderr
    metrics = read_metrics(project)

    runs = search_runs(mlflow_server)
    assert len(runs) == runs_before + 1, "one MLflow run per training run"
    run = runs[0]
    run_id = run["info"]["run_id"]
    assert run["info"]["run_name"] == RUN and run["info"]["status"] == "FINISHED"
    params = {item["key"]: item["value"] for item in run["data"]["params"]}
    assert params["run.dataset"] == "tiny" and params["run.model"] == "tiny_cnn"
    assert params["models.tiny_cnn.fit.learning_rate"] == "0.01"
    assert params["models.tiny_cnn.layers.3.Dropout.rate"] == "$dropout" and params["model.dropout"] == "0.25"
    assert params["train.seed"] == "0" and params["data.num_classes"] == "3"
    assert params["train.batchnorm_momentum"] == "0.5"  # the knobs as params.yaml names them
    assert params["models.tiny_cnn.layer_defaults.BatchNormalization.momentum"] == "$batchnorm_momentum"
    assert params["data.splits.train.count"] == "160"
    tags = {item["key"]: item["value"] for item in run["data"]["tags"]}
    assert tags["dataset"] == "tiny" and tags["model"] == "tiny_cnn" and tags["run"] == RUN
    assert tags["model_sha256"] == file_sha256(output_paths(project)[0])
    assert tags["git_commit"] == commit and tags["dvc_exp_name"] == "dusty-mast"

    for key in ("train_accuracy", "val_accuracy", "train_loss", "val_loss"):
        history = api(mlflow_server, "metrics/get-history", run_id=run_id, metric_key=key)["metrics"]
        assert len(history) == metrics["epochs_run"]
        assert sorted(point["step"] for point in history) == list(range(1, metrics["epochs_run"] + 1))
    logged = {item["key"]: item["value"] for item in run["data"]["metrics"]}
    assert logged["best_val_accuracy"] == pytest.approx(metrics["val_accuracy"])
    assert logged["epochs_run"] == metrics["epochs_run"]

    artifacts = {item["path"] for item in api(mlflow_server, "artifacts/list", run_id=run_id)["files"]}
    assert {"learning_curve.png", "model_summary.txt"} <= artifacts
    # MLflow 3 logs a model as a LoggedModel that the run lists among its outputs.
    run_outputs = api(mlflow_server, "runs/get", run_id=run_id)["run"]["outputs"]["model_outputs"]
    model_id = run_outputs[0]["model_id"]
    model = api(mlflow_server, f"logged-models/{model_id}")["model"]
    assert model["info"]["source_run_id"] == run_id and model["info"]["name"] == "model"
    files = {item["path"] for item in api(mlflow_server, f"logged-models/{model_id}/artifacts/directories")["files"]}
    assert {"MLmodel", "data", "requirements.txt"} <= files


@pytest.mark.slow
def test_training_completes_when_the_server_is_down_and_relog_recovers(tmp_path: Path, mlflow_server: str) -> None:
    project = make_project(tmp_path / "project")
    started = time.monotonic()
    result = run_stage("stages.train", RUN, cwd=project, env=train_env(f"http://127.0.0.1:{free_port()}"))
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 120, "an unreachable server must not stall the stage"
    assert all(path.is_file() for path in output_paths(project))
    output = result.stdout + result.stderr
    assert output.count("warning: MLflow logging failed") == 1
    assert f"python -m overfit_first.tracking relog {RUN}" in result.stderr
    assert "Traceback" not in output

    # The documented recovery: log the finished run from its files once a server is back.
    runs_before = len(search_runs(mlflow_server))
    relog = run_stage("overfit_first.tracking", "relog", RUN, cwd=project, env=train_env(mlflow_server))
    assert relog.returncode == 0, relog.stderr
    runs = search_runs(mlflow_server)
    assert len(runs) == runs_before + 1
    history = api(mlflow_server, "metrics/get-history", run_id=runs[0]["info"]["run_id"],
                  metric_key="val_accuracy")["metrics"]
    assert len(history) == read_metrics(project)["epochs_run"]


@pytest.mark.slow
def test_default_store_is_the_original_repository_for_queued_experiments(tmp_path: Path) -> None:
    """`dvc exp run --queue` runs the stage in <repo>/.dvc/tmp/exps/<tmp>/: MLflow must still use <repo>."""
    repo = tmp_path / "repo"
    workspace = make_project(repo / ".dvc" / "tmp" / "exps" / "tmpab12cd")
    result = run_stage("stages.train", RUN, cwd=workspace, env=train_env())
    assert result.returncode == 0, result.stderr
    assert (repo / "mlflow.db").is_file() and not (workspace / "mlflow.db").exists()
    assert list((repo / "mlartifacts" / "tiny").glob("*/artifacts/learning_curve.png"))
    assert not (workspace / "mlruns").exists() and not (workspace / "mlartifacts").exists()


def test_repo_root_and_default_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert repo_root() == tmp_path.resolve()
    assert tracking_uri(repo_root()) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("DVC_ROOT", "/somewhere/repo")  # what DVC sets for stages, and queued ones
    assert repo_root() == Path("/somewhere/repo")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert tracking_uri(repo_root()) == "http://tracking:5000"
