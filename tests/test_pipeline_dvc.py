"""The real `dvc repro` of the data stages in a temporary git repository: outputs, no-op reruns, and
reruns of exactly what a changed parameter affects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from data_fixtures import image_folder, tar_gz
from scratch_repo import commit, dvc, new_repo, ran

pytestmark = pytest.mark.slow  # real dvc, git, MLflow or a browser in every test

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def pipeline_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A git+DVC repository with the project's code and params, offline, with two datasets: the embedded
    Fashion-MNIST (Debian's copy, the real official files) and a tiny image-folder archive."""
    if not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{DEBIAN_FASHION} is missing: apt-get install dataset-fashion-mnist (scripts/setup.sh does)")
    image_folder(tmp_path / "folder", classes=("cat", "dog"), n_train=6, n_test=2, size=(8, 8))
    archive = tar_gz(tmp_path / "folder", tmp_path / "tiny_folder.tar.gz")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(
        datasets=["fashion_mnist", "tiny_folder"], mirror=None, image_folders={"tiny_folder": str(archive)}
    )
    params["prepare"].update(valid_size=4, sample_size=None, pad_to=32)
    repo, env = new_repo(tmp_path, params, OVERFIT_FIRST_SYSTEM_DATASETS=str(DEBIAN_FASHION.parent))
    commit(repo, "pipeline")
    return repo, env


@pytest.mark.slow
def test_data_stages_repro_then_noop_then_only_what_changed(pipeline_repo: tuple[Path, dict[str, str]]) -> None:
    repo, env = pipeline_repo
    first = dvc(repo, env, "repro", "prepare")
    assert ran(first) == {
        "sources",
        "download@fashion_mnist",
        "download@tiny_folder",
        "prepare@fashion_mnist",
        "prepare@tiny_folder",
    }
    summary = yaml.safe_load((repo / "data/prepared/fashion_mnist/summary.json").read_text())
    assert summary["image_shape"] == [32, 32, 1]
    assert summary["splits"]["valid"]["count"] == 4 and summary["splits"]["train"]["count"] == 60_000 - 4
    assert (repo / "data/prepared/tiny_folder/summary.json").is_file()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert {"download@fashion_mnist", "prepare@tiny_folder"} <= set(lock["stages"])

    # Nothing changed: nothing runs but `sources`, which checksums the image folder on every run.
    second = dvc(repo, env, "repro", "prepare")
    assert ran(second) == {"sources"}
    assert "didn't change, skipping" in second

    # A prepare param changed: prepare reruns for every dataset, download does not.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prepare"]["valid_size"] = 6
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc(repo, env, "repro", "prepare")
    assert ran(third) == {"sources", "prepare@fashion_mnist", "prepare@tiny_folder"}
    summary = yaml.safe_load((repo / "data/prepared/fashion_mnist/summary.json").read_text())
    assert summary["splits"]["valid"]["count"] == 6

    # A bad param stops `dvc repro` in `sources`, and leaves the committed outputs as they were: with the
    # param restored, `dvc status` shows no output deleted (`sources` is persist: DVC does not empty it first).
    good = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(good.replace("dropout: 0.4", "dropout: 1.5"))
    failed = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "prepare"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert failed.returncode != 0 and "model.dropout = 1.5" in failed.stdout + failed.stderr
    (repo / "params.yaml").write_text(good)
    status = dvc(repo, env, "status", "--with-deps", "prepare")
    assert "deleted" not in status and "download@" not in status, status

    dag = dvc(repo, env, "dag")
    for stage in ("download@fashion_mnist", "prepare@tiny_folder", "train@fashion_mnist-cnn_overfit"):
        assert stage in dag
