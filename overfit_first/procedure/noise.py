"""Run-to-run noise and the one rule that says whether a value moved beyond it. The pull-request check
(overfit_first.tools.pr_comment), the ladder and the data-size curve (overfit_first.procedure.sweep's users) all use
`relations`.

The noise: metrics/seed_spread.json (layout.SEED_SPREAD), written by `python -m overfit_first seed_spread` (REFRESH,
five seeds) and committed. Per metrics file and metric (the paths and names `dvc metrics diff` prints) it holds the
values over k seeds of the default profile with their mean, sample standard deviation (n - 1), minimum and maximum,
in the metric's own units (accuracies and gaps: fractions 0..1); each seed's verdict per run (`verdicts`); the seeds,
date, commit and machine (overfit_first.machine). The seed varies the weights' initialization, the shuffling, the
dropout masks and the augmentation only; the data is fixed (the training subset is each class's first images,
seed-free), because a pull request's reproduction retrains on the same data: data sampling is not part of the
noise its check must absorb. Until it is measured the file says "not measured" and nothing is judged.

The rule (`compare`): base values x_1..x_k (mean m), head values y_1..y_n, n + k >= 3; s_p the pooled sample
standard deviation over n + k - 2 degrees of freedom; t = (mean(y) - m) / (s_p * sqrt(1/n + 1/k)) and its
two-sided p-value from Student's t (scipy.stats.t). With one head value s_p is the base's own s (k - 1 degrees of
freedom) and the rule is the prediction interval: y is beyond noise at level alpha exactly when it lies outside
m ± t(1 - alpha/2, k - 1) * s * sqrt(1 + 1/k). Two sweep steps, each over seeds, are its two-sample case. With
normal noise a value that did not change is marked with probability alpha, whatever m, s and k.

The family: a reproduction moves every number at once, so the pull-request check judges only FAMILY (declared
below) and controls the family-wise error with Holm-Bonferroni at ALPHA (valid under any dependence between rows);
the sweeps apply Holm over each run's comparisons. Every other number is shown unmarked, and machine-dependent
ones (MACHINE_DEPENDENT) are never judged. `python -m overfit_first noise` prints, for the committed spread, the
family, its false-alarm rate (simulated) and its power (the smallest change of each row detected 80 % of the time).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from overfit_first import layout
from overfit_first.errors import PipelineError, run_stage
from overfit_first.machine import Machine

ALPHA = 0.05  # family-wise: the chance that a change that changes nothing marks any judged row
POWER = 0.8  # the power the smallest detectable change is quoted at
DRAWS, DRAWS_SEED = 20_000, 0  # simulated reproductions for the false-alarm rate
# The headline metrics, the only ones judged: per run (metrics/<dataset>/<model>.json) and per dataset
# (metrics/<dataset>.comparison.json). val_accuracy_inference, like gap, is measured on the saved model (it equals
# the training log's val_accuracy; overfit_first.evaluation); the gains are the test-accuracy gains of simplifying.
FAMILY_RUN = ("test_accuracy", "val_accuracy_inference", "gap")
FAMILY_COMPARISON = ("simplified_test_accuracy_gain", "augmented_test_accuracy_gain")
# Metrics whose name holds one of these words measure the machine, not the model: never judged.
MACHINE_DEPENDENT = ("second", "throughput", "memory")
# What another instruction set did to the same params, measured by compare_machines (docs/results.md, Across
# machines): the seeds of an Intel Xeon with AMX against those of an AMD EPYC without.
MACHINES_SPREAD = layout.METRICS / "seed_spread.intel-xeon-amx.json"
CROSS_MACHINE = (
    "between an Intel Xeon with AMX (3 seeds) and an AMD EPYC without (5 seeds) no headline row differed beyond "
    f"noise, the largest shift 1.8 points (`python -m overfit_first noise --against {MACHINES_SPREAD.as_posix()}`): "
    "each run's numbers change, the seeds' spread did not measurably"
)
EPS = 1e-9  # below any real difference of the (rounded) metrics: float rounding, not a change
MEASURED, NOT_MEASURED = "measured", "not measured"
WITHIN, BEYOND, MACHINE = "within noise", "beyond noise", "depends on the machine"
REFRESH = "python -m overfit_first seed_spread --seeds 0 1 2 3 4"


def in_family(path: str, metric: str) -> bool:
    """Whether `metric` of the metrics file `path` is a judged headline metric (FAMILY_RUN, FAMILY_COMPARISON)."""
    return metric in (FAMILY_COMPARISON if path.endswith(".comparison.json") else FAMILY_RUN)


def machine_dependent(metric: str) -> bool:
    """Whether `metric` measures the machine (a timing, a throughput, a memory size): MACHINE_DEPENDENT."""
    return any(word in metric for word in MACHINE_DEPENDENT)


def p_values(base: np.ndarray, head: np.ndarray) -> np.ndarray:
    """The rule's two-sided p-values, vectorized: `base` (..., k) and `head` (..., n) give shape (...).

    NaN where n + k < 3 (no degree of freedom for the noise). A pooled standard deviation below EPS (a metric that
    never varied) gives p = 1 when the means agree within EPS, else 0.
    """
    k, n = base.shape[-1], head.shape[-1]
    df = n + k - 2
    if df < 1 or min(k, n) < 1:
        return np.full(np.broadcast_shapes(base.shape[:-1], head.shape[:-1]), np.nan)
    base_mean, head_mean = base.mean(axis=-1), head.mean(axis=-1)
    squares = ((base - base_mean[..., None]) ** 2).sum(axis=-1) + ((head - head_mean[..., None]) ** 2).sum(axis=-1)
    error = np.sqrt(squares / df) * math.sqrt(1 / n + 1 / k)
    difference = head_mean - base_mean
    from scipy import stats  # here, not at the top: its import costs ~2 s of CPU that a command's --help need not pay

    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * stats.t.sf(np.abs(difference / error), df)
    return np.where(error < EPS, np.where(np.abs(difference) < EPS, 1.0, 0.0), p)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values over the last axis (the family), same shape and order; a row is beyond
    noise when its adjusted p < ALPHA, which bounds the chance of any false mark by ALPHA."""
    m = p.shape[-1]
    order = np.argsort(p, axis=-1)
    ranked = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    result = np.empty_like(adjusted)
    np.put_along_axis(result, order, adjusted, axis=-1)
    return result


def format_p(p: float) -> str:
    """`p = 0.036`, `p = 1`, or `p < 0.001` (two significant digits)."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


@dataclass(frozen=True)
class Relation:
    """Head against base by the rule: `difference` = mean(head) - mean(base) in the metric's units; `p` the
    Holm-adjusted p-value over the family it was judged in, None without a noise estimate (one value each)."""

    difference: float
    p: float | None

    @property
    def beyond(self) -> bool:
        """p < ALPHA; without a noise estimate any difference counts (the callers' tolerance then decides)."""
        return abs(self.difference) >= EPS if self.p is None else self.p < ALPHA

    def __str__(self) -> str:
        """`beyond noise (p = 0.01, Holm)`, `within noise (p = 0.4, Holm)`, or `no noise estimate (one seed)`."""
        if self.p is None:
            return "no noise estimate (one seed)"
        return f"{BEYOND if self.beyond else WITHIN} ({format_p(self.p)}, Holm)"


def relations(pairs: Sequence[tuple[Sequence[float], Sequence[float]]]) -> list[Relation]:
    """Each (base values, head values) pair by the rule (values in the metric's units, one per seed; a head of one
    value is the prediction-interval case), Holm over the pairs that have a noise estimate; in `pairs` order."""
    raw = [float(p_values(np.asarray(base, float), np.asarray(head, float))) for base, head in pairs]
    return with_holm([float(np.mean(head) - np.mean(base)) for base, head in pairs], raw)


def paired(differences: Sequence[Sequence[float]]) -> list[Relation]:
    """Each list of per-seed differences (the same seed's left value minus its right value, in the metric's units)
    against zero: the rule's paired form, Student's one-sample t with k - 1 degrees of freedom, Holm over the lists
    with k >= 2; in order. Used for claims that compare two runs trained with the same seeds
    (overfit_first.procedure.claims)."""
    raw = [one_sample_p(np.asarray(values, float)) if len(values) >= 2 else math.nan for values in differences]
    return with_holm([float(np.mean(values)) for values in differences], raw)


def one_sample_p(d: np.ndarray) -> float:
    """Two-sided p of mean(d) = 0 by Student's t, k - 1 degrees of freedom (k = len(d) >= 2); a spread below EPS
    gives 1 when the mean is 0 within EPS, else 0."""
    from scipy import stats  # as in p_values

    error = float(d.std(ddof=1)) / math.sqrt(len(d))
    if error < EPS:
        return 1.0 if abs(d.mean()) < EPS else 0.0
    return float(2 * stats.t.sf(abs(d.mean()) / error, len(d) - 1))


def with_holm(differences: list[float], raw: list[float]) -> list[Relation]:
    """Relations of `differences` with their raw p-values Holm-adjusted over those that are not NaN (NaN: no noise
    estimate, p None)."""
    tested = [index for index, p in enumerate(raw) if not math.isnan(p)]
    adjusted = holm(np.array([raw[index] for index in tested])) if tested else np.array([])
    holm_p = dict(zip(tested, adjusted.tolist()))
    return [Relation(difference, holm_p.get(index)) for index, difference in enumerate(differences)]


def interval(values: Sequence[float], single: bool) -> float:
    """The 95 % half-width (at ALPHA) around the mean of `values` (k >= 2, metric's units): of the mean itself,
    t(1 - ALPHA/2, k - 1) * s / sqrt(k), or with `single` of one more run's value (the prediction interval),
    t(1 - ALPHA/2, k - 1) * s * sqrt(1 + 1/k)."""
    from scipy import stats  # as in p_values

    k = len(values)
    sd = float(np.std(np.asarray(values, float), ddof=1))
    return float(stats.t.ppf(1 - ALPHA / 2, k - 1)) * sd * (math.sqrt(1 + 1 / k) if single else 1 / math.sqrt(k))


def simulate(
    means: np.ndarray,
    sds: np.ndarray,
    k: int,
    shift: np.ndarray | None = None,
    draws: int = DRAWS,
    seed: int = DRAWS_SEED,
) -> np.ndarray:
    """Marks of `draws` simulated reproductions, (draws, m) booleans: per row, k base seeds and one head value drawn
    from normal noise (means, sds: shape (m,)), the head shifted by `shift` (m,), judged as the check judges (Holm
    over the m rows)."""
    rng = np.random.default_rng(seed)
    m = len(means)
    base = rng.normal(means[:, None], sds[:, None], (draws, m, k))
    head = rng.normal(means + (0 if shift is None else shift), sds, (draws, m))
    return holm(p_values(base, head[..., None])) < ALPHA


def smallest_detectable(sd: float, k: int, m: int) -> float:
    """The smallest change of one row (the others unchanged) marked beyond noise POWER of the time, in the row's
    units: Holm's first step (alpha / m) on the noncentral t; later steps add about 0.1 % at most, and the
    opposite tail under 1e-6 of power. `sd`: the row's seed standard deviation; k seeds; m judged rows."""
    from scipy import optimize, stats  # as in p_values

    df, critical = k - 1, stats.t.ppf(1 - ALPHA / (2 * m), k - 1)
    high = 1.0
    while stats.nct.sf(critical, df, high) < POWER:
        high *= 2
    shift = optimize.brentq(lambda nc: stats.nct.sf(critical, df, nc) - POWER, 0.0, high, xtol=1e-9)
    return shift * sd * math.sqrt(1 + 1 / k)


class MetricSpread(BaseModel):
    """One metric over the seeds, in the metric's units."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: list[float]  # one per seed, in SeedSpread.seeds order
    mean: float
    std: float  # sample standard deviation (n - 1); 0 with a single seed
    min: float
    max: float


@dataclass(frozen=True)
class Judged:
    """A head value judged against its seeds: `relation`'s p is Holm-adjusted over the rows judged together."""

    path: str
    metric: str
    head: float
    spread: MetricSpread
    relation: Relation

    def mark(self) -> str:
        """The pull-request comment's noise cell: `**beyond noise** (p = 0.003, Holm)` or `within noise (...)`."""
        text = str(self.relation)
        return f"**{BEYOND}**{text.removeprefix(BEYOND)}" if self.relation.beyond else text


class SeedSpread(BaseModel):
    """metrics/seed_spread.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: str  # MEASURED or NOT_MEASURED
    command: str = REFRESH
    seeds: list[int] = []
    measured_at: str | None = None  # UTC, ISO 8601
    commit: str | None = None  # the git commit whose default profile was measured
    experiments: list[str] = []  # the `dvc exp` names that hold each seed's results
    machine: Machine | None = None
    metrics: dict[str, dict[str, MetricSpread]] = {}  # metrics file -> metric -> spread
    verdicts: dict[str, list[str]] | None = None  # metrics file -> verdict per seed; None: measured before kept

    @property
    def measured(self) -> bool:
        return self.status == MEASURED

    def spread(self, path: str, metric: str) -> MetricSpread | None:
        return self.metrics.get(path, {}).get(metric)

    def family(self) -> list[tuple[str, str]]:
        """The judged rows this spread can judge: (metrics file, metric) of FAMILY, in file and metric order."""
        return [
            (path, metric)
            for path in sorted(self.metrics)
            for metric in sorted(self.metrics[path])
            if in_family(path, metric)
        ]

    def judge(self, heads: Sequence[tuple[str, str, float]]) -> list[Judged]:
        """Each (metrics file, metric, head value) against the metric's seeds, Holm over all of them; rows the
        spread has no values of are left out."""
        known = [(path, metric, head, self.spread(path, metric)) for path, metric, head in heads]
        known = [(path, metric, head, spread) for path, metric, head, spread in known if spread is not None]
        found = relations([(spread.values, [head]) for _, _, head, spread in known])
        return [Judged(path, metric, head, spread, rel) for (path, metric, head, spread), rel in zip(known, found)]

    def false_alarm_rate(self) -> tuple[float, float]:
        """(rate, Monte-Carlo standard error): the chance that a reproduction that changes nothing marks any row of
        `family()`, simulated with normal noise of the committed means and sds (DRAWS draws, seed DRAWS_SEED)."""
        rows = [self.metrics[path][metric] for path, metric in self.family()]
        if not rows:
            return 0.0, 0.0
        marked = simulate(np.array([r.mean for r in rows]), np.array([r.std for r in rows]), len(self.seeds))
        rate = float(marked.any(axis=1).mean())
        return rate, math.sqrt(rate * (1 - rate) / DRAWS)

    def summary(self) -> str:
        """The comment's paragraph on what the noise marks are based on."""
        if not self.measured:
            return (
                f"Noise: not measured yet ({layout.SEED_SPREAD} holds no seed spread), so no difference is "
                f"judged; `{self.command}` measures it on the default profile."
            )
        rate, _ = self.false_alarm_rate()
        family, k = self.family(), len(self.seeds)
        changes = [100 * smallest_detectable(self.metrics[path][metric].std, k, len(family)) for path, metric in family]
        sds = smallest_detectable(1.0, k, len(family))
        blunt = (
            f" With {k} seeds the check is blunt: a row is marked {100 * POWER:.0f} % of the time only when it "
            f"moved by {sds:.1f} of its seeds' standard deviations ({min(changes):.1f} to {max(changes):.1f} points "
            f"here), so *{WITHIN}* is no proof that nothing changed."
            if changes
            else ""
        )
        return (
            f"Noise: only the {len(family)} headline rows are judged (each run's "
            f"{', '.join(FAMILY_RUN)}; each dataset's {', '.join(FAMILY_COMPARISON)}): a value is ***{BEYOND}*** "
            f"when it lies outside the spread of seeds {', '.join(map(str, self.seeds))} of the default profile by "
            f"Student's t (its prediction interval), Holm over those rows at family-wise {ALPHA:g}. A reproduction "
            f"that changes nothing marks any row {100 * rate:.1f} % of the time (`python -m overfit_first noise`: "
            f"the smallest change each row detects).{blunt} Other rows are shown unmarked, timings as *{MACHINE}*: "
            f"never judged. Spread: {layout.SEED_SPREAD}, measured {self.measured_at} at commit "
            f"{(self.commit or '?')[:10]}."
        )

    def machines(self, runner: Machine) -> str:
        """One sentence naming both CPUs with their flags, and plainly whether they differ."""
        here = "this runner (the machine writing this comment; in CI, the one that reproduced it) is "
        here += runner.describe()
        if self.machine is None:
            return f"Machines: {layout.SEED_SPREAD} does not record where it was measured; {here}."
        there = f"the spread was measured on {self.machine.describe()}"
        if self.machine.cpu_flags == runner.cpu_flags:
            return f"Machines: {there}; {here}: the same instruction sets, so the same kernels."
        return (
            f"**Machines differ**: {there}; {here}: different instruction sets pick different oneDNN kernels; "
            f"{CROSS_MACHINE}. Read the marks with care."
        )


def not_measured() -> SeedSpread:
    return SeedSpread(status=NOT_MEASURED)


def load(path: Path = layout.SEED_SPREAD) -> SeedSpread:
    """The committed spread; a missing file counts as not measured, a malformed one is an error naming it."""
    if not path.is_file():
        return not_measured()
    try:
        return SeedSpread.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as error:
        raise PipelineError(
            f"{path} is not a seed-spread file ({str(error).splitlines()[0]}): "
            f"rewrite it with `{REFRESH}` or `git checkout {path}`"
        ) from error


def report(spread: SeedSpread) -> str:
    """What `python -m overfit_first noise` prints (Markdown): the family, its false-alarm rate and its power."""
    if not spread.measured:
        return spread.summary()
    family, k = spread.family(), len(spread.seeds)
    rate, error = spread.false_alarm_rate()
    machine = spread.machine.describe() if spread.machine else "an unrecorded machine"
    never = sorted({metric for metrics in spread.metrics.values() for metric in metrics if machine_dependent(metric)})
    lines = [
        f"Seed spread: {layout.SEED_SPREAD}, seeds {', '.join(map(str, spread.seeds))} (k = {k}), measured "
        f"{spread.measured_at} at commit {(spread.commit or '?')[:10]} on {machine}.",
        "",
        f"Rule: a head value is beyond noise when its two-sided p-value against the k seeds (Student's t; with one "
        f"value, the prediction interval) stays below {ALPHA:g} after Holm's correction over the {len(family)} "
        "judged rows below.",
        "",
        f"Never judged, shown as *{MACHINE}*: {', '.join(never) or 'none in this spread'}.",
        "",
        f"False-alarm rate of a no-change reproduction (any of the {len(family)} rows marked): {100 * rate:.1f} % "
        f"(Monte-Carlo standard error {100 * error:.2f} %; {DRAWS:,} simulated reproductions, normal noise with the "
        f"committed means and standard deviations, seed {DRAWS_SEED}).",
        "",
        f"Power: the smallest change of one row (the others unchanged) marked beyond noise {100 * POWER:.0f} % of the "
        "time:",
        "",
        "| metrics file | metric | seeds' sd | smallest change detected 80 % of the time | in accuracy points | one "
        "run's 95 % prediction interval, ± points |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for path, metric in family:
        row = spread.metrics[path][metric]
        change = smallest_detectable(row.std, k, len(family))
        tolerance = 100 * interval(row.values, single=True)
        lines.append(f"| {path} | {metric} | {row.std:.4f} | {change:.3f} | {100 * change:.1f} | {tolerance:.1f} |")
    return "\n".join(lines)


def compare_machines(spread: SeedSpread, other: SeedSpread) -> str:
    """Markdown: what changing the machine does, measured against what changing the seed does. Each headline row
    both spreads hold, `spread`'s seed values against `other`'s by the rule's two-sample form, Holm over the rows."""
    rows = [(path, metric) for path, metric in spread.family() if other.spread(path, metric) is not None]
    if not rows or not (spread.measured and other.measured):
        return "Machines: the two spreads share no measured headline row; nothing to compare."
    found = relations(
        [(other.metrics[path][metric].values, spread.metrics[path][metric].values) for path, metric in rows]
    )
    beyond = [(row, relation) for row, relation in zip(rows, found) if relation.beyond]
    shifts = sorted(beyond or list(zip(rows, found)), key=lambda item: -abs(item[1].difference))
    (top_path, top_metric), top = shifts[0]

    def where(seeds: SeedSpread) -> str:
        return f"{len(seeds.seeds)} seeds on {seeds.machine.describe() if seeds.machine else 'an unrecorded machine'}"

    lines = [
        f"This spread: {where(spread)}. The other: {where(other)}.",
        "",
        f"{len(beyond)} of {len(rows)} headline rows differ between the two machines beyond noise (Student's "
        f"two-sample t of the two machines' seed values, Holm over the {len(rows)} rows at family-wise {ALPHA:g}); "
        f"the largest {'such ' if beyond else ''}shift: {100 * top.difference:+.1f} points ({top_path} "
        f"{top_metric}).",
        "",
        "| metrics file | metric | other machine, mean | this machine, mean | difference, points | by the rule |",
        "|---|---|--:|--:|--:|---|",
    ]
    for (path, metric), relation in zip(rows, found):
        mine, theirs = spread.metrics[path][metric].mean, other.metrics[path][metric].mean
        lines.append(
            f"| {path} | {metric} | {theirs:.4f} | {mine:.4f} | {100 * relation.difference:+.1f} | {relation} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m overfit_first noise", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--against",
        type=Path,
        metavar="SPREAD",
        help="another seed-spread file (the same profile on another machine): compare the two machines instead",
    )
    args = parser.parse_args()
    layout.require_repo_root()
    if args.against is not None and not args.against.is_file():
        raise PipelineError(f"--against {args.against}: no such file (a seed-spread file such as {layout.SEED_SPREAD})")
    print(report(load()) if args.against is None else compare_machines(load(), load(args.against)))


if __name__ == "__main__":
    run_stage(main)
