"""Pipeline folders (overfit_first.tools.pipelines): the committed cifar/ is what the generator writes, its code
dependencies exist, and under a real `dvc` a folder's pipeline runs beside the root's with its own outputs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from overfit_first.config import load_params
from overfit_first.errors import PipelineError
from overfit_first.tools import pipelines

from conftest import REPO
from scratch_repo import commit, copy_repo, dvc, ran


def generated(tmp_path: Path, name: str) -> Path:
    for source in ("params.yaml", "dvc.yaml", "profiles"):
        (shutil.copytree if (REPO / source).is_dir() else shutil.copy2)(REPO / source, tmp_path / source)
    return pipelines.write(name, root=tmp_path)


def test_the_committed_cifar_folder_is_what_the_generator_writes(tmp_path: Path) -> None:
    folder = generated(tmp_path, "cifar")
    for name in ("params.yaml", "dvc.yaml"):
        committed = (REPO / "cifar" / name).read_text(encoding="utf-8")
        assert committed == (folder / name).read_text(encoding="utf-8"), (
            f"cifar/{name} is stale: run `python -m overfit_first pipelines cifar` and commit it"
        )


def test_the_folders_stages_are_the_roots_with_code_one_folder_up() -> None:
    root = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    folder = yaml.safe_load((REPO / "cifar" / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert folder.keys() == root.keys()
    for name, stage in folder.items():
        body, root_body = stage.get("do", stage), root[name].get("do", root[name])
        assert body["cmd"] == f"PYTHONPATH=.. {root_body['cmd']}"
        code = [dep for dep in body.get("deps", []) if dep.startswith("../")]
        assert all((REPO / "cifar" / dep).resolve().is_file() for dep in code), code
        assert [dep.removeprefix("../") for dep in body.get("deps", [])] == root_body.get("deps", [])
    params = load_params(REPO / "cifar" / "params.yaml")
    assert len(params.runs) == 8 and set(params.data.datasets) == {"cifar10_jpeg", "cifar100_jpeg"}
    assert params.models == load_params(REPO / "params.yaml").models, "one declaration of the architectures"


def test_an_unknown_profile_names_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"no profile 'nope' \(profiles/nope.yaml not found\); available: .*cifar"):
        generated(tmp_path, "nope")
    assert not (tmp_path / "nope").exists()


@pytest.mark.slow
def test_a_folder_pipeline_runs_beside_the_root_one(tiny_pipeline: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo = copy_repo(tiny_pipeline[0], tmp_path / "repo")
    env = tiny_pipeline[1]
    profile = {
        "runs": {"pets-tiny_simplified": {"dataset": "pets", "model": "tiny_simplified", "tuned_by": "model.dropout"}}
    }
    (repo / "profiles" / "small.yaml").write_text(yaml.safe_dump(profile), encoding="utf-8")
    made = subprocess.run(
        [sys.executable, "-m", "overfit_first", "pipelines", "small"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    assert "next: dvc repro small/dvc.yaml" in made.stdout

    first = ran(dvc(repo, env, "repro", "small/dvc.yaml"))
    assert "small/dvc.yaml:train@pets-tiny_simplified" in first and "small/dvc.yaml:report" in first
    assert not any(stage.startswith(("train@", "evaluate@")) for stage in first), "the root's runs are untouched"
    for output in ("models/pets/tiny_simplified.keras", "metrics/pets/tiny_simplified.json", "reports/README.md"):
        assert (repo / "small" / output).is_file(), output
    assert not (repo / "small" / "models" / "pets" / "tiny_overfit.keras").exists(), "only the folder's runs"
    commit(repo, "the small pipeline")

    # `dvc repro` without a target is the root pipeline only; the metrics commands read both.
    again = ran(dvc(repo, env, "repro"))
    assert not any(stage.startswith("small/") for stage in again), again
    table = dvc(repo, env, "metrics", "show")
    assert "small/metrics/pets/tiny_simplified.json" in table and "metrics/pets/tiny_overfit.json" in table, table
    status = dvc(repo, env, "status")
    assert "train@" not in status and "evaluate@" not in status, status  # only the always-changed sources
