"""The noise rule and the verdict order of the pull-request check, without DVC: overfit_first.noise (the seed-spread
file and when a difference is beyond noise), overfit_first.seed_spread's summary of per-seed metrics, and
overfit_first.pr_comment's table and worse-verdict detection on a `dvc metrics diff --json` result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from overfit_first import layout, metrics, noise, pr_comment, seed_spread, verdict
from overfit_first.errors import PipelineError

from conftest import REPO

PATH = "metrics/fashion_mnist/cnn_simplified.json"


def spread_of(*values: float) -> noise.MetricSpread:
    return seed_spread.spread([{PATH: {"test_accuracy": value}} for value in values])[PATH]["test_accuracy"]


def measured(**metrics: noise.MetricSpread) -> noise.SeedSpread:
    return noise.SeedSpread(status=noise.MEASURED, seeds=[0, 1, 2], metrics={PATH: metrics})


def test_spread_summarizes_numeric_metrics_present_in_every_seed() -> None:
    per_seed = [
        {PATH: {"test_accuracy": 0.80, "epochs_run": 20, "verdict": "good fit", "flag": True, "once": 1.0}},
        {PATH: {"test_accuracy": 0.82, "epochs_run": 20, "verdict": "underfit", "flag": False}},
        {PATH: {"test_accuracy": 0.84, "epochs_run": 20, "verdict": "good fit", "flag": True}},
    ]
    result = seed_spread.spread(per_seed)[PATH]
    assert set(result) == {"test_accuracy", "epochs_run"}, "no strings, no booleans, no metric a seed lacks"
    accuracy = result["test_accuracy"]
    assert accuracy.values == [0.80, 0.82, 0.84]
    assert accuracy.mean == pytest.approx(0.82) and accuracy.std == pytest.approx(0.02)  # sample std (n - 1)
    assert (accuracy.min, accuracy.max) == (0.80, 0.84)
    assert result["epochs_run"].std == 0.0 and result["epochs_run"].threshold == 0.0


def test_rule_is_the_larger_of_two_std_and_the_range() -> None:
    wide_range = spread_of(0.80, 0.80, 0.80, 0.86)  # std 0.03, range 0.06
    assert wide_range.threshold == pytest.approx(0.06)
    assert spread_of(0.80, 0.82).threshold == pytest.approx(2 * 0.01414, abs=1e-4)  # 2 std > range 0.02
    spread = measured(test_accuracy=spread_of(0.5, 0.75, 1.0))  # std 0.25, range 0.5: threshold 0.5, exactly
    assert spread.judge(PATH, "test_accuracy", 0.49) == noise.WITHIN
    assert spread.judge(PATH, "test_accuracy", -0.5) == noise.WITHIN, "at the threshold is still noise"
    assert spread.judge(PATH, "test_accuracy", -0.51) == noise.BEYOND
    assert spread.judge(PATH, "gap", 0.5) == "no spread", "a metric the measurement did not see"
    assert noise.not_measured().judge(PATH, "test_accuracy", 0.5) == noise.NOT_MEASURED


def test_committed_file_is_measured_on_three_seeds_and_loads() -> None:
    committed = noise.load(REPO / layout.SEED_SPREAD)
    assert committed.measured and committed.seeds == [0, 1, 2]
    accuracy = committed.spread("metrics/fashion_mnist/cnn_simplified.json", "test_accuracy")
    assert accuracy is not None and len(accuracy.values) == 3 and accuracy.min <= accuracy.mean <= accuracy.max
    assert committed.machine is not None and committed.machine.cpu_flags, "the CPU flags the seeds ran on"


def test_an_unmeasured_file_says_so() -> None:
    unmeasured = noise.SeedSpread(status=noise.NOT_MEASURED, command=noise.REFRESH)
    assert not unmeasured.measured and not unmeasured.metrics, "no invented numbers"
    assert "not measured yet" in unmeasured.summary() and noise.REFRESH in unmeasured.summary()


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    assert noise.load(tmp_path / "absent.json").status == noise.NOT_MEASURED
    bad = tmp_path / "seed_spread.json"
    bad.write_text(json.dumps({"status": "measured", "metrics": {PATH: {"test_accuracy": {"mean": 1}}}}))
    with pytest.raises(PipelineError, match=r"is not a seed-spread file .* rewrite it with `python -m overfit_first"):
        noise.load(bad)
    bad.write_text("{")
    with pytest.raises(PipelineError, match="is not a seed-spread file"):
        noise.load(bad)


def test_measured_summary_states_rule_seeds_date_and_machine() -> None:
    spread = measured(test_accuracy=spread_of(0.80, 0.82)).model_copy(
        update={
            "measured_at": "2026-01-02T03:04:05Z",
            "commit": "0123456789abcdef",
            "machine": noise.Machine(cpu="Xeon", cores=2, cpu_flags=["avx2", "fma"], python="3.11.7", packages={}),
        }
    )
    assert spread.summary() == (
        "Noise: a difference is *beyond noise* when it exceeds max(2 x standard deviation, max - min) of the metric "
        "over seeds 0, 1, 2 of the default profile (metrics/seed_spread.json, measured 2026-01-02T03:04:05Z at "
        "commit 0123456789 on Xeon)."
    )


def test_machine_records_cpu_and_vector_flags() -> None:
    machine = seed_spread.machine()
    assert machine.cpu and machine.cores >= 1
    assert set(machine.cpu_flags) <= set(seed_spread.VECTOR_FLAGS)
    assert "keras" in machine.packages


def test_table_marks_numeric_changes_only() -> None:
    diff = {
        PATH: {
            "test_accuracy": {"old": 0.8, "new": 0.9, "diff": 0.1},
            "val_accuracy": {"old": 0.8, "new": 0.81, "diff": 0.010000000000000009},
            "verdict": {"old": "good fit", "new": "underfit"},
            "new_metric": {"old": None, "new": 3},
        }
    }
    spread = measured(test_accuracy=spread_of(0.80, 0.82, 0.84), val_accuracy=spread_of(0.80, 0.82, 0.84))
    rows = pr_comment.diff_table(diff, "origin/main", spread).splitlines()
    assert rows[0] == "| Path | Metric | origin/main | this pull request | Change | Noise |"
    assert rows[2:] == [
        f"| {PATH} | new_metric | - | 3 | - |  |",
        f"| {PATH} | test_accuracy | 0.8 | 0.9 | 0.1 | **beyond noise** (±0.04) |",
        f"| {PATH} | val_accuracy | 0.8 | 0.81 | 0.01 | within noise (±0.04) |",
        f"| {PATH} | verdict | good fit | underfit | - |  |",
    ]
    assert pr_comment.diff_table({}, "origin/main", spread) == "No metric changed from `origin/main`."


@pytest.mark.parametrize(
    ("old", "new", "worse"),
    [
        ("good fit", "true overfit", True),
        ("good fit", "underfit", True),
        ("true overfit", "partial overfit", True),
        ("partial overfit", "underfit", True),
        ("underfit", "good fit", False),
        ("true overfit", "good fit", False),
        ("good fit", "still learning", False),
        ("still learning", "underfit", False),
    ],
)
def test_verdict_order(old: str, new: str, worse: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no params.yaml: runs are named by their metrics file
    found = pr_comment.worse_verdicts({PATH: {"verdict": {"old": old, "new": new}}})
    assert found == ([pr_comment.WorseVerdict(PATH, old, new)] if worse else [])


def test_worse_verdict_named_by_its_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("runs:\n  fm-simplified: {dataset: fashion_mnist, model: cnn_simplified}\n")
    diff = {
        PATH: {"verdict": {"old": "good fit", "new": "partial overfit"}},
        "metrics/fashion_mnist/mlp.json": {"verdict": {"old": "underfit", "new": "good fit"}},
    }
    worse = pr_comment.worse_verdicts(diff)
    assert [str(entry) for entry in worse] == ["fm-simplified: good fit -> partial overfit"]
    lines = pr_comment.verdict_lines(worse)
    assert lines[0].startswith(
        "**Check failed: a verdict got worse** (order: good fit > true overfit > "
        "partial overfit > underfit; *still learning* is not ranked)"
    )
    assert "- `fm-simplified`: good fit → **partial overfit**" in lines


def test_the_metrics_contract_admits_only_the_verdicts_the_check_ranks() -> None:
    """metrics.read (which the check runs on every run's file first) rejects a verdict the order does not know,
    such as "gud fit": else a run's verdict could change to it without failing the check."""
    known = {*pr_comment.VERDICT_ORDER, "still learning"}
    assert set(get_args(metrics.Verdict)) == known == set(verdict.RECOMMENDATIONS)


def test_metrics_diff_output_dvc_could_not_read(capsys: pytest.CaptureFixture[str]) -> None:
    shown = "dvc metrics diff origin/main --json"
    change = {
        "verdict": {"old": "good fit", "new": "underfit"},
        "test_accuracy": {"old": 0.8, "new": 0.7, "diff": -0.1},
    }
    failed = "DVC failed to load some metrics for following revisions: '{}'."
    assert pr_comment.parse_diff(shown, json.dumps({PATH: change}), "") == {PATH: change}
    # The base's committed metrics unreadable: shown as -, with a warning (a pull request may be the repair).
    assert pr_comment.parse_diff(shown, json.dumps({PATH: change}), failed.format("origin/main")) == {PATH: change}
    assert "warning: dvc could not read some metrics of origin/main" in capsys.readouterr().err
    # The workspace's: the check stops, by DVC 3's stderr line or by an "errors" entry in the JSON.
    for stdout, stderr in [
        (json.dumps({PATH: change}), failed.format("origin/main, workspace")),
        (json.dumps({"diff": {PATH: change}, "errors": {"workspace": {PATH: "JSONDecodeError"}}}), ""),
        (json.dumps({"errors": "cannot read the workspace", PATH: change}), ""),
    ]:
        with pytest.raises(PipelineError, match=r"the workspace's metrics cannot be compared; `dvc metrics show`"):
            pr_comment.parse_diff(shown, stdout, stderr)
    assert pr_comment.parse_diff(shown, json.dumps({"diff": {PATH: change}, "errors": {}}), "") == {PATH: change}
    # Output that is not a diff at all.
    for stdout, message in [
        ("{not json", "printed no JSON"),
        ("[1, 2]", "printed list, not a mapping"),
        (json.dumps({PATH: {"test_accuracy": 0.7}}), f"unexpected entry for {PATH}"),
        (json.dumps({PATH: "error"}), f"unexpected entry for {PATH}"),
    ]:
        with pytest.raises(PipelineError, match=message):
            pr_comment.parse_diff(shown, stdout, "")
    # A non-numeric change is shown as it is, never judged against the noise.
    assert pr_comment.noise_mark(noise.not_measured(), PATH, "test_accuracy", {"old": 0.8, "new": "n/a"}) == ""
