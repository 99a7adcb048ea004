"""Image folders under real `dvc repro`, `dvc status` in a temporary git + DVC repository: a changed image
reruns its download (issue #11 row 12) and links to class folders count (rows 3, 13). A queued experiment reading a
folder given relative to the repository from the original repository (row 6) is test_data_curve_dvc's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import REPO
from data_fixtures import image_folder, zip_archive
from scratch_repo import commit, dvc, new_repo, ran

pytestmark = pytest.mark.slow


def _summary(repo: Path, dataset: str) -> dict:
    return json.loads((repo / "data" / "prepared" / dataset / "summary.json").read_text(encoding="utf-8"))


def test_a_changed_image_reruns_the_download_of_its_folder_only(tmp_path: Path) -> None:
    # pets: a directory beside the repository (../pets), its dog folders links to a folder elsewhere;
    # birds: a zip archive; unused: declared, not built, and not there.
    image_folder(tmp_path / "pets", classes=("cat",), top=None, n_train=6, n_test=2, size=(8, 8))
    image_folder(tmp_path / "far", classes=("dog",), top=None, n_train=6, n_test=2, size=(8, 8), seed=1)
    for split in ("train", "test"):
        (tmp_path / "pets" / split / "dog").symlink_to(tmp_path / "far" / split / "dog")
    image_folder(tmp_path / "birds", classes=("owl", "tit"), n_train=6, n_test=2, size=(8, 8))
    zip_archive(tmp_path / "birds", tmp_path / "birds.zip")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(
        datasets=["pets", "birds"],
        mirror=None,
        image_folders={"pets": "../pets", "birds": "../birds.zip", "unused": "../not-there"},
    )
    params["prepare"].update(valid_size=4, sample_size=None, pad_to=None)
    params["runs"] = {"pets-mlp": {"dataset": "pets", "model": "mlp", "tuned_by": "train"}}
    repo, env = new_repo(tmp_path, params)
    commit(repo, "pipeline")

    first = dvc(repo, env, "repro", "prepare")
    assert ran(first) == {"sources", "download@pets", "download@birds", "prepare@pets", "prepare@birds"}
    assert _summary(repo, "pets")["class_names"] == ["cat", "dog"]  # the linked class folders count
    commit(repo, "reproduced")

    status = dvc(repo, env, "status")
    assert "sources" in status and "always changed" in status and "download@" not in status, status
    assert ran(dvc(repo, env, "repro", "prepare")) == {"sources"}

    # One more image, through the linked folder: that dataset's download reruns, and what follows it.
    Image.new("RGB", (8, 8), "red").save(tmp_path / "far" / "train" / "dog" / "new.png")
    assert ran(dvc(repo, env, "repro", "prepare")) == {"sources", "download@pets", "prepare@pets"}
    assert _summary(repo, "pets")["splits"]["train"]["count"] == 6 * 2 + 1 - 4

    # The zip replaced by one with a replaced image.
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "birds" / "tiny" / "test" / "owl" / "000.png")
    zip_archive(tmp_path / "birds", tmp_path / "birds.zip")
    assert ran(dvc(repo, env, "repro", "prepare")) == {"sources", "download@birds", "prepare@birds"}

    # A class folder lost: one class left, refused before anything is written.
    (tmp_path / "pets" / "train" / "dog").unlink()
    (tmp_path / "pets" / "test" / "dog").unlink()
    failed = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "prepare@pets"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode != 0
    assert "the training split holds 1 class(es) ['cat']; a classifier needs at least two" in failed.stderr
