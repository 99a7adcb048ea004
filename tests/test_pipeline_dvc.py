"""The real `dvc repro` of the data stages in a temporary git repository: outputs, no-op reruns, and
reruns of exactly what a changed parameter affects."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from data_fixtures import image_folder, isolated_env, tar_gz

CODE = ("dvc.yaml", "stages", "overfit_first", "profiles")
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def dvc(repo: Path, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture
def pipeline_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A git+DVC repository with the project's code and params, offline, with two datasets: the embedded
    Fashion-MNIST (Debian's copy, the real official files) and a tiny image-folder archive."""
    if not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{DEBIAN_FASHION} is missing: apt-get install dataset-fashion-mnist (scripts/setup.sh does)")
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in CODE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, repo / name)
    image_folder(tmp_path / "folder", classes=("cat", "dog"), n_train=6, n_test=2, size=(8, 8))
    archive = tar_gz(tmp_path / "folder", tmp_path / "tiny_folder.tar.gz")

    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(datasets=["fashion_mnist", "tiny_folder"], mirror=None,
                          image_folders={"tiny_folder": str(archive)})
    params["prepare"].update(valid_size=4, limit=None, pad_to=32)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    (repo / ".gitignore").write_text((REPO / ".gitignore").read_text(encoding="utf-8"), encoding="utf-8")

    env = {key: value for key, value in os.environ.items() if not key.startswith(("OVERFIT_FIRST_", "DVC_"))}
    env.update(isolated_env(tmp_path, OVERFIT_FIRST_OFFLINE="1", OVERFIT_FIRST_SYSTEM_DATASETS=str(DEBIAN_FASHION.parent)))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(repo)
    git(repo, "init", "-q")
    dvc(repo, "init", "-q", env=env)
    dvc(repo, "config", "core.analytics", "false", env=env)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline")
    return repo, env


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_data_stages_repro_then_noop_then_only_what_changed(pipeline_repo: tuple[Path, dict[str, str]]) -> None:
    repo, env = pipeline_repo
    first = dvc(repo, "repro", "prepare", env=env)
    assert ran(first) == {"download@fashion_mnist", "download@tiny_folder",
                          "prepare@fashion_mnist", "prepare@tiny_folder"}
    summary = yaml.safe_load((repo / "data/prepared/fashion_mnist/summary.json").read_text())
    assert summary["image_shape"] == [32, 32, 1]
    assert summary["splits"]["valid"]["count"] == 4 and summary["splits"]["train"]["count"] == 60_000 - 4
    assert (repo / "data/prepared/tiny_folder/summary.json").is_file()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert {"download@fashion_mnist", "prepare@tiny_folder"} <= set(lock["stages"])

    # Nothing changed: nothing runs.
    second = dvc(repo, "repro", "prepare", env=env)
    assert ran(second) == set()
    assert "up to date" in second

    # A prepare param changed: prepare reruns for every dataset, download does not.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prepare"]["valid_size"] = 6
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc(repo, "repro", "prepare", env=env)
    assert ran(third) == {"prepare@fashion_mnist", "prepare@tiny_folder"}
    summary = yaml.safe_load((repo / "data/prepared/fashion_mnist/summary.json").read_text())
    assert summary["splits"]["valid"]["count"] == 6

    dag = dvc(repo, "dag", env=env)
    for stage in ("download@fashion_mnist", "prepare@tiny_folder", "train@fashion_mnist-cnn_overfit"):
        assert stage in dag
