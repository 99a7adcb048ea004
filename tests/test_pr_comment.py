"""The pull-request comment built on two real git revisions of a DVC repository with different committed
metrics: `dvc metrics diff` between them, the comparison table and the chart links."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from overfit_first import plots, pr_comment
from overfit_first.pr_comment import MARKER

from conftest import stage_env

pytestmark = pytest.mark.slow  # real dvc, git, MLflow or a browser in every test

IMAGES_URL = "https://github.com/owner/repo/raw/0123abc"
ARTIFACT_URL = "https://github.com/owner/repo/actions/runs/1/artifacts/2"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


def commit_results(repo: Path, test_accuracy: float, verdict: str, gain: float, message: str) -> str:
    """What `dvc repro` commits: a model's metrics, the dataset's comparison and its charts."""
    (repo / "metrics" / "tiny").mkdir(parents=True, exist_ok=True)
    (repo / "metrics" / "tiny" / "cnn_overfit.json").write_text(json.dumps(
        {"train_accuracy_inference": 0.99, "test_accuracy": test_accuracy, "gap": 0.99 - test_accuracy,
         "verdict": verdict}))
    (repo / "metrics" / "tiny.comparison.json").write_text(json.dumps(
        {"overfit": "cnn_overfit", "simplified": "cnn_simplified", "simplified_val_accuracy_gain": gain,
         "simplified_test_accuracy_gain": gain, "simplified_gap_closed": 2 * gain}))
    charts = repo / "reports" / "tiny"
    charts.mkdir(parents=True, exist_ok=True)
    for name in plots.PNG_FILES:
        Image.new("RGB", (8, 8), "white").save(charts / name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=repo, check=True)
    (repo / "dvc.yaml").write_text("metrics:\n  - metrics/tiny/cnn_overfit.json\n  - metrics/tiny.comparison.json\n")
    return repo


def build(repo: Path, base: str) -> subprocess.CompletedProcess[str]:
    env = stage_env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # dvc, as in an activated virtualenv
    return subprocess.run(
        [sys.executable, "-m", "overfit_first.pr_comment", "--base", base, "--out", "comment.md",
         "--images-url", IMAGES_URL, "--artifact-url", ARTIFACT_URL],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120,
    )


def table_row(text: str, *cells: str) -> str:
    return next((line for line in text.splitlines() if all(cell in line for cell in cells)), "")


def test_comment_shows_what_the_pull_request_changed(repo: Path) -> None:
    base = commit_results(repo, 0.70, "true overfit", 0.05, "base: the overfitting CNN")
    commit_results(repo, 0.80, "good fit", 0.12, "head: the pull request")
    result = build(repo, base)
    assert result.returncode == 0, result.stderr
    text = (repo / "comment.md").read_text(encoding="utf-8")

    assert text.splitlines()[0] == MARKER, "the workflow finds its earlier comment by the first line"
    row = table_row(text, "metrics/tiny/cnn_overfit.json", "test_accuracy")
    assert "| 0.7 " in row and "| 0.8 " in row and "| 0.1 " in row, row
    row = table_row(text, "metrics/tiny/cnn_overfit.json", "verdict")
    assert "true overfit" in row and "good fit" in row, row
    assert table_row(text, "simplified_test_accuracy_gain", "0.05", "0.12"), text
    assert re.search(r"\| `cnn_simplified` \(simplified\) +\| +\+0\.120 \| +\+0\.120 \| +\+0\.240 \|", text), text
    assert f"![tiny: validation curves]({IMAGES_URL}/reports/tiny/{plots.VALIDATION_OVERLAY})" in text
    assert f"]({IMAGES_URL}/reports/tiny/{plots.CONFUSION})" in text
    assert f"[the workflow artifact]({ARTIFACT_URL})" in text


def test_same_revision_and_unknown_base(repo: Path) -> None:
    commit_results(repo, 0.70, "true overfit", 0.05, "only commit")
    result = build(repo, "HEAD")
    assert result.returncode == 0, result.stderr
    assert "No metric changed from `HEAD`." in (repo / "comment.md").read_text(encoding="utf-8")

    result = build(repo, "origin/no-such-branch")
    assert result.returncode == 1
    assert result.stderr.startswith("error: `dvc metrics diff origin/no-such-branch --md` failed")
    assert "fetch-depth 0" in result.stderr and "Traceback" not in result.stderr


def test_a_long_diff_is_cut_to_fit_a_comment(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = commit_results(repo, 0.70, "true overfit", 0.05, "base")
    commit_results(repo, 0.80, "good fit", 0.12, "head")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{stage_env()['PATH']}")
    monkeypatch.setattr(pr_comment, "DIFF_BUDGET", 300)
    table = pr_comment.metrics_diff(base)
    assert len(table) < 450
    assert table.splitlines()[1].startswith("|---|"), "DVC's padding is dropped"
    assert table.endswith(f"more changed metrics: run `dvc metrics diff {base}` to see all.")
