"""`python -m overfit_first seed_spread` for real on the tiny pipeline (conftest) with two seeds: one `dvc exp run
--temp` per seed, the metrics read back from `dvc exp show`, metrics/seed_spread.json written in the format the
pull-request comment reads, and the pipeline left as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from overfit_first.procedure import noise

from scratch_repo import copy_repo, dvc


@pytest.mark.slow  # trains, runs dvc
def test_two_seeds_measured_and_written(tiny_pipeline: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    origin, env = tiny_pipeline
    repo = copy_repo(origin, tmp_path / "repo")
    committed_seed = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))["train"]["seed"]
    seeds = [committed_seed, committed_seed + 1]
    result = subprocess.run(
        [sys.executable, "-m", "overfit_first", "seed_spread", "--seeds", *map(str, seeds)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wrote metrics/seed_spread.json" in result.stdout

    spread = noise.load(repo / "metrics" / "seed_spread.json")
    assert spread.measured and spread.seeds == seeds
    assert spread.command == f"python -m overfit_first seed_spread --seeds {seeds[0]} {seeds[1]}"
    assert spread.measured_at and spread.commit and len(spread.experiments) == 2
    assert spread.machine is not None and spread.machine.cpu and "keras" in spread.machine.packages
    accuracy = spread.spread("metrics/pets/tiny_simplified.json", "test_accuracy")
    assert accuracy is not None and len(accuracy.values) == 2
    assert accuracy.min <= accuracy.mean <= accuracy.max
    # The committed seed's experiment changed nothing: its values are the committed results.
    committed = yaml.safe_load((repo / "metrics" / "pets" / "tiny_simplified.json").read_text(encoding="utf-8"))
    assert accuracy.values[0] == pytest.approx(committed["test_accuracy"])
    assert spread.spread("metrics/pets/tiny_overfit.json", "trainable_params").std == 0.0  # the same net every seed
    # Every run's metrics and the comparison's gains of simplifying: the numbers the pull-request comment judges.
    runs = {f"metrics/pets/{model}.json" for model in ("tiny_overfit", "tiny_simplified")}
    assert set(spread.metrics) == runs | {"metrics/pets.comparison.json"}
    assert spread.spread("metrics/pets.comparison.json", "simplified_test_accuracy_gain") is not None
    assert spread.spread("metrics/pets/tiny_overfit.json", "verdict") is None, "strings have no spread"
    assert spread.verdicts is not None and set(spread.verdicts) == runs, "each run's verdict per seed"
    assert all(len(found) == 2 for found in spread.verdicts.values())
    assert spread.verdicts["metrics/pets/tiny_simplified.json"][0] == committed["verdict"]

    # Each seed ran in a temporary copy: the workspace is the commit's, the spread file aside (.dvcignore).
    status = dvc(repo, env, "status")
    assert [line for line in status.splitlines() if line and not line.startswith("\t")] == ["sources:"], status
    changed = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    assert changed.split() == ["??", "metrics/seed_spread.json"], changed
    shown = dvc(repo, env, "exp", "show", "--md")
    assert all(name in shown for name in spread.experiments)

    # The same spread from the finished runs, without training: the workspace for the committed seed.
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "overfit_first",
            "seed_spread",
            "--seeds",
            *map(str, seeds),
            "--out",
            str(tmp_path / "s"),
            "--experiments",
            "workspace",
            spread.experiments[1],
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    again_spread = noise.load(tmp_path / "s")
    assert again_spread.metrics == spread.metrics and again_spread.verdicts == spread.verdicts


def test_needs_two_seeds(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "overfit_first", "seed_spread", "--seeds", "3", "3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: --seeds needs at least two different seeds")
