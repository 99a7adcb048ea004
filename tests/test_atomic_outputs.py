"""A stage killed (SIGKILL) at any point never leaves an output that looks complete.

Each stage is started, killed after a random delay within its normal run time, and every output it
declares is then either absent or complete: it loads, and it holds what a finished run writes.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from overfit_first import atomic, layout
from overfit_first.data import raw
from overfit_first.data.splits import Split, load_split

from conftest import stage_env
from data_fixtures import image_folder, project, tar_gz
from helpers_train import DATASET, MODEL, RUN, make_project

KILLS_PER_STAGE = 4


def _run_and_kill(command: list[str], cwd: Path, delay: float) -> None:
    process = subprocess.Popen(command, cwd=cwd, env=stage_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


def _timed_run(command: list[str], cwd: Path) -> float:
    start = time.monotonic()
    subprocess.run(command, cwd=cwd, env=stage_env(), check=True, capture_output=True, timeout=300)
    return time.monotonic() - start


def _kill_at_random_points(
    command: list[str], cwd: Path, outputs: list[Path], check_complete: Callable[[], None], seed: int
) -> None:
    """Measure a full run, then kill fresh runs at random points and check what each left."""
    duration = _timed_run(command, cwd)
    check_complete()
    rng = random.Random(seed)
    for _ in range(KILLS_PER_STAGE):
        for output in outputs:  # each try starts from nothing, as a first `dvc repro` would
            if output.is_dir():
                shutil.rmtree(output)
            elif output.exists():
                output.unlink()
        _run_and_kill(command, cwd, rng.uniform(0.2, duration))
        if all(output.exists() for output in outputs):
            check_complete()
        for output in outputs:
            assert not output.exists() or output.stat().st_size > 0, f"{output} exists but is empty"
        leftovers = [
            path.name
            for output in outputs
            for path in output.parent.glob(f"{output.name}*")
            if path.name != output.name
        ]
        assert not leftovers, f"files that could pass for outputs: {leftovers}"
    # The next complete run deletes whatever temporary directories the killed ones left beside the outputs.
    _timed_run(command, cwd)
    check_complete()
    hidden = [path.name for output in outputs for path in output.parent.glob(f".{output.name}.*.tmp")]
    assert not hidden, f"temporary directories left behind: {hidden}"


def test_a_write_deletes_what_a_killed_writer_of_the_same_output_left(tmp_path: Path) -> None:
    stale = tmp_path / ".metrics.json.k1ll3d.tmp"
    (stale / "metrics.json").parent.mkdir()
    (stale / "metrics.json").write_text('{"half": ')
    other = tmp_path / ".other.json.k1ll3d.tmp"  # another output's: not this writer's to delete
    other.mkdir()
    atomic.write_json(tmp_path / "metrics.json", {"test_accuracy": 0.8})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"test_accuracy": 0.8}
    assert sorted(path.name for path in tmp_path.iterdir()) == [".other.json.k1ll3d.tmp", "metrics.json"]


@pytest.mark.slow
def test_prepare_killed_anywhere_leaves_all_or_nothing(tmp_path: Path) -> None:
    directory = project(tmp_path, prepare={"valid_size": 500, "pad_to": 32})
    x = np.random.default_rng(0).integers(0, 256, (6000, 28, 28, 1), dtype=np.uint8)
    split = Split(x=x, y=np.arange(6000) % 10)
    names = [f"c{index}" for index in range(10)]
    raw.write(
        directory / "data/raw/tiny",
        raw.RawData(split, split, names),
        {"dataset": "tiny", "source": "test", "class_names": names, "superclass_names": None, "files": []},
    )
    out = directory / "data/prepared/tiny"

    def complete() -> None:
        for name in ("train", "valid", "test"):
            load_split(out, name)  # checks every file against summary.json

    _kill_at_random_points([sys.executable, "-m", "stages.prepare", "tiny"], directory, [out], complete, seed=1)


@pytest.mark.slow
def test_download_killed_anywhere_leaves_all_or_nothing(tmp_path: Path) -> None:
    image_folder(tmp_path / "folder", classes=("cat", "dog"), n_train=150, n_test=30, size=(16, 16))
    archive = tar_gz(tmp_path / "folder", tmp_path / "pets.tar.gz")
    directory = project(tmp_path, data={"datasets": ["fashion_mnist", "pets"], "image_folders": {"pets": str(archive)}})
    out = directory / "data/raw/pets"

    def complete() -> None:
        data, meta = raw.load(out)
        assert len(data.train.y) == 300 and len(data.test.y) == 60 and meta["class_names"] == ["cat", "dog"]

    _kill_at_random_points([sys.executable, "-m", "stages.download", "pets"], directory, [out], complete, seed=2)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_killed_anywhere_leaves_no_output_that_looks_complete(tmp_path: Path) -> None:
    import keras

    directory = make_project(tmp_path / "project")
    outputs = [
        directory / layout.model_file(DATASET, MODEL),
        directory / layout.train_metrics_file(DATASET, MODEL),
        directory / layout.history_file(DATASET, MODEL),
    ]

    def complete() -> None:
        keras.saving.load_model(outputs[0])
        metrics = json.loads(outputs[1].read_text())
        rows = outputs[2].read_text().strip().splitlines()
        assert len(rows) == metrics["epochs_run"] + 1  # header + one line per epoch

    # The default MLflow store (mlflow.db in the scratch project) is written too: tracking is part of the run.
    _kill_at_random_points([sys.executable, "-m", "stages.train", RUN], directory, outputs, complete, seed=3)
