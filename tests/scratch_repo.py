"""A scratch git + DVC repository holding the project's code, for the tests that run real `dvc` commands
(test_pipeline_dvc, test_data_curve_dvc, test_dvc_remote, test_seed_spread,
test_ladder_dvc, test_pipelines), and the tiny two-run pipeline they share (conftest's `tiny_pipeline`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from conftest import REPO
from data_fixtures import image_folder, isolated_env, tar_gz

CODE = ("dvc.yaml", "stages", "overfit_first", "profiles", ".gitignore", ".dvcignore")
UNFINISHED = ("Queued", "Running")
OVERFIT_RUN, SIMPLIFIED_RUN = "pets-tiny_overfit", "pets-tiny_simplified"
SHARED = "shared"  # beside a scratch repository: its image folders, as ../shared is beside this one

# A CNN small enough to train in a second, using $dropout: `-S model.dropout=...` retrains it and nothing else.
# Its pooling window is a key of its own, for a ladder that fails on purpose (test_ladder_dvc).
TINY_SIMPLIFIED = {
    "role": "simplified",
    "layer_defaults": {"MaxPooling2D": {"pool_size": 2}},
    "layers": [
        {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu", "padding": "same"}},
        "MaxPooling2D",
        {"Dropout": {"rate": "$dropout"}},
        "Flatten",
        {"Dense": {"units": "$num_classes", "activation": "softmax"}},
    ],
    "fit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 8, "epochs": 2, "early_stopping": False},
}
# The same net without its dropout: the run that overfits, for the comparison, the ladder and the data-size curve.
TINY_OVERFIT = {
    **TINY_SIMPLIFIED,
    "role": "overfit",
    "layer_defaults": {},
    "layers": [layer for layer in TINY_SIMPLIFIED["layers"] if "Dropout" not in str(layer)],
}
# What `dvc exp run -S model.dropout=...` reruns in the tiny pipeline: the simplified run and what reads it.
# (`sources` checksums the image folder on every run; unchanged, it reruns no download.)
DROPOUT_STAGES = {"sources", "train@pets-tiny_simplified", "evaluate@pets-tiny_simplified", "plot@pets", "report"}


def dvc(repo: Path, env: dict[str, str], *args: str, timeout: float = 900) -> str:
    """`dvc <args>` in `repo` with this interpreter's DVC; its stdout and stderr, or a failed assertion."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def ran(output: str) -> set[str]:
    """The stages a `dvc repro` / `dvc exp run` output says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def new_repo(tmp_path: Path, params: dict, **env_extra: str) -> tuple[Path, dict[str, str]]:
    """tmp_path/repo: the project's code and `params`, `git init` + `dvc init`, nothing committed yet.

    Returns it with the environment to run `dvc` in: offline, the user's caches, stores and DVC settings
    out of reach, this interpreter's scripts first on PATH (the stages run `python -m ...`).
    """
    repo = tmp_path / "repo"
    for name in CODE:
        source, target = REPO / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")

    env = {key: value for key, value in os.environ.items() if not key.startswith(("OVERFIT_FIRST_", "DVC_", "MLFLOW_"))}
    env.update(isolated_env(tmp_path, OVERFIT_FIRST_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2", **env_extra))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    git(repo, "init", "-q")
    # HOME is a scratch directory: experiments commit, so the repository needs an identity of its own.
    git(repo, "config", "user.name", "overfit-first tests")
    git(repo, "config", "user.email", "tests@overfit-first.invalid")
    dvc(repo, env, "init", "-q")
    shutil.copytree(REPO / ".dvc" / "plots", repo / ".dvc" / "plots")  # the project's custom plot templates
    dvc(repo, env, "config", "core.analytics", "false")
    return repo, env


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def wait_for_queue(repo: Path, env: dict[str, str], timeout: float) -> str:
    """`dvc queue status` once no experiment is queued or running."""
    deadline = time.monotonic() + timeout
    while True:
        status = dvc(repo, env, "queue", "status")
        if not any(word in status for word in UNFINISHED):
            return status
        assert time.monotonic() < deadline, f"the queue did not finish in {timeout} s:\n{status}"
        time.sleep(3)


def failure_logs(repo: Path, env: dict[str, str], status: str) -> str:
    """The output of every failed experiment (`dvc queue logs <name>`), for the assertion message."""
    failed = [line.split()[1] for line in status.splitlines() if line.endswith("Failed")]
    return "".join(f"\n== {name}\n" + dvc(repo, env, "queue", "logs", name)[-3000:] for name in failed)


def tiny_pipeline(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """tmp_path/repo: two runs (TINY_OVERFIT, TINY_SIMPLIFIED) of 2 epochs on a tiny
    image-folder dataset, fully reproduced by `dvc repro` and committed; with the
    environment to run `dvc` in. The one reproduced pipeline the `dvc` tests share (conftest.tiny_pipeline).
    The archive is tmp_path/shared/pets.tar.gz, named in params.yaml relative to the repository."""
    image_folder(tmp_path / "folder", classes=("cat", "dog", "frog"), n_train=12, n_test=4, size=(8, 8))
    (tmp_path / SHARED).mkdir()
    tar_gz(tmp_path / "folder", tmp_path / SHARED / "pets.tar.gz")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    # Relative to the repository, as the README's CIFAR folders are (../shared/...): every queued or --temp
    # experiment of the tests reads it from the original repository (issue #11 row 6).
    params["data"].update(datasets=["pets"], mirror=None, image_folders={"pets": f"../{SHARED}/pets.tar.gz"})
    params["prepare"].update(valid_size=6, sample_size=None, pad_to=None)
    params["train"].update(subset_size=None)
    params["models"].update(tiny_overfit=TINY_OVERFIT, tiny_simplified=TINY_SIMPLIFIED)
    params["runs"] = {
        OVERFIT_RUN: {"dataset": "pets", "model": "tiny_overfit", "tuned_by": "train", "epochs": 2},
        SIMPLIFIED_RUN: {"dataset": "pets", "model": "tiny_simplified", "tuned_by": "model.dropout", "epochs": 2},
    }
    repo, env = new_repo(tmp_path, params)
    first = dvc(repo, env, "repro")
    trained = {f"train@{run}" for run in params["runs"]}
    assert trained | {f"evaluate@{OVERFIT_RUN}", "plot@pets", "report"} <= ran(first), first
    assert "oneDNN" not in first and "absl::InitializeLog" not in first, "TensorFlow's native lines (native_logs)"
    commit(repo, "baseline")
    return repo, env


@contextlib.contextmanager
def queue_copy(pipeline: tuple[Path, dict[str, str]], target: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A copy of a reproduced scratch repository (conftest.tiny_pipeline) for experiments run by DVC's queue, whose
    workers are stopped afterwards whatever the test did."""
    origin, env = pipeline
    repo = copy_repo(origin, target)
    try:
        yield repo, env
    finally:
        subprocess.run(
            [sys.executable, "-m", "dvc", "queue", "stop"], cwd=repo, env=env, capture_output=True, timeout=300
        )


def sweep_command(repo: Path, env: dict[str, str], command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m overfit_first <command> <args>` (a ladder or a data-size curve) in `repo`, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "overfit_first", command, *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )


def copy_repo(source: Path, target: Path) -> Path:
    """A copy of a whole scratch repository, its git history, DVC cache and outputs included, with the folder of
    image folders beside it (a link to the original's) so that relative paths in params.yaml still resolve."""
    shutil.copytree(source, target, symlinks=True)
    shared = target.parent / SHARED
    if (source.parent / SHARED).is_dir() and not shared.exists():
        shared.symlink_to(source.parent / SHARED, target_is_directory=True)
    return target
