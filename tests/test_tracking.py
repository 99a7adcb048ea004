"""MLflow tracking against a real `mlflow server`, read back over its REST API: the train stage's live run (curves
growing while it trains, its datasets, system metrics, the model), a resumed training that continues its run,
a store that is down or hangs, and the logic that needs no server (links, dataset inputs, the bounded waits)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from overfit_first import tracking
from overfit_first.config import validate
from overfit_first.data.splits import file_sha256
from overfit_first.tracking import repo_root, tracking_uri

from conftest import free_port, run_stage
from helpers_mlflow import api, relay_to, search_runs, tags, wait_for
from helpers_train import (
    DATASET,
    RUN,
    make_project,
    output_paths,
    project_params,
    read_metrics,
    start_train,
    train_env,
)

SYSTEM_METRICS_EVERY_SECOND = {"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}  # tiny runs last seconds


def git_init(project: Path) -> str:
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "params.yaml"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tiny project"], cwd=project, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, check=True, capture_output=True, text=True
    ).stdout.strip()


def history(server: str, run_id: str, key: str = "val_accuracy") -> list[dict]:
    return api(server, "metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])


def watch_training(process: subprocess.Popen[str], server: str) -> tuple[list[tuple[str, int]], str]:
    """Poll the server while `process` trains: (status, epochs logged) of its run, as often as it answers."""
    seen: list[tuple[str, int]] = []
    while process.poll() is None:
        mine = [run for run in search_runs(server) if tags(run).get("pid") == str(process.pid)]
        if mine:
            seen.append((mine[0]["info"]["status"], len(history(server, mine[0]["info"]["run_id"]))))
        time.sleep(0.2)
    return seen, process.communicate()[0]


@pytest.mark.slow
def test_the_run_is_live_while_training_and_complete_after(tmp_path: Path, mlflow_server: str) -> None:
    epochs = 20
    project = make_project(tmp_path / "project", project_params(epochs=epochs))
    commit = git_init(project)
    runs_before = len(search_runs(mlflow_server))
    process = start_train(project, train_env(mlflow_server, DVC_EXP_NAME="dusty-mast", **SYSTEM_METRICS_EVERY_SECOND))
    seen, output = watch_training(process, mlflow_server)
    assert process.returncode == 0, output
    assert "MLflow logging failed" not in output
    # Live: the UI saw the run RUNNING with some epochs logged and more to come.
    assert any(status == "RUNNING" and 0 < logged < epochs for status, logged in seen), seen
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
    run_tags = tags(run)
    assert run_tags["dataset"] == "tiny" and run_tags["model"] == "tiny_cnn" and run_tags["run"] == RUN
    assert run_tags["model_sha256"] == file_sha256(output_paths(project)[0])
    assert run_tags["git_commit"] == commit and run_tags["dvc_exp_name"] == "dusty-mast"
    assert run_tags["pid"] == str(process.pid)

    for key in ("train_accuracy", "val_accuracy", "train_loss", "val_loss"):
        points = history(mlflow_server, run_id, key)
        assert sorted(point["step"] for point in points) == list(range(1, metrics["epochs_run"] + 1))
    # Each epoch logged as it ended, the run open from the start of training to after it: its duration is the
    # training's (the per-epoch seconds it reports), not the logging's.
    stamps = [int(point["timestamp"]) for point in sorted(history(mlflow_server, run_id), key=lambda p: p["step"])]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), stamps
    start, end = int(run["info"]["start_time"]), int(run["info"]["end_time"])
    assert start <= stamps[0] and stamps[-1] <= end
    assert end - start >= 1000 * metrics["seconds_per_epoch"] * metrics["epochs_run"] * 0.9
    logged = {item["key"]: item["value"] for item in run["data"]["metrics"]}
    assert logged["best_val_accuracy"] == pytest.approx(metrics["val_accuracy"])
    assert logged["epochs_run"] == metrics["epochs_run"]
    # System metrics, sampled by MLflow itself.
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(logged)

    # Datasets: the training and validation inputs, digest = the prepared split's checksum.
    summary = json.loads((project / "data" / "prepared" / DATASET / "summary.json").read_text())
    inputs = {item["tags"][0]["value"]: item["dataset"] for item in run["inputs"]["dataset_inputs"]}
    assert set(inputs) == {"training", "validation"}
    for context, split in (("training", "train"), ("validation", "valid")):
        dataset = inputs[context]
        assert dataset["name"] == f"tiny-{split}"
        assert dataset["digest"] == summary["splits"][split]["sha256"][:10]
        profile = json.loads(dataset["profile"])
        assert profile["images"] == summary["splits"][split]["count"] and profile["image_shape"] == "32x32x1"

    artifacts = {item["path"] for item in api(mlflow_server, "artifacts/list", run_id=run_id)["files"]}
    assert {"learning_curve.png", "model_summary.txt"} <= artifacts
    # MLflow 3 logs a model as a LoggedModel that the run lists among its outputs.
    run_outputs = api(mlflow_server, "runs/get", run_id=run_id)["run"]["outputs"]["model_outputs"]
    model_id = run_outputs[0]["model_id"]
    model = api(mlflow_server, f"logged-models/{model_id}")["model"]
    assert model["info"]["source_run_id"] == run_id and model["info"]["name"] == RUN  # the Models tab's name
    model_params = {item["key"]: item["value"] for item in model["data"]["params"]}
    assert model_params["run.model"] == "tiny_cnn" and model_params["model.dropout"] == "0.25"
    files = {item["path"] for item in api(mlflow_server, f"logged-models/{model_id}/artifacts/directories")["files"]}
    assert {"MLmodel", "data", "requirements.txt", "input_example.json"} <= files

    # The experiment is tagged for the model-training view, and the stage's link opens that view.
    experiment = api(mlflow_server, "experiments/get-by-name", experiment_name=f"overfit-first/{DATASET}")
    experiment_tags = {item["key"]: item["value"] for item in experiment["experiment"]["tags"]}
    assert experiment_tags["mlflow.experimentKind"] == "custom_model_development"
    link = f"{mlflow_server}/#/experiments/{experiment['experiment']['experiment_id']}/runs/{run_id}?workflowType="
    assert f"{link}machine_learning" in output


@pytest.mark.slow
def test_a_resumed_training_continues_its_mlflow_run(tmp_path: Path, mlflow_server: str) -> None:
    epochs = 6
    project = make_project(tmp_path / "project", project_params(epochs=epochs))
    env = train_env(mlflow_server)
    process = start_train(project, env)
    seen = []
    assert process.stdout is not None
    for line in process.stdout:  # Keras prints "Epoch 4/6" once epochs 1 to 3 are backed up
        seen.append(line)
        if line.startswith(f"Epoch 4/{epochs}"):
            process.terminate()
            break
    output = "".join(seen) + process.communicate(timeout=120)[0]
    assert process.returncode == 143, output
    assert "its last completed epoch is backed up in" in output and "resumes from it" in output
    kept = json.loads((project / ".cache" / "train" / RUN / tracking.RUN_ID_FILE).read_text())
    run_id = kept["run_id"]
    assert api(mlflow_server, "runs/get", run_id=run_id)["run"]["info"]["status"] == "KILLED"
    assert {point["step"] for point in history(mlflow_server, run_id)} <= {1, 2, 3}

    runs_before = len(search_runs(mlflow_server))
    resumed = run_stage("stages.train", RUN, cwd=project, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the backup" in resumed.stdout and run_id in resumed.stdout
    assert len(search_runs(mlflow_server)) == runs_before, "the same MLflow run, not a new one"
    run = api(mlflow_server, "runs/get", run_id=run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    for key in ("val_accuracy", "train_loss"):
        assert sorted(point["step"] for point in history(mlflow_server, run_id, key)) == list(range(1, epochs + 1))
    assert tags(run)["model_sha256"] == file_sha256(output_paths(project)[0])


@pytest.mark.slow
def test_training_completes_when_the_server_is_down_and_relog_recovers(tmp_path: Path, mlflow_server: str) -> None:
    project = make_project(tmp_path / "project")
    # A store that refuses connections is given up on at once, not after the wait for a slow one: with that wait
    # at 10 minutes, a stage that waited for it would outlive the 120 s below (no timing assert: a loaded machine
    # only makes it slower, never wrong).
    process = start_train(project, train_env(f"http://127.0.0.1:{free_port()}", OVERFIT_FIRST_MLFLOW_WAIT="600"))
    assert process.stdout is not None
    lines = list(process.stdout)
    process.wait(timeout=120)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert "best epoch" in output, output
    assert all(path.is_file() for path in output_paths(project))
    assert output.count("warning: MLflow logging failed") == 1, output
    assert f"python -m overfit_first tracking relog {RUN}" in output
    assert "Traceback" not in output

    # The documented recovery: log the finished run from its files once a server is back.
    runs_before = len(search_runs(mlflow_server))
    relog = run_stage("overfit_first.tracking", "relog", RUN, cwd=project, env=train_env(mlflow_server))
    assert relog.returncode == 0, relog.stderr
    runs = search_runs(mlflow_server)
    assert len(runs) == runs_before + 1
    run = runs[0]
    assert run["info"]["status"] == "FINISHED" and tags(run)["relogged"] == "true"
    assert len(history(mlflow_server, run["info"]["run_id"])) == read_metrics(project)["epochs_run"]
    assert len(run["inputs"]["dataset_inputs"]) == 2


@pytest.mark.slow
def test_a_server_that_stops_answering_costs_the_wait_and_fails_the_run(tmp_path: Path, mlflow_server: str) -> None:
    """The server holds the first logging request for good: training goes on; at its end the stage waits
    OVERFIT_FIRST_MLFLOW_WAIT seconds, warns once and ends the run FAILED rather than leaving it RUNNING."""
    project = make_project(tmp_path / "project")
    with relay_to(mlflow_server, hold="/runs/log-batch") as relay:
        env = train_env(relay.url, MLFLOW_HTTP_REQUEST_TIMEOUT="300", OVERFIT_FIRST_MLFLOW_WAIT="3")
        process = start_train(project, env)
        wait_for(relay.held, process, "the stage's first log-batch request")
        assert process.stdout is not None
        lines = list(process.stdout)
        # The held request would answer after MLFLOW_HTTP_REQUEST_TIMEOUT, 300 s: ending within 120 s is the wait
        # of 3 s at work (no timing assert: a loaded machine only makes it slower, never wrong).
        process.wait(timeout=120)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert output.count("warning: MLflow logging failed (no answer within 3 s") == 1, output
    mine = [run for run in search_runs(mlflow_server) if tags(run).get("pid") == str(process.pid)]
    assert len(mine) == 1 and mine[0]["info"]["status"] == "FAILED"


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


# ------------------------------------------------------------------------------- without a server (fast)


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


def test_links_open_the_model_training_view() -> None:
    assert (
        tracking.ui_link("http://host:5000/", "3", "abc")
        == "http://host:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    assert (
        tracking.ui_link("sqlite:////repo/mlflow.db", "3")
        == "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning (`make mlflow-ui`)"
    )


def write_raw_meta(project: Path, origins: list[str], source: str = "Tiny, official files") -> None:
    directory = project / "data" / "raw" / DATASET
    directory.mkdir(parents=True, exist_ok=True)
    files = [{"name": origin.rsplit("/", 1)[-1], "checksum": "sha256:0", "origin": origin} for origin in origins]
    (directory / "meta.json").write_text(json.dumps({"dataset": DATASET, "source": source, "files": files}))


def test_dataset_inputs_name_the_data_by_its_checksum_and_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = project_params()
    params["train"]["subset_size"] = 90
    project = make_project(tmp_path / "project", params)
    monkeypatch.chdir(project)
    monkeypatch.delenv("OVERFIT_FIRST_MIRROR", raising=False)
    summary = json.loads((project / "data" / "prepared" / DATASET / "summary.json").read_text())
    run = validate(params).run(RUN)

    train = tracking.split_dataset(run, summary, "train")
    assert train.name == "tiny-train-90" and train.digest == summary["splits"]["train"]["sha256"][:10]
    assert train.profile["images"] == 90 and train.profile["split_images"] == 160
    assert train.profile["origin"] == "prepared data"  # no data/raw/tiny/meta.json here
    valid = tracking.split_dataset(run, summary, "valid").to_dict()
    assert valid["name"] == "tiny-valid" and valid["source_type"] == "local"
    assert json.loads(valid["schema"])["mlflow_tensorspec"]["features"]

    write_raw_meta(project, ["https://example.org/tiny/train.gz", "https://example.org/tiny/test.gz"])
    assert tracking.data_origin(DATASET) == ("official archive", "https://example.org/tiny/")
    assert tracking.split_dataset(run, summary, "valid").to_dict()["source_type"] == "http"
    monkeypatch.setenv("OVERFIT_FIRST_MIRROR", "https://example.org/tiny")
    assert tracking.data_origin(DATASET)[0] == "mirror"
    write_raw_meta(project, ["/usr/share/datasets/tiny/train.gz", "/usr/share/datasets/tiny/test.gz"])
    assert tracking.data_origin(DATASET) == ("local copy", "/usr/share/datasets/tiny")
    write_raw_meta(project, ["/data/pets.tar.gz"], source="image folder /data/pets.tar.gz")
    assert tracking.data_origin(DATASET) == ("image folder", "/data/pets.tar.gz")


def tiny_model() -> keras.Model:
    return keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])


def live_run_against(uri: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> tracking.LiveRun:
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    summary = json.loads((project / "data" / "prepared" / DATASET / "summary.json").read_text())
    live = tracking.LiveRun(validate(project_params()).run(RUN), summary, np.zeros((1, 32, 32, 1), np.uint8))
    live.callback.on_train_begin()
    live.callback.on_epoch_end(0, {"accuracy": 0.5, "val_accuracy": 0.5, "loss": 1.0, "val_loss": 1.0})
    return live


def test_a_store_that_is_down_costs_a_live_run_one_warning_and_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path / "project")
    monkeypatch.setenv("OVERFIT_FIRST_MLFLOW_WAIT", "600")  # a refused connection must not wait for it
    live = live_run_against(f"http://127.0.0.1:{free_port()}", project, monkeypatch)
    assert live.finish(tiny_model()) is False
    err = capsys.readouterr().err
    assert err.count("warning: MLflow logging failed") == 1 and "no answer within" not in err, err


@pytest.mark.timeout(120)  # a hang fails here; no timing assert (a loaded machine is slower, not wrong)
def test_a_store_that_never_answers_costs_the_bounded_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A socket that accepts connections and never answers: the calls hang in the logging thread only."""
    project = make_project(tmp_path / "project")
    monkeypatch.setenv("OVERFIT_FIRST_MLFLOW_WAIT", "1")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        live = live_run_against(f"http://127.0.0.1:{silent.getsockname()[1]}", project, monkeypatch)
        assert live.finish(tiny_model()) is False  # after the 1 s wait, not after the socket's silence
        live.abort("KILLED")  # what an interruption now would do: no second warning, no wait
    assert capsys.readouterr().err.count("warning: MLflow logging failed (no answer within 1 s") == 1
