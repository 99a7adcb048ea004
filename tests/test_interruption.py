"""Ctrl-C, SIGTERM and SIGHUP take one clean way out of every entry point (overfit_first.errors.run_stage):
the message says truthfully which outputs were written, and an MLflow run being logged ends as KILLED.

Real signals to real processes: a small script through run_stage for the mechanics, and the train stage
stopped while it logs to a real MLflow server for the whole story.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from overfit_first import atomic, layout

from conftest import REPO, default_stop_signals, run_stage, stage_env
from helpers_mlflow import api, relay_to, search_runs, tags, wait_for
from helpers_train import DATASET, MODEL, RUN, make_project, project_params, start_train, train_env

# Writes the files named on its command line (atomically), says "ready", then waits to be stopped; on the way
# out, a `finally` announces itself, takes a moment, and writes the names given with a leading "+", as a real
# cleanup would.
SCRIPT = textwrap.dedent("""
    import sys, time
    from overfit_first import atomic
    from overfit_first.errors import run_stage

    def main():
        for name in sys.argv[1:]:
            if not name.startswith("+"):
                atomic.write_text(name, "complete\\n")
        try:
            print("ready", flush=True)
            time.sleep(120)
        finally:
            print("cleaning up", flush=True)
            time.sleep(1)
            for name in sys.argv[1:]:
                if name.startswith("+"):
                    atomic.write_text(name[1:], "complete\\n")

    run_stage(main)
""")


def start_script(directory: Path, *outputs: str, ignore: signal.Signals | None = None) -> subprocess.Popen[str]:
    def ignore_signal() -> None:  # what `nohup` does for SIGHUP before it starts the command
        default_stop_signals()  # whatever the test runner inherited (a background job ignores SIGINT)
        if ignore is not None:
            signal.signal(ignore, signal.SIG_IGN)

    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *outputs],
        cwd=directory,
        env=stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore_signal,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n", process.communicate()
    return process


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda stop: stop.name)
def test_every_stop_signal_takes_the_clean_way_out(tmp_path: Path, stop: signal.Signals) -> None:
    process = start_script(tmp_path, "out/a.json", ".cache/state.json", "+cleanup.txt")
    process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + stop, stderr
    assert "cleaning up" in stdout, "the finally blocks ran"
    # The message lists the outputs written, cleanup.txt included (written on the way out), not the hidden state.
    assert stderr.strip() == (
        f"interrupted by {stop.name}: wrote out/a.json, cleanup.txt (each complete); no other output was written"
    )
    assert "Traceback" not in stderr


def test_the_message_says_so_when_nothing_was_written(tmp_path: Path) -> None:
    process = start_script(tmp_path)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    assert stderr.strip() == "interrupted by SIGTERM: no output was written"


def test_a_second_signal_does_not_cut_the_cleanup_short(tmp_path: Path) -> None:
    """CI cancellation sends SIGINT, then SIGTERM a few seconds later: the cleanup still completes."""
    process = start_script(tmp_path, "+cleanup.txt")
    process.send_signal(signal.SIGINT)
    assert process.stdout is not None and process.stdout.readline() == "cleaning up\n"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert (tmp_path / "cleanup.txt").read_text() == "complete\n"
    assert "interrupted by SIGINT: wrote cleanup.txt" in stderr


@pytest.mark.slow  # waits 1 s to see the process still running, 2.1 s
def test_a_signal_ignored_at_start_stays_ignored(tmp_path: Path) -> None:
    """`nohup cmd` ignores SIGHUP before cmd starts: a closed terminal must not stop it then."""
    process = start_script(tmp_path, ignore=signal.SIGHUP)
    process.send_signal(signal.SIGHUP)
    time.sleep(1)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 143


def test_written_outputs_are_those_still_holding_this_process_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "_replaced", {})
    monkeypatch.chdir(tmp_path)
    atomic.write_text("first.txt", "1")
    atomic.write_json("metrics/second.json", {"a": 1})
    atomic.write_text("first.txt", "written twice, listed once")
    atomic.write_text(".cache/train/run/history.json", "[]")  # working state, not an output
    with pytest.raises(RuntimeError), atomic.atomic_path("failed.txt") as tmp:
        tmp.write_text("never renamed into place")
        raise RuntimeError
    atomic.write_text("replaced_later.txt", "mine")
    (tmp_path / "other.txt").write_text("another writer's")
    os.replace(tmp_path / "other.txt", tmp_path / "replaced_later.txt")
    with atomic.atomic_path("directory") as tmp:
        tmp.mkdir()
        (tmp / "inner.txt").write_text("x")
    assert atomic.written_outputs() == [Path("first.txt"), Path("metrics/second.json"), Path("directory")]


# ---------------------------------------------------------------- the train stage, logging to a real server

OUTPUTS = ", ".join(
    str(path)
    for path in (
        layout.model_file(DATASET, MODEL),
        layout.train_metrics_file(DATASET, MODEL),
        layout.history_file(DATASET, MODEL),
    )
)
# Where the stage's MLflow logging is held: its first log-batch opens the run as training starts; the first
# logged-models request logs the model, after the stage wrote its outputs.
HOLDS = {"training": "/runs/log-batch", "logging the model": "/logged-models"}


def stop_while_logging(
    project: Path, server: str, stop: signal.Signals, hold: str
) -> tuple[subprocess.Popen[str], str]:
    """Start the train stage, stop it with `stop` once its MLflow request `hold` is on its way; its output."""
    with relay_to(server, hold=hold) as relay:
        process = start_train(project, train_env(relay.url, MLFLOW_HTTP_REQUEST_TIMEOUT="300"))
        wait_for(relay.held, process, f"the stage's first {hold} request")
        os.kill(process.pid, stop)
        output = process.communicate(timeout=120)[0]
    return process, output


def run_of(server: str, process: subprocess.Popen[str]) -> dict:
    """The MLflow run that process logged (tag pid)."""
    mine = [run for run in search_runs(server) if tags(run).get("pid") == str(process.pid)]
    assert len(mine) == 1, search_runs(server)
    return mine[0]


@pytest.mark.slow
@pytest.mark.parametrize("moment", HOLDS)
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=lambda stop: stop.name)
def test_train_stopped_while_logging_ends_its_run_as_killed(
    tmp_path: Path, mlflow_server: str, stop: signal.Signals, moment: str
) -> None:
    # Training long enough to be stopped in the middle of it; its logging thread is held meanwhile.
    project = make_project(tmp_path / "project", project_params(epochs=30 if moment == "training" else 3))
    process, output = stop_while_logging(project, mlflow_server, stop, HOLDS[moment])

    assert process.returncode == 128 + stop, output
    # Stopped in training, nothing was written; stopped while logging the model, the outputs are complete.
    written = (
        "no output was written"
        if moment == "training"
        else f"wrote {OUTPUTS} (each complete); no other output was written"
    )
    assert f"interrupted by {stop.name}: {written}" in output
    assert "Traceback" not in output
    run = run_of(mlflow_server, process)
    assert run["info"]["status"] == "KILLED" and int(run["info"]["end_time"]) > 0

    if stop == signal.SIGTERM:  # the rerun resumes (or, outputs written, retrains) and leaves none RUNNING
        rerun = run_stage("stages.train", RUN, cwd=project, env=train_env(mlflow_server))
        assert rerun.returncode == 0, rerun.stderr
        logged = rerun.stdout.split("logged to MLflow run ", 1)[1].split()[0]
        assert api(mlflow_server, "runs/get", run_id=logged)["run"]["info"]["status"] == "FINISHED"
        # Stopped in training, the rerun continues the very run (its id is kept beside the backup); stopped
        # after its outputs were written, it trains and logs anew.
        assert (logged == run["info"]["run_id"]) == (moment == "training")
        assert not [found for found in search_runs(mlflow_server) if found["info"]["status"] == "RUNNING"]
        # Keras's log (verbose=2) suits a log file too: whole lines, no in-place redraws.
        assert "\r" not in rerun.stdout + rerun.stderr


@pytest.mark.slow
def test_a_run_left_running_by_sigkill_is_ended_by_the_next_logging(tmp_path: Path, mlflow_server: str) -> None:
    """SIGKILL cannot be handled: the next logging of the same run on this machine ends the orphan as KILLED."""
    project = make_project(tmp_path / "project")
    process, _ = stop_while_logging(project, mlflow_server, signal.SIGKILL, HOLDS["logging the model"])
    assert process.returncode == -signal.SIGKILL
    assert run_of(mlflow_server, process)["info"]["status"] == "RUNNING"

    rerun = run_stage("overfit_first.tracking", "relog", RUN, cwd=project, env=train_env(mlflow_server))
    assert rerun.returncode == 0, rerun.stderr
    orphan = run_of(mlflow_server, process)
    assert orphan["info"]["status"] == "KILLED" and int(orphan["info"]["end_time"]) > 0
    assert f"MLflow run {orphan['info']['run_id']}, left RUNNING by process {process.pid}" in rerun.stdout
    assert not [run for run in search_runs(mlflow_server) if run["info"]["status"] == "RUNNING"]


# Stops itself with SIGTERM at random instants while tf.data builds iterators (TensorFlow's C++ calls back into
# its own Python there: the window where an exception aborted the process with "free(): invalid next size"), and
# prints where each stop was raised.
INSIDE_TENSORFLOW = textwrap.dedent("""
    import os, random, signal, threading
    import tensorflow as tf
    from overfit_first import errors

    dataset = tf.data.Dataset.range(64).shuffle(64, seed=0).batch(4).prefetch(2)
    random.seed(0)
    for _ in range(STOPS):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        errors.handle_stop_signals()
        try:  # the timer may fire before start() returns, on a loaded machine
            threading.Timer(random.uniform(0, 0.02), os.kill, (os.getpid(), signal.SIGTERM)).start()
            while True:
                for _ in dataset:
                    pass
        except errors.Interrupted as stop:
            trace = stop.__traceback__
            while trace.tb_next is not None:
                trace = trace.tb_next
            print(trace.tb_frame.f_code.co_filename, flush=True)
""")


@pytest.mark.slow  # imports TensorFlow
def test_a_stop_signal_is_never_raised_inside_tensorflow(tmp_path: Path) -> None:
    stops = 60
    script = INSIDE_TENSORFLOW.replace("STOPS", str(stops))
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=default_stop_signals,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    raised_in = result.stdout.splitlines()
    assert len(raised_in) == stops, result.stdout + result.stderr
    tensorflow = str(Path(__import__("importlib").util.find_spec("tensorflow").origin).parent)
    assert not [path for path in raised_in if path.startswith(tensorflow)], raised_in


def loaded(process: subprocess.Popen[str], library: str) -> None:
    """Wait until `process` has mapped a shared library whose path contains `library` (it is importing it)."""
    deadline = time.monotonic() + 60
    while library not in Path(f"/proc/{process.pid}/maps").read_text(encoding="utf-8"):
        assert process.poll() is None and time.monotonic() < deadline, f"{library} never loaded"
        time.sleep(0.01)


@pytest.mark.slow  # starts to import TensorFlow or MLflow
@pytest.mark.parametrize(
    ("command", "library"),
    [
        (["-m", "stages.train", "--help"], "_pywrap_tensorflow"),
        (["-m", "overfit_first", "tracking", "--help"], "pandas"),
    ],
    ids=["stage", "index"],
)
def test_a_stop_while_the_libraries_load_takes_the_clean_way_out(command: list[str], library: str) -> None:
    """Ctrl-C while a stage loads TensorFlow, or a command run by the index loads MLflow."""
    process = subprocess.Popen(
        [sys.executable, *command],
        cwd=REPO,
        env=stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_stop_signals,
    )
    loaded(process, library)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, stdout + stderr
    assert stderr.strip().splitlines()[-1] == "interrupted by SIGINT: no output was written", stderr
    assert "Traceback" not in stderr


def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path: Path) -> None:
    """`python -m overfit_first preview ... | head -1`: the pipe closes before the command writes."""
    read, write = os.pipe()
    os.close(read)
    result = subprocess.run(
        [sys.executable, "-c", "from overfit_first.errors import run_stage\nrun_stage(lambda: print('x' * 100000))"],
        cwd=tmp_path,
        env=stage_env(),
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    os.close(write)
    assert result.returncode == 1 and result.stderr == "", result.stderr
