"""The pull-request comment and check built on two real git revisions of a DVC repository with different committed
metrics: `dvc metrics diff` between them with the headline rows judged against the seed noise, the comparison table,
the chart links, and the verdict gate: a failed check when a run's verdict got worse beyond the seeds' noise, a
passed one when the seeds' verdicts already disagree."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from overfit_first import plots
from overfit_first.procedure import noise
from overfit_first.tools import pr_comment
from overfit_first.tools.pr_comment import MARKER

from conftest import stage_env, write_params

pytestmark = pytest.mark.slow  # real dvc, git, MLflow or a browser in every test

IMAGES_URL = "https://github.com/owner/repo/raw/0123abc"
METRICS = "metrics/tiny/cnn_overfit.json"
REBUILD = "dvc repro --force evaluate@tiny-cnn_overfit"
ARTIFACT_URL = "https://github.com/owner/repo/actions/runs/1/artifacts/2"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def eval_metrics(test_accuracy: float, verdict: str) -> dict:
    """A whole metrics/<dataset>/<model>.json as the evaluate stage writes it (overfit_first.metrics.EvalMetrics)."""
    return {
        "train_accuracy": 0.98,
        "val_accuracy": test_accuracy,
        "train_loss": 0.1,
        "val_loss": 0.9,
        "trainable_params": 1000,
        "total_params": 1000,
        "epochs_run": 3,
        "best_epoch": 3,
        "seconds_per_epoch": 1.5,
        "train_images": 100,
        "train_accuracy_inference": 0.99,
        "val_accuracy_inference": test_accuracy,
        "test_accuracy": test_accuracy,
        "test_loss": 0.9,
        "gap": round(0.99 - test_accuracy, 4),
        "gap_test": round(0.99 - test_accuracy, 4),
        "gap_history": round(0.98 - test_accuracy, 4),
        "test_images": 100,
        "verdict": verdict,
        "recommendation": "whatever the evaluate stage says",
    }


def commit_results(repo: Path, test_accuracy: float, verdict: str, gain: float, message: str) -> str:
    """What `dvc repro` commits: a model's metrics, the dataset's comparison and its charts."""
    (repo / "metrics" / "tiny").mkdir(parents=True, exist_ok=True)
    (repo / METRICS).write_text(json.dumps(eval_metrics(test_accuracy, verdict)))
    (repo / "metrics" / "tiny.comparison.json").write_text(
        json.dumps(
            {
                "overfit": "cnn_overfit",
                "simplified": "cnn_simplified",
                "simplified_val_accuracy_gain": gain,
                "simplified_test_accuracy_gain": gain,
                "simplified_gap_closed": 2 * gain,
            }
        )
    )
    charts = repo / "reports" / "tiny"
    charts.mkdir(parents=True, exist_ok=True)
    for name in plots.PNG_FILES:
        Image.new("RGB", (8, 8), "white").save(charts / name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path, default_params: dict) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=repo, check=True)
    (repo / "dvc.yaml").write_text("metrics:\n  - metrics/tiny/cnn_overfit.json\n  - metrics/tiny.comparison.json\n")
    # The repository's params.yaml with one run, on an image-folder dataset `tiny` (never built here).
    default_params["data"].update(datasets=["tiny"], image_folders={"tiny": "tiny"})
    default_params["runs"] = {"tiny-cnn_overfit": {"dataset": "tiny", "model": "cnn_overfit", "tuned_by": "train"}}
    write_params(repo, default_params)
    return repo


def metric_spread(*values: float) -> noise.MetricSpread:
    mean = sum(values) / len(values)
    std = (sum((value - mean) ** 2 for value in values) / (len(values) - 1)) ** 0.5
    return noise.MetricSpread(values=list(values), mean=mean, std=std, min=min(values), max=max(values))


def measured_spread(
    test_accuracy_std: float, gaps: tuple[float, ...] = (0.3, 0.3, 0.3), verdicts: list[str] | None = None
) -> str:
    """A seed-spread file as overfit_first.procedure.seed_spread writes it, for metrics/tiny/cnn_overfit.json (without
    `verdicts`: as written before they were kept per seed)."""
    spread = noise.SeedSpread(
        status=noise.MEASURED,
        seeds=[0, 1, 2],
        measured_at="2026-01-02T03:04:05Z",
        commit="0123456789abcdef",
        machine=noise.Machine(cpu="Test CPU", cores=2, cpu_flags=["avx2"], python="3.11.7", packages={}),
        metrics={
            METRICS: {
                "test_accuracy": metric_spread(0.70 - test_accuracy_std, 0.70, 0.70 + test_accuracy_std),
                "gap": metric_spread(*gaps),
                "train_accuracy_inference": metric_spread(0.99, 0.99, 0.99),
                "seconds_per_epoch": metric_spread(1.0, 1.2, 1.1),
            }
        },
        verdicts=None if verdicts is None else {METRICS: verdicts},
    )
    return spread.model_dump_json(indent=2)


def build(repo: Path, base: str) -> subprocess.CompletedProcess[str]:
    env = stage_env()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # dvc, as in an activated virtualenv
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "overfit_first",
            "pr_comment",
            "--base",
            base,
            "--out",
            "comment.md",
            "--images-url",
            IMAGES_URL,
            "--artifact-url",
            ARTIFACT_URL,
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
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
    assert "Verdicts: none got worse" in text, "true overfit -> good fit is better"
    row = table_row(text, "metrics/tiny/cnn_overfit.json", "test_accuracy")
    assert "| 0.7 " in row and "| 0.8 " in row and "| 0.1 " in row, row
    # No seed spread committed (the repository's state until it is measured): said so, nothing judged.
    assert row.endswith("| not measured |"), row
    assert "Noise: not measured yet" in text and noise.REFRESH in text
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
    assert result.stderr.startswith("error: `dvc metrics diff origin/no-such-branch --json` failed")
    assert "fetch-depth 0" in result.stderr and "Traceback" not in result.stderr


def test_a_long_diff_is_cut_to_fit_a_comment(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = commit_results(repo, 0.70, "true overfit", 0.05, "base")
    commit_results(repo, 0.80, "good fit", 0.12, "head")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{stage_env()['PATH']}")
    monkeypatch.setattr(pr_comment, "DIFF_BUDGET", 300)
    table = pr_comment.diff_table(pr_comment.metrics_diff(base), base, noise.not_measured(), {})
    assert len(table) < 450
    assert table.splitlines()[1].startswith("|---|"), "no padding"
    assert table.endswith(f"more changed metrics: run `dvc metrics diff {base}` to see all.")


def test_differences_marked_against_the_seed_noise(repo: Path) -> None:
    base = commit_results(repo, 0.70, "true overfit", 0.05, "base")
    (repo / "metrics" / "seed_spread.json").write_text(measured_spread(test_accuracy_std=0.01))
    commit_results(repo, 0.715, "true overfit", 0.05, "head: within the noise of test_accuracy")
    result = build(repo, base)
    assert result.returncode == 0, result.stderr
    text = (repo / "comment.md").read_text(encoding="utf-8")
    # 0.715 against 0.70 ± 0.01 over 3 seeds is noise; the gap never moved over seeds: beyond. Holm over the two
    # headline rows the spread has (test_accuracy, gap); the timing and the other rows are not judged.
    row = table_row(text, "cnn_overfit.json", "| test_accuracy ")
    assert re.search(r"\| within noise \(p = 0\.\d+, Holm\) \|$", row), text
    assert table_row(text, "cnn_overfit.json", "| gap ").endswith("| **beyond noise** (p < 0.001, Holm) |"), text
    assert table_row(text, "cnn_overfit.json", "| val_accuracy_inference ").endswith("| no spread |"), text
    assert table_row(text, "cnn_overfit.json", "| gap_test ").endswith("|  |"), "not a headline row: unmarked"
    assert f"Beyond noise: 1 of 2 headline rows: `{METRICS}` gap." in text
    assert "seeds 0, 1, 2 of the default profile by Student's t" in text
    assert "the spread was measured on Test CPU (flags avx2); this runner (the machine writing this comment" in text
    assert "seeds the check is blunt" in text and "is no proof that nothing changed" in text  # its power, stated

    commit_results(repo, 0.80, "true overfit", 0.05, "head: beyond it")
    assert build(repo, base).returncode == 0
    text = (repo / "comment.md").read_text(encoding="utf-8")
    row = table_row(text, "cnn_overfit.json", "| test_accuracy ")
    assert re.search(r"\| \*\*beyond noise\*\* \(p = 0\.0\d+, Holm\) \|$", row), text


def test_a_worse_verdict_fails_the_check_naming_the_run(repo: Path) -> None:
    base = commit_results(repo, 0.80, "good fit", 0.05, "base: a good fit")
    commit_results(repo, 0.60, "partial overfit", 0.05, "head: the pull request makes it overfit")
    result = build(repo, base)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: a verdict got worse from {base}: tiny-cnn_overfit: good fit -> partial overfit"
    ), result.stderr
    text = (repo / "comment.md").read_text(encoding="utf-8")
    assert "**Check failed: a verdict got worse**" in text, "the comment, written anyway, says why"
    assert "- `tiny-cnn_overfit`: good fit → **partial overfit**" in text

    # "still learning" is neither better nor worse: the check passes both ways.
    still = commit_results(repo, 0.60, "still learning", 0.05, "head: still learning")
    assert build(repo, base).returncode == 0
    commit_results(repo, 0.50, "underfit", 0.05, "head: underfit after still learning")
    assert build(repo, still).returncode == 0


def test_a_worse_verdict_fails_only_beyond_the_seeds_noise(repo: Path) -> None:
    base = commit_results(repo, 0.80, "good fit", 0.05, "base: a good fit")
    # The seeds disagree already (one partially overfits) and the gap is within their noise: the check passes.
    spread = repo / "metrics" / "seed_spread.json"
    spread.write_text(
        measured_spread(0.01, gaps=(0.18, 0.19, 0.20), verdicts=["good fit", "partial overfit", "good fit"])
    )
    commit_results(repo, 0.78, "partial overfit", 0.05, "head: a re-roll")
    result = build(repo, base)
    assert result.returncode == 0, result.stderr
    text = (repo / "comment.md").read_text(encoding="utf-8")
    assert "Verdicts: none got worse beyond the noise" in text
    assert (
        "- `tiny-cnn_overfit`: good fit → partial overfit: within the seeds' range (good fit, partial overfit, " in text
    )

    # Every seed fits well, and the gap moves far beyond their noise: the check fails, naming the evidence.
    spread.write_text(measured_spread(0.01, gaps=(0.18, 0.19, 0.20), verdicts=["good fit"] * 3))
    commit_results(repo, 0.40, "partial overfit", 0.05, "head: a real change")
    result = build(repo, base)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: a verdict got worse from {base}: tiny-cnn_overfit: good fit -> partial overfit"
    ), result.stderr
    text = (repo / "comment.md").read_text(encoding="utf-8")
    assert "- `tiny-cnn_overfit`: good fit → **partial overfit**: worse than every seed's (good fit, good fit, " in text
    assert "gap 0.590 against seeds 0.190 ± 0.010 sd, beyond noise (p = 0.0017, Holm)" in text


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ('{"test_accuracy": 0.8, "verd', "is corrupt or from an older version (file: Invalid JSON"),
        (None, "not found"),
        ("", "is corrupt or from an older version (file: Invalid JSON"),
        ({"verdict": "gud fit"}, "is corrupt or from an older version (verdict: Input should be 'still learning'"),
        ({"test_accuracy": 84.76}, "is corrupt or from an older version (test_accuracy: Input should be less than or"),
    ],
    ids=["truncated", "missing", "empty", "unknown verdict", "accuracy out of range"],
)
def test_invalid_workspace_metrics_stop_before_any_comment(repo: Path, broken: str | dict | None, problem: str) -> None:
    """Before, each of these passed the check: dvc showed the file's metrics as removed, or 84.76 as a change
    of +83.96 beyond noise, and the verdict as unchanged."""
    base = commit_results(repo, 0.80, "good fit", 0.05, "base")
    path = repo / METRICS
    if broken is None:
        path.unlink()
    elif isinstance(broken, dict):
        path.write_text(json.dumps(eval_metrics(0.80, "good fit") | broken))
    else:
        path.write_text(broken)
    result = build(repo, base)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error: the workspace's metrics cannot be compared, so no comment was written")
    assert f"{METRICS} {problem}" in result.stderr, result.stderr
    assert f"run `{REBUILD}`" in result.stderr and "Traceback" not in result.stderr
    assert not (repo / "comment.md").exists()
    assert not list(repo.glob(".comment.md.*")), "no temporary file left behind"


def test_metrics_dvc_cannot_read_stop_the_check(repo: Path) -> None:
    """A workspace metrics file that is not a run's (the comparison) and that dvc cannot read: dvc exits 0 and
    shows its metrics as removed; the check stops instead."""
    base = commit_results(repo, 0.80, "good fit", 0.05, "base")
    (repo / "metrics" / "tiny.comparison.json").write_text('{"overfit": "cnn_ov')
    result = build(repo, base)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed to load some metrics for following revisions: 'workspace'" in result.stderr, result.stderr
    assert "`dvc metrics show` names the file" in result.stderr
    assert not (repo / "comment.md").exists()
