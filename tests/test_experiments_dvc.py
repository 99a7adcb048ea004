"""The whole pipeline under real `dvc repro` and `dvc exp run` in a temporary git repository, on tiny data:
`-S model.dropout=...` retrains only the models that use it, and `dvc exp show`, `dvc metrics diff` and
`dvc exp diff` show the change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scratch_repo import DROPOUT_STAGES, copy_repo, dvc, ran

pytestmark = pytest.mark.slow  # real dvc, git, MLflow or a browser in every test


@pytest.fixture
def repo(tiny_pipeline: tuple[Path, dict[str, str]], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the reproduced tiny pipeline (conftest): two runs, the article's MLP and a tiny simplified CNN."""
    origin, env = tiny_pipeline
    return copy_repo(origin, tmp_path / "repo"), env


@pytest.mark.slow
def test_dropout_experiment_retrains_only_what_uses_it(repo: tuple[Path, dict[str, str]]) -> None:
    path, env = repo
    output = dvc(path, env, "exp", "run", "-n", "dropout-0.2", "-S", "model.dropout=0.2")
    assert ran(output) == DROPOUT_STAGES

    table = json.loads(dvc(path, env, "exp", "show", "--json"))
    experiments = {exp["name"]: exp for baseline in table for exp in (baseline.get("experiments") or [])}
    assert "dropout-0.2" in experiments
    shown = dvc(path, env, "exp", "show", "--md")
    assert "dropout-0.2" in shown and "0.2" in shown

    # The experiment's results are in the workspace: metrics diff against the baseline commit.
    diff = json.loads(dvc(path, env, "metrics", "diff", "HEAD", "--json", "--all"))
    simplified = diff["metrics/pets/tiny_simplified.json"]
    assert simplified["test_accuracy"]["old"] is not None and "new" in simplified["test_accuracy"]
    assert "metrics/pets/tiny_overfit.json" not in diff or all(
        change.get("diff") in (0, None) for change in diff["metrics/pets/tiny_overfit.json"].values()
    )

    # The experiment against its baseline commit with `dvc exp diff` (two experiments against each other:
    # test_parallel_experiments).
    exp_diff = json.loads(dvc(path, env, "exp", "diff", "HEAD", "dropout-0.2", "--json"))
    dropout = exp_diff["params"]["params.yaml"]["model.dropout"]
    assert (dropout["old"], dropout["new"]) == (0.4, 0.2)
    assert "metrics/pets/tiny_simplified.json" in exp_diff["metrics"]
