"""The whole pipeline under real `dvc repro` and `dvc exp run` in a temporary git repository, on tiny data:
`-S model.dropout=...` retrains only the models that use it, and `dvc exp show`, `dvc metrics diff` and
`dvc exp diff` show the change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from data_fixtures import image_folder, tar_gz
from scratch_repo import commit, dvc, new_repo, ran

pytestmark = pytest.mark.slow  # real dvc, git, MLflow or a browser in every test

TINY_SIMPLIFIED = {
    "role": "simplified",
    "layers": [
        {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu", "padding": "same"}},
        "MaxPooling2D",
        {"Dropout": {"rate": "$dropout"}},
        "Flatten",
        {"Dense": {"units": "$num_classes", "activation": "softmax"}},
    ],
    "fit": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 8, "epochs": 2, "early_stopping": False},
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A git+DVC repository with the project's code, two runs (the article's MLP, a tiny simplified CNN) on
    a tiny image-folder dataset, fully reproduced and committed."""
    tmp_path = tmp_path_factory.mktemp("experiments")
    image_folder(tmp_path / "folder", classes=("cat", "dog", "frog"), n_train=12, n_test=4, size=(8, 8))
    archive = tar_gz(tmp_path / "folder", tmp_path / "pets.tar.gz")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(datasets=["pets"], mirror=None, image_folders={"pets": str(archive)})
    params["prepare"].update(valid_size=6, sample_size=None, pad_to=None)
    params["train"].update(subset_size=None)
    for run in params["runs"].values():
        run["epochs"] = 2
    params["models"]["tiny_simplified"] = TINY_SIMPLIFIED
    params["runs"] = {
        "pets-mlp": {"dataset": "pets", "model": "mlp", "tuned_by": "train"},
        "pets-tiny_simplified": {"dataset": "pets", "model": "tiny_simplified", "tuned_by": "model.dropout"},
    }
    repo, env = new_repo(tmp_path, params)
    first = dvc(repo, env, "repro")
    assert {"train@pets-mlp", "train@pets-tiny_simplified", "evaluate@pets-mlp", "plot@pets", "report"} <= ran(first)
    commit(repo, "baseline")
    return repo, env


@pytest.mark.slow
def test_dropout_experiment_retrains_only_what_uses_it(repo: tuple[Path, dict[str, str]]) -> None:
    path, env = repo
    output = dvc(path, env, "exp", "run", "-n", "dropout-0.2", "-S", "model.dropout=0.2")
    assert ran(output) == {"sources", "train@pets-tiny_simplified", "evaluate@pets-tiny_simplified", "plot@pets",
                           "report"}  # `sources` checksums the image folder on every run: unchanged, no download

    table = json.loads(dvc(path, env, "exp", "show", "--json"))
    experiments = {exp["name"]: exp for baseline in table for exp in (baseline.get("experiments") or [])}
    assert "dropout-0.2" in experiments
    shown = dvc(path, env, "exp", "show", "--md")
    assert "dropout-0.2" in shown and "0.2" in shown

    # The experiment's results are in the workspace: metrics diff against the baseline commit.
    diff = json.loads(dvc(path, env, "metrics", "diff", "HEAD", "--json", "--all"))
    simplified = diff["metrics/pets/tiny_simplified.json"]
    assert simplified["test_accuracy"]["old"] is not None and "new" in simplified["test_accuracy"]
    assert "metrics/pets/mlp.json" not in diff or all(
        change.get("diff") in (0, None) for change in diff["metrics/pets/mlp.json"].values())

    # Two experiments compare with `dvc exp diff`.
    dvc(path, env, "exp", "run", "-n", "dropout-0.5", "-S", "model.dropout=0.5")
    exp_diff = json.loads(dvc(path, env, "exp", "diff", "dropout-0.2", "dropout-0.5", "--json"))
    dropout = exp_diff["params"]["params.yaml"]["model.dropout"]
    assert (dropout["old"], dropout["new"]) == (0.2, 0.5)
    assert "metrics/pets/tiny_simplified.json" in exp_diff["metrics"]
