"""The data-size curve end to end, on a copy of the shared tiny pipeline (conftest): real `dvc exp run --queue`
experiments run by `dvc queue start -j 2` retrain the overfitting and the simplified run at two training-set sizes,
and the report reads how the gap moves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from scratch_repo import OVERFIT_RUN, SIMPLIFIED_RUN, queue_copy, sweep_command

pytestmark = pytest.mark.slow  # real dvc, git, MLflow and trainings

SIMPLIFIED, OVERFIT = SIMPLIFIED_RUN, OVERFIT_RUN


@pytest.fixture
def repo(tiny_pipeline: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    with queue_copy(tiny_pipeline, tmp_path / "repo") as copied:
        yield copied


@pytest.mark.timeout(1800)
def test_data_curve_retrains_the_overfitting_and_simplified_runs_and_reads_the_gap(
    repo: tuple[Path, dict[str, str]],
) -> None:
    path, env = repo
    result = sweep_command(path, env, "overfit_first.data_curve", "size", "--sizes", "15", "30", "--jobs", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    report = path / "reports" / "data_curves" / "size"
    data = json.loads((report / "data_curve.json").read_text(encoding="utf-8"))
    assert data["sizes"] == [15, 30] and set(data["runs"]) == {OVERFIT, SIMPLIFIED}
    for run in (OVERFIT, SIMPLIFIED):
        assert [row["status"] for row in data["runs"][run]] == ["ok", "ok"]
        assert data["readings"][run].endswith(("get more data", "regularize or change the architecture"))
        assert f"{run}: the gap" in result.stdout
    assert (report / "data_curve.png").stat().st_size > 0
    assert "**Reading:**" in (report / "README.md").read_text(encoding="utf-8")
