"""MLflow without a server and without training: a real SQLite store in tmp_path, the project's own functions
called in this process (the tests that save a Keras model, or run dvc, are in the slow tier). Every MLflow call
resolves against the one store the project configured (the registry too, wherever the process runs), no code path
leaves a run RUNNING or logs one model twice, and the Models tab names each logged model after its run."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow.entities import LoggedModelOutput
from mlflow.tracking._model_registry import utils as registry_utils
from mlflow.tracking._tracking_service import utils as tracking_utils

from overfit_first import metrics, tracking
from overfit_first.config import Run, validate
from overfit_first.data.splits import file_sha256
from overfit_first.errors import Interrupted
from overfit_first.metrics import EvalMetrics, TrainMetrics
from overfit_first.procedure.sweep import Step, Sweep

from conftest import default_stop_signals, stage_env
from data_fixtures import isolated_env
from helpers_train import DATASET, RUN, make_project, project_params


@pytest.fixture(autouse=True)
def default_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MLflow as a fresh process finds it: no store set by a variable or by an earlier call; whatever the test
    sets (mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI) is undone afterwards."""
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    yield
    if mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite store, made once: creating MLflow's tables takes seconds, copying the file milliseconds."""
    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def store_in(directory: Path, empty_store: Path) -> str:
    """A new store `directory`/mlflow.db (a copy of the empty one): its URI, as tracking.tracking_uri writes it."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_store, directory / "mlflow.db")
    return tracking.tracking_uri(directory)


def evaluated(verdict: str = "good fit") -> EvalMetrics:
    numbers = dict(
        train_accuracy=0.9,
        val_accuracy=0.8,
        train_loss=0.3,
        val_loss=0.4,
        trainable_params=100,
        total_params=100,
        epochs_run=5,
        best_epoch=3,
        seconds_per_epoch=1.0,
        train_images=100,
        train_accuracy_inference=0.9,
        val_accuracy_inference=0.8,
        test_accuracy=0.75,
        test_loss=1.0,
        gap=0.1,
        gap_test=0.15,
        gap_history=0.1,
        test_images=10,
    )
    return EvalMetrics(**numbers, verdict=verdict, recommendation="")


def logged_training(store: str, run: Run, artifacts: Path) -> str:
    """What the train stage leaves in the store for `run`'s model file: a FINISHED run tagged run and model_sha256,
    with a LoggedModel among its outputs (made by the store's client, as Model.log makes it); its id."""
    client = mlflow.MlflowClient(tracking_uri=store)
    experiment = tracking.ensure_experiment(client, tracking.experiment_name(run), store, artifacts)
    tags = {"run": run.name, "model": run.model, "model_sha256": file_sha256(run.model_path)}
    run_id = client.create_run(experiment, run_name=run.name, tags=tags).info.run_id
    model = client.create_logged_model(experiment, name=tracking.logged_model_name(run), source_run_id=run_id)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    client.set_terminated(run_id, "FINISHED")
    return run_id


def trained(project: Path, seed: int = 0) -> tuple[Run, dict[str, Any], Any]:
    """The train stage's outputs for the tiny run, from an untrained model (no training needed to log one): the
    run, its prepared data's summary and the model."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((32, 32, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]
    )
    run = validate(project_params()).run(RUN)
    run.model_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(run.model_path)
    numbers = dict(train_accuracy=0.9, val_accuracy=0.8, train_loss=0.3, val_loss=0.5, trainable_params=3075)
    numbers.update(total_params=3075, epochs_run=2, best_epoch=2, seconds_per_epoch=0.5, train_images=160)
    metrics.write(run.train_metrics_path, TrainMetrics(**numbers))
    rows = [
        {"epoch": epoch, "train_accuracy": 0.8, "val_accuracy": 0.7, "train_loss": 0.5, "val_loss": 0.6}
        for epoch in (1, 2)
    ]
    run.history_path.write_text(metrics.history_csv(rows), encoding="utf-8")
    summary = json.loads((project / "data" / "prepared" / DATASET / "summary.json").read_text(encoding="utf-8"))
    return run, summary, model


def strays(directory: Path) -> list[str]:
    return sorted(name for name in ("mlflow.db", "mlruns", "mlartifacts") if (directory / name).exists())


# ------------------------------------------------------------------------------------ one store, everywhere


def test_the_champion_registers_from_a_temporary_copy_of_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], empty_store: Path
) -> None:
    """`dvc exp run --temp` runs the plot stage in <repo>/.dvc/tmp/exps/standalone/<tmp>/ with DVC_ROOT=<repo>:
    the model logged to <repo>/mlflow.db is registered there, and the copy gets no store of its own."""
    repo = tmp_path / "repo"
    copy = make_project(repo / ".dvc" / "tmp" / "exps" / "standalone" / "tmpk3x9")
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(repo))
    run = validate(project_params()).run(RUN)
    run.model_path.parent.mkdir(parents=True)
    run.model_path.write_bytes(b"the trained model")
    store = store_in(repo, empty_store)
    run_id = logged_training(store, run, repo / "mlartifacts" / DATASET)

    assert tracking.register_recommended(DATASET, [run], {run.name: evaluated()})
    output = capsys.readouterr()
    assert "warning" not in output.err, output.err
    assert f"{tracking.registered_name(DATASET)} version 1, alias champion" in output.out
    version = mlflow.MlflowClient(store, registry_uri=store).get_model_version_by_alias(
        tracking.registered_name(DATASET), tracking.ALIAS
    )
    assert version.run_id == run_id and version.tags["run"] == RUN
    assert strays(copy) == [], "the temporary copy got a store of its own"


def test_no_stray_store_from_a_pipeline_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], empty_store: Path
) -> None:
    """A pipeline folder's stages (cifar/) run one level below the repository root, which holds the store: the
    registry and the links use <repo>/mlflow.db, and cifar/ gets none; so does a registry set apart for MLflow
    (MLFLOW_REGISTRY_URI): the project's store is one."""
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    folder = make_project(repo / "cifar")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{tmp_path / 'registry.db'}")
    run = validate(project_params()).run(RUN)
    run.model_path.parent.mkdir(parents=True)
    run.model_path.write_bytes(b"the trained model")
    assert tracking.repo_root() == repo.resolve()
    store = store_in(repo.resolve(), empty_store)
    logged_training(store, run, repo / "mlartifacts" / DATASET)

    assert tracking.register_recommended(DATASET, [run], {run.name: evaluated()})
    tracking.links(store, tracking.UI_URL)
    output = capsys.readouterr()
    assert "warning" not in output.err, output.err
    assert f"overfit-first/{DATASET}: {tracking.UI_URL}/#/experiments/" in output.out
    assert strays(folder) == [], "the pipeline folder got a store of its own"
    assert not (tmp_path / "registry.db").exists()
    version = mlflow.MlflowClient(store, registry_uri=store).get_model_version_by_alias(
        tracking.registered_name(DATASET), tracking.ALIAS
    )
    assert version.tags["run"] == RUN


# ------------------------------------------------------------------------------- no run RUNNING, none twice


@pytest.mark.slow  # imports TensorFlow (keras) to save and log a model; trains nothing
def test_relog_twice_logs_the_model_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], empty_store: Path
) -> None:
    """`relog <run>` again names the FINISHED run that holds this very model file and logs nothing; a retrained
    model (another file) is logged."""
    project = make_project(tmp_path / "project")
    monkeypatch.chdir(project)
    store = store_in(project, empty_store)
    run, _, _ = trained(project)
    client = mlflow.MlflowClient(store)

    def finished() -> list[Any]:
        experiment = client.get_experiment_by_name(tracking.experiment_name(run))
        return client.search_runs([experiment.experiment_id], f"tags.run = '{RUN}' and attributes.status = 'FINISHED'")

    tracking.relog(RUN)
    [first] = finished()
    assert f"{RUN}: logged to MLflow run {first.info.run_id}" in capsys.readouterr().out
    tracking.relog(RUN)
    assert [found.info.run_id for found in finished()] == [first.info.run_id]
    assert (
        f"{RUN}: already logged to MLflow run {first.info.run_id} (FINISHED) in experiment overfit-first/{DATASET}"
    ) in capsys.readouterr().out
    assert len(client.search_logged_models([first.info.experiment_id])) == 1

    trained(project, seed=1)  # retrained: another model file, another run
    tracking.relog(RUN)
    assert len(finished()) == 2 and "already logged" not in capsys.readouterr().out


def test_a_run_stopped_before_it_became_active_still_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path
) -> None:
    """RunLog.open creates the run, then starts it: stopped in between (Ctrl-C in `relog`, a store that fails),
    the run was not active, and ending the active run left it RUNNING; it ends as the caller says."""
    project = make_project(tmp_path / "project")
    monkeypatch.chdir(project)
    store = store_in(project, empty_store)
    run = validate(project_params()).run(RUN)
    log = tracking.RunLog(run, {}, store, project, np.zeros((1, 32, 32, 1), np.uint8))
    client = mlflow.MlflowClient(store)
    experiment = tracking.ensure_experiment(client, tracking.experiment_name(run), store, project / "mlartifacts")
    log.run_id = client.create_run(experiment, run_name=run.name, tags=tracking.run_tags(run)).info.run_id
    assert mlflow.active_run() is None
    log.end("KILLED")
    assert client.get_run(log.run_id).info.status == "KILLED"


def dead_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_stopped_sweep_ends_its_runs_and_collect_ends_what_a_killed_one_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], empty_store: Path
) -> None:
    """A stop signal while a sweep's runs are open ends them KILLED (SweepGuard: what the ladder and the data-size
    curve run in). What a sweep killed outright left RUNNING (SIGKILL, or an older version of the project) is ended
    KILLED by --collect, whether it has experiments to collect (finish_sweep) or not (end_abandoned_sweep); the
    runs of a sweep whose process is alive are left to it."""
    project = make_project(tmp_path / "project")
    monkeypatch.chdir(project)
    store = store_in(project, empty_store)
    client = mlflow.MlflowClient(store)
    run = validate(project_params()).run(RUN)
    job = Sweep("drop", "model.dropout", [Step("0.0", 0.0, 0.0), Step("0.2", 0.2, 0.2)], None, [run], "ladder")

    def status(runs: tracking.SweepRuns) -> list[str]:
        return [client.get_run(run_id).info.status for run_id in (runs.parent, *runs.children.values())]

    with pytest.raises(Interrupted), tracking.SweepGuard() as guard:
        guard.runs = tracking.start_sweep(job, job.points())
        raise Interrupted(signal.SIGTERM)
    stopped = tracking.find_sweep(job, job.points())
    assert stopped is not None and status(stopped) == ["KILLED"] * 3
    assert f"MLflow: sweep drop: 3 run(s) ended KILLED (parent {stopped.parent})" in capsys.readouterr().err

    time.sleep(0.01)  # start times (ms) tell the attempts apart: the newest parent is the one --collect completes
    killed = tracking.start_sweep(job, job.points())  # then SIGKILL: its process is gone
    assert killed is not None
    for run_id in (killed.parent, *killed.children.values()):
        client.set_tag(run_id, "pid", str(dead_pid()))
    experiment = client.get_experiment_by_name(tracking.experiment_name(run)).experiment_id
    legacy = client.create_run(experiment, run_name="drop", tags={"sweep": "drop"}).info.run_id  # no host, pid
    time.sleep(0.01)
    live = tracking.start_sweep(job, job.points())  # this process: alive
    assert live is not None

    tracking.end_abandoned_sweep(job)  # --collect with no experiment to collect
    assert status(killed) == ["KILLED"] * 3 and client.get_run(legacy).info.status == "KILLED"
    assert status(live) == ["RUNNING"] * 3
    assert "MLflow: sweep drop: 4 run(s) left RUNNING by a stopped process ended KILLED" in capsys.readouterr().out

    for run_id in (killed.parent, *killed.children.values()):  # as the killed sweep left them
        client.update_run(run_id, status="RUNNING")
    tracking.finish_sweep(tracking.find_sweep(job, job.points()), {}, {}, None, {})  # --collect
    assert status(live) == ["FINISHED", "FAILED", "FAILED"]  # no step had results
    assert status(killed) == ["KILLED"] * 3
    running = client.search_runs([experiment], "tags.sweep = 'drop' and attributes.status = 'RUNNING'")
    assert not running, [found.info.run_name for found in running]


# The least DVC pipeline the ladder can queue `evaluate@<run>` in: a stage per run that depends on model.dropout.
DVC_YAML = """stages:
  evaluate:
    foreach: ${runs}
    do:
      cmd: "true"
      params: [model.dropout]
"""


@pytest.mark.slow  # real git and dvc; queues an experiment, runs none
def test_sigterm_while_a_ladder_queues_ends_its_runs_killed(tmp_path: Path, empty_store: Path) -> None:
    repo = make_project(tmp_path / "repo")
    (repo / "dvc.yaml").write_text(DVC_YAML, encoding="utf-8")
    (repo / ".gitignore").write_text("/mlflow.db*\n/mlartifacts\n", encoding="utf-8")
    env = {key: value for key, value in stage_env().items() if not key.startswith(("DVC_", "MLFLOW_"))}
    env.update(isolated_env(tmp_path), PYTHONUNBUFFERED="1", DVC_NO_ANALYTICS="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.name", "tests"],
        ["git", "config", "user.email", "tests@overfit-first.invalid"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "scratch"],
    ):
        subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True)
    store = store_in(repo, empty_store)

    ladder = subprocess.Popen(
        [sys.executable, "-m", "overfit_first", "ladder", "drop", "--values", "0.0", "0.2"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_stop_signals,
    )
    assert ladder.stdout is not None
    while not (line := ladder.stdout.readline()).startswith("queue drop-0.0:"):
        assert line, ladder.communicate()
    ladder.send_signal(signal.SIGTERM)
    _, stderr = ladder.communicate(timeout=300)
    assert ladder.returncode == 128 + signal.SIGTERM, stderr
    assert "MLflow: sweep drop: 3 run(s) ended KILLED" in stderr, stderr

    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name(f"overfit-first/{DATASET}").experiment_id
    runs = client.search_runs([experiment], "tags.sweep = 'drop'")
    assert sorted(found.info.run_name for found in runs) == ["drop", "drop-0.0", "drop-0.2"]
    assert {found.info.status for found in runs} == {"KILLED"}


# ------------------------------------------------------------------------------------- the Models tab, the view


@pytest.mark.slow  # imports TensorFlow (keras) to save and log a model; trains nothing
def test_each_logged_model_is_named_after_its_run_with_its_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], empty_store: Path
) -> None:
    """The experiment's Models tab lists logged models by name: `tiny-tiny_cnn`, not `model`, with the run's params
    and tags and the best epoch's metrics linked; the experiment is tagged for the model-training view."""
    project = make_project(tmp_path / "project")
    monkeypatch.chdir(project)
    store = store_in(project, empty_store)
    run, summary, model = trained(project)
    assert tracking.log_run(run, summary, model)

    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name(tracking.experiment_name(run))
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    [logged] = client.search_logged_models([experiment.experiment_id])
    assert logged.name == RUN
    assert logged.params["run.model"] == "tiny_cnn" and logged.params["model.dropout"] == "0.25"
    assert logged.params["train.dtype_policy"] == "float32" and logged.params["data.splits.train.count"] == "160"
    assert logged.tags["run"] == RUN and logged.tags["role"] == "other"
    assert {"best_val_accuracy", "total_params"} <= {metric.key for metric in logged.metrics}
    # MLflow refuses / : . % " ' in a model name: a run of an image folder named `my.pets` still logs.
    assert tracking.logged_model_name(dataclasses.replace(run, name="my.pets-cnn")) == "my_pets-cnn"

    tracking.links(store, tracking.UI_URL)
    printed = capsys.readouterr().out
    assert f"overfit-first/{DATASET}: {tracking.UI_URL}/#/experiments/{experiment.experiment_id}/runs?" in printed
    assert "set to 'Model training' once in this browser" in printed


# A process that creates the project's store, when every process starts together (a file appears).
CREATE_STORE = """
import pathlib, sys, time
from mlflow import MlflowClient
from overfit_first import tracking

uri, go, name = sys.argv[1:]
while not pathlib.Path(go).exists():
    time.sleep(0.01)
with tracking.store_lock(uri):
    MlflowClient(uri).create_experiment(name)
"""


@pytest.mark.slow  # two processes importing MLflow
def test_processes_that_find_no_store_take_turns_creating_it(tmp_path: Path) -> None:
    """Parallel queued experiments (`dvc queue start -j 2`, test_data_curve_dvc) that find no mlflow.db both try to
    create its tables; tracking.store_lock makes them take turns, and both log."""
    uri, go = tracking.tracking_uri(tmp_path), tmp_path / "go"
    names = ("first", "second")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_STORE, uri, str(go), name],
            env=stage_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    time.sleep(1)
    go.touch()
    errors = [process.communicate(timeout=300)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], errors
    assert {experiment.name for experiment in mlflow.MlflowClient(uri).search_experiments()} >= set(names)
