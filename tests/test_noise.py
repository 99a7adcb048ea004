"""The noise rule of the pull-request check, the ladder and the data-size curve, without DVC:
overfit_first.procedure.noise (Student's t against the seeds, Holm over the declared family, the seed-spread file), its
false-alarm rate and power checked by simulation from the committed spread, the documentation's quoted figures,
overfit_first.procedure.seed_spread's summary of per-seed results, and overfit_first.tools.pr_comment's table, machines
and verdict gate on a `dvc metrics diff --json` result."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from scipy import stats

from overfit_first import layout, metrics, verdict
from overfit_first.config import load_params
from overfit_first.errors import PipelineError
from overfit_first.machine import VECTOR_FLAGS, Machine, machine
from overfit_first.procedure import claims, noise, seed_spread
from overfit_first.tools import pr_comment

from conftest import REPO, docs_text

PATH = "metrics/fashion_mnist/cnn_simplified.json"
COMPARISON = "metrics/fashion_mnist.comparison.json"
XEON = Machine(cpu="Xeon", cores=2, cpu_flags=["avx2", "fma", "amx_tile"], python="3.11.7", packages={})
EPYC = Machine(cpu="EPYC", cores=16, cpu_flags=["avx2", "fma"], python="3.11.7", packages={})


def spread_of(*values: float) -> noise.MetricSpread:
    return seed_spread.spread([{PATH: {"test_accuracy": value}} for value in values])[PATH]["test_accuracy"]


def measured(verdicts: dict[str, list[str]] | None = None, **found: noise.MetricSpread) -> noise.SeedSpread:
    return noise.SeedSpread(status=noise.MEASURED, seeds=[0, 1, 2], metrics={PATH: found}, verdicts=verdicts)


@pytest.fixture(scope="module")
def committed() -> noise.SeedSpread:
    return noise.load(REPO / layout.SEED_SPREAD)


def test_spread_summarizes_numeric_metrics_and_keeps_verdicts_per_seed() -> None:
    per_seed = [
        {PATH: {"test_accuracy": 0.80, "epochs_run": 20, "verdict": "good fit", "flag": True, "once": 1.0}},
        {PATH: {"test_accuracy": 0.82, "epochs_run": 20, "verdict": "underfit", "flag": False}},
        {PATH: {"test_accuracy": 0.84, "epochs_run": 20, "verdict": "good fit", "flag": True}, COMPARISON: {}},
    ]
    result = seed_spread.spread(per_seed)[PATH]
    assert set(result) == {"test_accuracy", "epochs_run"}, "no strings, no booleans, no metric a seed lacks"
    accuracy = result["test_accuracy"]
    assert accuracy.values == [0.80, 0.82, 0.84]
    assert accuracy.mean == pytest.approx(0.82) and accuracy.std == pytest.approx(0.02)  # sample std (n - 1)
    assert (accuracy.min, accuracy.max) == (0.80, 0.84)
    assert seed_spread.verdicts(per_seed) == {PATH: ["good fit", "underfit", "good fit"]}, "in seed order"


def test_the_spread_keeps_only_the_files_its_seed_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    own = seed_spread.own_files(load_params())
    models = ("mlp", "cnn_overfit", "cnn_simplified", "cnn_simplified_augmented")
    expected = {f"metrics/fashion_mnist/{model}.json" for model in models} | {COMPARISON}
    assert own == expected, "not cifar/'s files: its own params.yaml has its own seed"


def test_one_head_value_is_judged_by_the_prediction_interval() -> None:
    seeds = [0.80, 0.82, 0.84]
    k, mean, sd = len(seeds), float(np.mean(seeds)), float(np.std(seeds, ddof=1))
    half_width = stats.t.ppf(1 - noise.ALPHA / 2, k - 1) * sd * math.sqrt(1 + 1 / k)
    inside, outside = noise.relations([(seeds, [mean + 0.999 * half_width]), (seeds, [mean - 1.001 * half_width])])
    assert not noise.relations([(seeds, [mean + 0.999 * half_width])])[0].beyond
    assert noise.relations([(seeds, [mean - 1.001 * half_width])])[0].beyond
    assert str(noise.relations([(seeds, [mean + 0.5])])[0]) == "beyond noise (p = 0.0021, Holm)"  # two df: long tails
    assert str(noise.relations([(seeds * 2, [mean + 0.5])])[0]) == "beyond noise (p < 0.001, Holm)"
    assert str(noise.relations([(seeds, [mean])])[0]) == "within noise (p = 1, Holm)"
    # Judged together, Holm doubles the smaller p: the value just outside the interval is within noise now.
    assert outside.p == pytest.approx(2 * noise.relations([(seeds, [mean - 1.001 * half_width])])[0].p)
    assert not inside.beyond and not outside.beyond


def test_two_steps_with_seeds_are_the_two_sample_t_test() -> None:
    base, head = [0.80, 0.82, 0.84], [0.85, 0.86, 0.90, 0.88]
    (relation,) = noise.relations([(base, head)])
    assert relation.difference == pytest.approx(np.mean(head) - np.mean(base))
    assert relation.p == pytest.approx(stats.ttest_ind(head, base).pvalue)  # pooled (equal variances)


def test_paired_claims_are_the_one_sample_t_test_of_the_per_seed_differences() -> None:
    shrinks, flat, once = [-0.03, -0.035, -0.028, -0.031, -0.04], [0.01, -0.012, 0.004, -0.003, 0.002], [0.5]
    first, second, third = noise.paired([shrinks, flat, once])
    raw = [stats.ttest_1samp(shrinks, 0).pvalue, stats.ttest_1samp(flat, 0).pvalue]
    assert (first.p, second.p) == pytest.approx(list(noise.holm(np.array(raw))))
    assert first.beyond and first.difference == pytest.approx(np.mean(shrinks)) and not second.beyond
    assert third.p is None, "one seed: no noise estimate, left out of Holm's family"
    assert noise.paired([[0.02, 0.02, 0.02]])[0].p == 0.0 and noise.paired([[0.0, 0.0]])[0].p == 1.0


def test_intervals_of_the_mean_and_of_one_more_run() -> None:
    values = [0.80, 0.82, 0.84, 0.81]
    t, sd = stats.t.ppf(0.975, 3), float(np.std(values, ddof=1))
    assert noise.interval(values, single=False) == pytest.approx(t * sd / 2)
    assert noise.interval(values, single=True) == pytest.approx(t * sd * math.sqrt(1 + 1 / 4))


RUNS = {role: f"metrics/fashion_mnist/{model}.json" for role, model in (
    ("mlp", "mlp"), ("overfit", "cnn_overfit"), ("simplified", "cnn_simplified"),
    ("augmented", "cnn_simplified_augmented"))}  # fmt: skip


def runs_spread(**values: dict[str, list[float]]) -> noise.SeedSpread:
    """A measured spread of the default profile's runs: role -> metric -> the values of seeds 0..k-1."""
    per_path = {RUNS[role]: {m: spread_of(*v).model_copy(update={"values": v}) for m, v in found.items()}
                for role, found in values.items()}  # fmt: skip
    k = len(next(iter(next(iter(values.values())).values())))
    return noise.SeedSpread(status=noise.MEASURED, seeds=list(range(k)), metrics=per_path)


def test_claims_hold_fail_to_show_or_are_contradicted_and_name_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    spread = runs_spread(
        overfit={"gap": [0.13, 0.14, 0.135, 0.138, 0.132], "train_accuracy_inference": [0.99, 0.98, 0.97, 0.99, 1.0],
                 "test_accuracy": [0.82, 0.83, 0.81, 0.82, 0.825]},
        simplified={"gap": [0.10, 0.105, 0.098, 0.11, 0.1], "test_accuracy": [0.81, 0.84, 0.80, 0.85, 0.83]},
        mlp={"test_accuracy": [0.85, 0.86, 0.855, 0.852, 0.858]},
    )  # fmt: skip
    table = claims.report(spread, load_params())
    rows = {row.split(" | ")[1]: row for row in table.splitlines() if row.startswith("| fashion_mnist |")}
    assert len(rows) == len(claims.CLAIMS), "every declared claim is listed, read or not"
    assert (
        "| 5 of 5 | -3.2 [" in rows["simplifying shrinks the gap"]
        and "| holds (p" in rows["simplifying shrinks the gap"]
    )
    assert "| 5 of 5 |" in rows["the overfitting CNN fits its training set (train ≥ overfit_train_min)"]
    assert "not shown: within noise" in rows["the simplified CNN is more accurate on test"], "2 of 5 seeds: noise"
    assert "**contradicted**: beyond noise the other way" in rows["the MLP is below the overfitting CNN on test"]
    assert (
        "not read: gap of metrics/fashion_mnist/cnn_simplified_augmented.json not in the spread"
        in (rows["augmentation shrinks the gap further"])
    )
    assert (
        "not read: val_accuracy_inference of metrics/fashion_mnist/cnn_simplified.json not in the spread"
        in (rows["the simplified CNN is more accurate on validation"])
    )
    assert f"Holm over the {sum('not read' not in row for row in rows.values())} claims" in table


def test_two_machines_compared_by_the_two_sample_rule() -> None:
    here = runs_spread(
        overfit={"gap": [0.11, 0.112, 0.115, 0.109, 0.113], "test_accuracy": [0.81, 0.82, 0.80, 0.815, 0.81]}
    )
    there = runs_spread(overfit={"gap": [0.135, 0.14, 0.132], "test_accuracy": [0.80, 0.825, 0.81]})
    text = noise.compare_machines(here, there)
    assert "1 of 2 headline rows differ between the two machines beyond noise" in text
    assert "the largest such shift: -2.4 points (metrics/fashion_mnist/cnn_overfit.json gap)" in text
    assert (
        "| metrics/fashion_mnist/cnn_overfit.json | test_accuracy | 0.8117 | 0.8110 | -0.1 | within noise (p =" in text
    )
    assert noise.compare_machines(here, noise.not_measured()).endswith("nothing to compare.")


def test_a_metric_that_never_varied_and_a_single_seed() -> None:
    constant = [0.3, 0.3, 0.3]
    assert noise.relations([(constant, [0.3])])[0].p == 1.0
    assert noise.relations([(constant, [0.3 + 1e-12])])[0].p == 1.0, "float rounding is not a change"
    assert noise.relations([(constant, [0.31])])[0].p == 0.0
    one = noise.relations([([0.85], [0.83])])[0]
    assert one.p is None and one.beyond and str(one) == "no noise estimate (one seed)"
    assert not noise.relations([([0.85], [0.85])])[0].beyond


def test_holm_adjusts_over_the_family_in_its_order() -> None:
    assert noise.holm(np.array([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])
    np.testing.assert_allclose(noise.holm(np.array([[0.5, 0.001], [0.2, 0.9]])), [[0.5, 0.002], [0.4, 0.9]])
    # Rows without a noise estimate are not part of the family: the other row keeps its own p.
    first, second = noise.relations([([0.80, 0.82, 0.84], [0.81]), ([0.8], [0.9])])
    assert first.p == pytest.approx(noise.relations([([0.80, 0.82, 0.84], [0.81])])[0].p) and second.p is None


def test_the_family_is_declared_once_with_the_metrics_files_real_names(committed: noise.SeedSpread) -> None:
    runs = sorted((REPO / "metrics" / "fashion_mnist").glob("*.json"))
    runs = [path for path in runs if ".per_class" not in path.name]
    for path in runs:
        assert set(noise.FAMILY_RUN) <= set(json.loads(path.read_text(encoding="utf-8"))), path
    assert set(noise.FAMILY_COMPARISON) <= set(json.loads((REPO / COMPARISON).read_text(encoding="utf-8")))
    expected = {(f"metrics/fashion_mnist/{path.name}", metric) for path in runs for metric in noise.FAMILY_RUN}
    expected |= {(COMPARISON, metric) for metric in noise.FAMILY_COMPARISON}
    assert set(committed.family()) == expected
    assert noise.machine_dependent("seconds_per_epoch") and noise.machine_dependent("images_per_second")
    assert not any(noise.machine_dependent(metric) for metric in (*noise.FAMILY_RUN, *noise.FAMILY_COMPARISON))


def test_committed_file_is_measured_on_three_seeds_or_more_and_loads(committed: noise.SeedSpread) -> None:
    assert committed.measured and len(committed.seeds) >= 3
    accuracy = committed.spread(PATH, "test_accuracy")
    assert accuracy is not None and len(accuracy.values) == len(committed.seeds)
    assert accuracy.min <= accuracy.mean <= accuracy.max
    assert committed.machine is not None and committed.machine.cpu_flags, "the CPU flags the seeds ran on"
    if committed.verdicts is not None:
        assert all(len(found) == len(committed.seeds) for found in committed.verdicts.values())


def test_false_alarm_rate_of_a_no_change_reproduction_is_at_most_alpha(committed: noise.SeedSpread) -> None:
    """Simulated from the committed means and sds with other draws than the printed figure: a reproduction that
    changes nothing marks some headline row at most ALPHA of the time (plus 3 Monte-Carlo standard errors), by
    the implementation and by the prediction interval written out (Holm marks a row iff one is outside its
    interval at ALPHA / m)."""
    rows = [committed.metrics[path][metric] for path, metric in committed.family()]
    means, sds, k, m = (
        np.array([r.mean for r in rows]),
        np.array([r.std for r in rows]),
        len(committed.seeds),
        len(rows),
    )
    draws = noise.DRAWS
    marked = noise.simulate(means, sds, k, seed=1).any(axis=1).mean()
    rng = np.random.default_rng(2)
    base, head = rng.normal(means[:, None], sds[:, None], (draws, m, k)), rng.normal(means, sds, (draws, m))
    half_width = stats.t.ppf(1 - noise.ALPHA / (2 * m), k - 1) * base.std(axis=-1, ddof=1) * math.sqrt(1 + 1 / k)
    outside = (np.abs(head - base.mean(axis=-1)) > half_width).any(axis=1).mean()
    error = math.sqrt(noise.ALPHA * (1 - noise.ALPHA) / draws)
    assert marked <= noise.ALPHA + 3 * error and outside <= noise.ALPHA + 3 * error
    assert abs(marked - outside) <= 6 * error
    rate, printed_error = committed.false_alarm_rate()
    assert abs(rate - marked) <= 6 * printed_error, "the printed rate is the same quantity"


def test_the_smallest_detectable_change_is_detected_80_percent_of_the_time(committed: noise.SeedSpread) -> None:
    """The printed change of a row, all others unchanged, judged as the check judges (Holm over the family): marked
    POWER of the time. For the rows with the smallest, the median and the largest seed sd (the change is the same
    multiple of the sd for every row)."""
    family = committed.family()
    rows = [committed.metrics[path][metric] for path, metric in family]
    means, sds, k = np.array([r.mean for r in rows]), np.array([r.std for r in rows]), len(committed.seeds)
    error = math.sqrt(noise.POWER * (1 - noise.POWER) / noise.DRAWS)
    varied = sorted((sd, index) for index, sd in enumerate(sds) if sd > 0)
    for sd, index in (varied[0], varied[len(varied) // 2], varied[-1]):
        shift = np.zeros(len(rows))
        shift[index] = noise.smallest_detectable(sd, k, len(rows))
        detected = noise.simulate(means, sds, k, shift, seed=3 + index)[:, index].mean()
        assert abs(detected - noise.POWER) <= 3 * error + 0.002, (family[index], detected)  # + Holm's later steps


def figures(text: str) -> tuple[float, dict[tuple[str, str], float]]:
    """The false-alarm rate (%) and the smallest detectable change per row, as `report` prints them."""
    rate = re.search(r"False-alarm rate of a no-change reproduction \(any of the \d+ rows marked\): ([\d.]+) %", text)
    rows = re.findall(
        r"^\| (metrics/\S+) \| (\w+) \| [\d.]+ \| ([\d.]+) \| [\d.]+ \| [\d.]+ \|$", text, flags=re.MULTILINE
    )
    assert rate and rows, text
    return float(rate.group(1)), {(path, metric): float(change) for path, metric, change in rows}


def test_the_readme_quotes_what_the_command_computes_for_the_committed_spread(committed: noise.SeedSpread) -> None:
    """The documentation's figures for the committed spread (read from README.md and docs/*.md; they are in
    docs/pr-check.md), within the Monte-Carlo error and the printed rounding: a refreshed spread without refreshed
    figures fails here (paste `python -m overfit_first noise` into docs/pr-check.md)."""
    readme = docs_text()
    quoted_rate, quoted = figures(readme)
    rate, error = committed.false_alarm_rate()
    computed_rate, computed = figures(noise.report(committed))
    assert computed_rate == pytest.approx(100 * rate, abs=0.05)
    assert abs(quoted_rate - 100 * rate) <= 100 * 3 * error + 0.05
    assert set(quoted) == set(computed) == set(committed.family())
    for row, change in computed.items():
        assert quoted[row] == pytest.approx(change, abs=0.0015), row
    table = [line for line in noise.report(committed).splitlines() if line.startswith("| metrics/")]
    assert [line for line in table if line not in readme] == [], "the power table, as printed (deterministic)"
    per_sd = re.search(
        r"about ([\d.]+) of them with three\s+seeds .*?about ([\d.]+) with five, about ([\d.]+) with ten",
        readme,
        re.DOTALL,
    )
    assert per_sd, "the README's factors of the seed standard deviation"
    m = len(committed.family())
    for seeds, factor in zip((3, 5, 10), per_sd.groups()):
        assert float(factor) == pytest.approx(noise.smallest_detectable(1.0, seeds, m), rel=0.03), seeds


def test_the_docs_quote_the_claims_and_the_two_machines_as_printed(
    committed: noise.SeedSpread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m overfit_first claims` and `... noise --against` are deterministic: the docs quote them line for
    line (docs/results.md), the front page the claims' results table without its verdicts, and the comment's
    sentence on machines (noise.CROSS_MACHINE) states what the comparison measured."""
    monkeypatch.chdir(REPO)
    text = docs_text()
    printed = claims.report(committed, load_params())
    machines = noise.compare_machines(committed, noise.load(REPO / noise.MACHINES_SPREAD))
    assert [line for line in (printed + "\n" + machines).splitlines() if line and line not in text] == []
    front = (REPO / "README.md").read_text(encoding="utf-8")
    rows = [line for line in printed.splitlines() if line.startswith("| `")]
    assert rows and all("|".join(row.split("|")[:6]) + "|" in front for row in rows)
    assert "0 of 14 headline rows differ between the two machines beyond noise" in machines
    assert "no headline row differed beyond noise, the largest shift 1.8 points" in noise.CROSS_MACHINE
    assert "the largest shift: -1.8 points" in machines


def test_an_unmeasured_file_says_so() -> None:
    unmeasured = noise.SeedSpread(status=noise.NOT_MEASURED, command=noise.REFRESH)
    assert not unmeasured.measured and not unmeasured.metrics and not unmeasured.family(), "no invented numbers"
    assert "not measured yet" in unmeasured.summary() and noise.REFRESH in unmeasured.summary()
    assert noise.report(unmeasured) == unmeasured.summary()
    assert noise.REFRESH == "python -m overfit_first seed_spread --seeds 0 1 2 3 4"


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    assert noise.load(tmp_path / "absent.json").status == noise.NOT_MEASURED
    bad = tmp_path / "seed_spread.json"
    bad.write_text(json.dumps({"status": "measured", "metrics": {PATH: {"test_accuracy": {"mean": 1}}}}))
    with pytest.raises(PipelineError, match=r"is not a seed-spread file .* rewrite it with `python -m overfit_first"):
        noise.load(bad)
    bad.write_text(json.dumps({"status": "measured", "verdicts": {PATH: "good fit"}}))
    with pytest.raises(PipelineError, match="is not a seed-spread file"):
        noise.load(bad)
    bad.write_text("{")
    with pytest.raises(PipelineError, match="is not a seed-spread file"):
        noise.load(bad)


def test_measured_summary_states_family_rule_seeds_and_false_alarm_rate() -> None:
    spread = measured(test_accuracy=spread_of(0.80, 0.82, 0.84), gap=spread_of(0.1, 0.11, 0.12)).model_copy(
        update={"measured_at": "2026-01-02T03:04:05Z", "commit": "0123456789abcdef", "machine": XEON}
    )
    summary = spread.summary()
    assert summary.startswith("Noise: only the 2 headline rows are judged (each run's test_accuracy, ")
    assert "seeds 0, 1, 2 of the default profile by Student's t (its prediction interval), Holm" in summary
    assert re.search(r"marks any row [\d.]+ % of the time", summary)
    assert "timings as *depends on the machine*: never judged" in summary
    assert summary.endswith("Spread: metrics/seed_spread.json, measured 2026-01-02T03:04:05Z at commit 0123456789.")


RUNNER = "this runner (the machine writing this comment; in CI, the one that reproduced it) is "


def test_the_comment_names_both_machines_and_says_when_they_differ() -> None:
    spread = measured().model_copy(update={"machine": XEON})
    assert spread.machines(XEON.model_copy(update={"cpu": "another Xeon"})) == (
        "Machines: the spread was measured on Xeon (flags avx2, fma, amx_tile); " + RUNNER + "another Xeon (flags "
        "avx2, fma, amx_tile): the same instruction sets, so the same kernels."
    )
    differ = spread.machines(EPYC)
    assert differ.startswith(
        "**Machines differ**: the spread was measured on Xeon (flags avx2, fma, amx_tile); " + RUNNER + "EPYC "
        "(flags avx2, fma): different instruction sets pick different oneDNN kernels"
    )
    assert "Read the marks with care" in differ and "no headline row differed beyond noise" in differ
    assert measured().machines(EPYC).startswith("Machines: metrics/seed_spread.json does not record where")


def test_machine_records_cpu_and_vector_flags() -> None:
    here = machine()
    assert here.cpu and here.cores >= 1
    assert set(here.cpu_flags) <= set(VECTOR_FLAGS)
    assert "keras" in here.packages
    assert seed_spread.machine is machine, "one implementation for the spread and the comment"


def test_table_judges_the_headline_rows_only() -> None:
    diff = {
        PATH: {
            "test_accuracy": {"old": 0.8, "new": 0.99, "diff": 0.19},
            "gap": {"old": 0.1, "new": 0.11, "diff": 0.01},
            "val_loss": {"old": 0.8, "new": 0.9, "diff": 0.1},
            "seconds_per_epoch": {"old": 5.0, "new": 3.0, "diff": -2.0},
            "val_accuracy_inference": {"old": 0.8, "new": 0.81, "diff": 0.01},
            "verdict": {"old": "good fit", "new": "underfit"},
            "new_metric": {"old": None, "new": 3},
        }
    }
    spread = measured(test_accuracy=spread_of(0.80, 0.82, 0.84), gap=spread_of(0.1, 0.11, 0.12))
    judged = pr_comment.judge_family(spread, {PATH: {"test_accuracy": 0.99, "gap": 0.11, "val_loss": 0.9}})
    assert set(judged) == {(PATH, "test_accuracy"), (PATH, "gap")}, "the family, where the spread has seeds"
    assert pr_comment.beyond_line(judged) == f"Beyond noise: 1 of 2 headline rows: `{PATH}` test_accuracy."
    rows = pr_comment.diff_table(diff, "origin/main", spread, judged).splitlines()
    assert rows[0] == "| Path | Metric | origin/main | this pull request | Change | Noise |"
    # test_accuracy 0.99 against 0.82 ± 0.02 over 3 seeds: p = 0.018 alone, 0.036 by Holm over the two rows
    assert rows[2:] == [
        f"| {PATH} | gap | 0.1 | 0.11 | 0.01 | within noise (p = 1, Holm) |",
        f"| {PATH} | new_metric | - | 3 | - |  |",
        f"| {PATH} | seconds_per_epoch | 5.0 | 3.0 | -2.0 | depends on the machine |",
        f"| {PATH} | test_accuracy | 0.8 | 0.99 | 0.19 | **beyond noise** (p = 0.036, Holm) |",
        f"| {PATH} | val_accuracy_inference | 0.8 | 0.81 | 0.01 | no spread |",
        f"| {PATH} | val_loss | 0.8 | 0.9 | 0.1 |  |",
        f"| {PATH} | verdict | good fit | underfit | - |  |",
    ]
    unmeasured = pr_comment.diff_table(diff, "origin/main", noise.not_measured(), {})
    assert f"| {PATH} | test_accuracy | 0.8 | 0.99 | 0.19 | not measured |" in unmeasured
    assert f"| {PATH} | seconds_per_epoch | 5.0 | 3.0 | -2.0 | depends on the machine |" in unmeasured
    assert pr_comment.diff_table({}, "origin/main", spread, judged) == "No metric changed from `origin/main`."


# gap 0.104 ± 0.007 and train 0.973 ± 0.005 over three seeds (the simplified CNN's committed spread, rounded)
GAP, TRAIN = spread_of(0.098, 0.102, 0.112), spread_of(0.974, 0.977, 0.968)


def gate(old: str, new: str, verdicts: list[str] | None, gap: float, train: float = 0.973) -> tuple[bool, str]:
    spread = measured({PATH: verdicts} if verdicts is not None else None, gap=GAP, train_accuracy_inference=TRAIN)
    return pr_comment.gate(PATH, old, new, spread, {"gap": gap, "train_accuracy_inference": train})


def test_a_worse_verdict_within_the_seeds_range_passes() -> None:
    # The committed simplified CNN: its seeds are good fit, still learning, true overfit; a re-roll to true overfit
    # with a gap of 0.112 is one of them.
    fails, reason = gate("good fit", "true overfit", ["good fit", "still learning", "true overfit"], gap=0.112)
    assert not fails and reason == "within the seeds' range (good fit, still learning, true overfit)"
    assert not gate("good fit", "underfit", ["still learning"] * 3, gap=0.5)[0], "no ranked seed: not worse"


def test_a_worse_verdict_fails_only_with_a_deciding_metric_beyond_noise() -> None:
    fails, reason = gate("good fit", "partial overfit", ["good fit", "good fit", "true overfit"], gap=0.30, train=0.6)
    assert fails and reason.startswith("worse than every seed's (good fit, good fit, true overfit), and gap 0.300")
    assert "beyond noise (p < 0.001, Holm)" in reason
    fails, reason = gate("good fit", "partial overfit", ["good fit"] * 3, gap=0.115)
    assert not fails
    assert reason.startswith("worse than every seed's (good fit, good fit, good fit), but no metric that decides it")
    assert "gap 0.115 against seeds 0.104 ± 0.007 sd, within noise" in reason


def test_a_spread_without_verdicts_per_seed_says_so_and_compares_with_the_base() -> None:
    fails, reason = gate("good fit", "true overfit", None, gap=0.112)
    assert not fails and "keeps no verdict per seed: `python -m overfit_first seed_spread --seeds 0 1 2 3 4`" in reason
    assert reason.startswith("worse than the base's committed verdict")
    assert gate("good fit", "true overfit", None, gap=0.4)[0], "beyond noise: fails"
    fails, reason = pr_comment.gate(
        PATH, "good fit", "underfit", noise.not_measured(), {"train_accuracy_inference": 0.5}
    )
    assert fails and reason == "no seed spread of this run to judge it against"


def test_committed_spread_without_verdicts_keeps_the_gate_working(committed: noise.SeedSpread) -> None:
    head = json.loads((REPO / PATH).read_text(encoding="utf-8"))
    fails, reason = pr_comment.gate(PATH, "good fit", "true overfit", committed, head)
    assert not fails, reason
    if committed.verdicts is None:
        assert "keeps no verdict per seed" in reason


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
    found = pr_comment.worse_verdicts({PATH: {"verdict": {"old": old, "new": new}}}, noise.not_measured(), {})
    assert [(entry.run, entry.old, entry.new, entry.fails) for entry in found] == (
        [(PATH, old, new, True)] if worse else []
    )


def test_worse_verdicts_named_by_their_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("runs:\n  fm-simplified: {dataset: fashion_mnist, model: cnn_simplified}\n")
    diff = {
        PATH: {"verdict": {"old": "good fit", "new": "partial overfit"}},
        "metrics/fashion_mnist/mlp.json": {"verdict": {"old": "underfit", "new": "good fit"}},
    }
    worse = pr_comment.worse_verdicts(diff, noise.not_measured(), {})
    assert [str(entry) for entry in worse] == ["fm-simplified: good fit -> partial overfit"]
    lines = pr_comment.verdict_lines(worse)
    assert lines[0].startswith(
        "**Check failed: a verdict got worse** (order: good fit > true overfit > "
        "partial overfit > underfit; *still learning* is not ranked)"
    )
    assert "- `fm-simplified`: good fit → **partial overfit**: no seed spread of this run to judge it against" in lines
    passing = [pr_comment.VerdictChange("fm-simplified", "good fit", "true overfit", False, "within the seeds' range")]
    lines = pr_comment.verdict_lines(passing)
    assert lines[0].startswith("Verdicts: none got worse beyond the noise (order: ")
    assert "- `fm-simplified`: good fit → true overfit: within the seeds' range" in lines
    assert pr_comment.verdict_lines([])[0].startswith("Verdicts: none got worse (order: ")


def test_the_metrics_contract_admits_only_the_verdicts_the_check_ranks() -> None:
    """metrics.read (which the check runs on every run's file first) rejects a verdict the order does not know,
    such as "gud fit": else a run's verdict could change to it without failing the check."""
    known = {*pr_comment.VERDICT_ORDER, "still learning"}
    assert set(get_args(metrics.Verdict)) == known == set(verdict.RECOMMENDATIONS)
    assert set(pr_comment.DECIDED_BY) == set(pr_comment.VERDICT_ORDER), "each ranked verdict has its deciders"
    assert {metric for deciders in pr_comment.DECIDED_BY.values() for metric in deciders} <= set(
        metrics.EvalMetrics.model_fields
    )


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
    assert pr_comment.noise_mark(noise.not_measured(), {}, PATH, "test_accuracy", {"old": 0.8, "new": "n/a"}) == ""
