"""The whole pipeline under real `dvc repro` and `dvc exp run` in a temporary git repository, on tiny data:
`-S model.dropout=...` retrains only the models that use it, and `dvc exp show`, `dvc metrics diff` and
`dvc exp diff` show the change."""

from __future__ import annotations

import json
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
TINY_SIMPLIFIED = {
    "role": "simplified",
    "layers": [
        {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu", "padding": "same"}},
        "MaxPooling2D",
        {"Dropout": {"rate": "$dropout"}},
        "Flatten",
        {"Dense": {"units": "$num_classes", "activation": "softmax"}},
    ],
    "training": {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 8, "epochs": 2, "early_stopping": False},
}


def run(repo: Path, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A git+DVC repository with the project's code, two runs (the article's MLP, a tiny simplified CNN) on
    a tiny image-folder dataset, fully reproduced and committed."""
    tmp_path = tmp_path_factory.mktemp("experiments")
    repo = tmp_path / "repo"
    for name in CODE:
        source, target = REPO / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    image_folder(tmp_path / "folder", classes=("cat", "dog", "frog"), n_train=12, n_test=4, size=(8, 8))
    archive = tar_gz(tmp_path / "folder", tmp_path / "pets.tar.gz")

    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(datasets=["pets"], mirror=None, image_folders={"pets": str(archive)})
    params["prepare"].update(valid_size=6, limit=None, pad_to=None)
    params["train"].update(max_epochs=2, limit=None)
    params["models"]["tiny_simplified"] = TINY_SIMPLIFIED
    params["runs"] = {
        "pets-mlp": {"dataset": "pets", "model": "mlp", "tuned_by": "train"},
        "pets-tiny_simplified": {"dataset": "pets", "model": "tiny_simplified", "tuned_by": "model.dropout"},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    shutil.copy2(REPO / ".gitignore", repo / ".gitignore")

    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OVERFIT_FIRST_", "DVC_", "MLFLOW_"))}
    env.update(isolated_env(tmp_path, OVERFIT_FIRST_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2"))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(repo)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    # HOME is a scratch dir here: experiments commit, so the repository needs its own identity.
    subprocess.run(["git", "config", "user.name", "overfit-first tests"], cwd=repo, check=True)
    subprocess.run(["git", "config", "user.email", "tests@overfit-first.invalid"], cwd=repo, check=True)
    run(repo, "init", "-q", env=env)
    run(repo, "config", "core.analytics", "false", env=env)
    shutil.copytree(REPO / ".dvc/plots", repo / ".dvc/plots")  # the project's custom plot templates
    first = run(repo, "repro", env=env)
    assert {"train@pets-mlp", "train@pets-tiny_simplified", "evaluate@pets-mlp", "plot@pets", "report"} <= ran(first)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "baseline"], cwd=repo, check=True)
    return repo, env


def test_dropout_experiment_retrains_only_what_uses_it(repo: tuple[Path, dict[str, str]]) -> None:
    path, env = repo
    output = run(path, "exp", "run", "-n", "dropout-0.2", "-S", "model.dropout=0.2", env=env)
    assert ran(output) == {"train@pets-tiny_simplified", "evaluate@pets-tiny_simplified", "plot@pets", "report"}

    table = json.loads(run(path, "exp", "show", "--json", env=env))
    experiments = {exp["name"]: exp for baseline in table for exp in (baseline.get("experiments") or [])}
    assert "dropout-0.2" in experiments
    shown = run(path, "exp", "show", "--md", env=env)
    assert "dropout-0.2" in shown and "0.2" in shown

    # The experiment's results are in the workspace: metrics diff against the baseline commit.
    diff = json.loads(run(path, "metrics", "diff", "HEAD", "--json", "--all", env=env))
    simplified = diff["metrics/pets/tiny_simplified.json"]
    assert simplified["test_accuracy"]["old"] is not None and "new" in simplified["test_accuracy"]
    assert "metrics/pets/mlp.json" not in diff or all(
        change.get("diff") in (0, None) for change in diff["metrics/pets/mlp.json"].values())

    # Two experiments compare with `dvc exp diff`.
    run(path, "exp", "run", "-n", "dropout-0.5", "-S", "model.dropout=0.5", env=env)
    exp_diff = json.loads(run(path, "exp", "diff", "dropout-0.2", "dropout-0.5", "--json", env=env))
    dropout = exp_diff["params"]["params.yaml"]["model.dropout"]
    assert (dropout["old"], dropout["new"]) == (0.2, 0.5)
    assert "metrics/pets/tiny_simplified.json" in exp_diff["metrics"]
