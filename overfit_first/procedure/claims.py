"""The article's claims, read across the seeds of metrics/seed_spread.json by the project's one rule.

    python -m overfit_first claims

A claim relates two runs of one dataset, named by their role (params.yaml `models.<model>.role`), or a run and a verdict
threshold (params.yaml `evaluate`): "the simplified CNN's gap is below the overfitting CNN's". It is read on each seed's
own pair of values, d_i = left_i - right_i (the same seed trained both runs), in the metric's units (accuracies and
gaps: fractions 0..1). It holds when the mean of d lies beyond zero in the claimed direction by the rule's paired form
(overfit_first.procedure.noise.paired: Student's one-sample t, Holm over every claim judged, family-wise ALPHA); the
table also gives the seeds in which it held and the 95 % confidence interval of the mean difference. A claim the spread
cannot read (a role without a run, a metric not measured) is listed as such. The README quotes this command's output;
tests/test_noise.py checks that the quote is what it prints.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from overfit_first import layout
from overfit_first.config import Params, load_params
from overfit_first.errors import run_stage
from overfit_first.procedure import noise


@dataclass(frozen=True)
class Claim:
    """`left` (role, metric) lies above (`above`) or below `right`: another (role, metric), or the name of a
    params.yaml `evaluate` threshold."""

    text: str
    left: tuple[str, str]
    above: bool
    right: tuple[str, str] | str


TRAIN, VAL, TEST, GAP = "train_accuracy_inference", "val_accuracy_inference", "test_accuracy", "gap"
# The article's claims that the default profile can test (../shared/ARTICLE.md; README, Results of the default run).
CLAIMS = (
    Claim("the overfitting CNN fits its training set (train ≥ overfit_train_min)", ("overfit", TRAIN), True,
          "overfit_train_min"),
    Claim("the overfitting CNN's gap is an overfit's (gap ≥ overfit_gap_min)", ("overfit", GAP), True,
          "overfit_gap_min"),
    Claim("simplifying shrinks the gap", ("simplified", GAP), False, ("overfit", GAP)),
    Claim("the simplified CNN is more accurate on validation", ("simplified", VAL), True, ("overfit", VAL)),
    Claim("the simplified CNN is more accurate on test", ("simplified", TEST), True, ("overfit", TEST)),
    Claim("the MLP is below the overfitting CNN on validation", ("mlp", VAL), False, ("overfit", VAL)),
    Claim("the MLP is below the overfitting CNN on test", ("mlp", TEST), False, ("overfit", TEST)),
    Claim("the MLP is below the simplified CNN on validation", ("mlp", VAL), False, ("simplified", VAL)),
    Claim("the MLP is below the simplified CNN on test", ("mlp", TEST), False, ("simplified", TEST)),
    Claim("augmentation shrinks the gap further", ("augmented", GAP), False, ("simplified", GAP)),
)  # fmt: skip


@dataclass(frozen=True)
class Reading:
    """One claim on one dataset: the per-seed differences (left - right), or why it cannot be read."""

    dataset: str
    claim: Claim
    differences: list[float]
    missing: str = ""


def per_seed(spread: noise.SeedSpread, paths: dict[str, str], role: str, metric: str) -> list[float] | str:
    """The seed values of `metric` of the run playing `role`, or what is missing."""
    if role not in paths:
        return f"no {role} run"
    found = spread.spread(paths[role], metric)
    return found.values if found is not None else f"{metric} of {paths[role]} not in the spread"


def read(spread: noise.SeedSpread, params: Params) -> list[Reading]:
    """Every claim on every dataset of the spread, in CLAIMS order per dataset."""
    readings = []
    for dataset in sorted({run.dataset for run in map(params.run, params.runs)}):
        paths = {run.role: run.eval_metrics_path.as_posix() for run in params.dataset_runs(dataset)}
        if not any(path in spread.metrics for path in paths.values()):
            continue
        for claim in CLAIMS:
            left = per_seed(spread, paths, *claim.left)
            if isinstance(claim.right, str):
                right: list[float] | str = [getattr(params.evaluate, claim.right)] * len(spread.seeds)
            else:
                right = per_seed(spread, paths, *claim.right)
            if isinstance(left, str) or isinstance(right, str):
                readings.append(Reading(dataset, claim, [], left if isinstance(left, str) else str(right)))
            else:
                readings.append(Reading(dataset, claim, [a - b for a, b in zip(left, right)]))
    return readings


def verdict(reading: Reading, relation: noise.Relation | None) -> str:
    """`holds (p = ..., Holm)`, `not shown: within noise (...)`, `**contradicted**: ...`, or why not read."""
    if relation is None:
        return f"not read: {reading.missing}"
    if relation.p is None:
        return "not judged: one seed"
    claimed = relation.difference > 0 if reading.claim.above else relation.difference < 0
    if relation.beyond and claimed:
        return f"holds ({noise.format_p(relation.p)}, Holm)"
    if relation.beyond:
        return f"**contradicted**: beyond noise the other way ({noise.format_p(relation.p)}, Holm)"
    return f"not shown: {relation}"


def results_table(spread: noise.SeedSpread, params: Params) -> list[str]:
    """Markdown lines: per run of the spread (each dataset's runs in role order), train, validation and test accuracy
    and gap as mean (min-max) over the seeds, and the verdict of each seed."""
    seeds = ", ".join(map(str, spread.seeds))
    lines = [
        f"| run (role) | train | validation | test | gap | verdicts (seeds {seeds}) |",
        "|---|--:|--:|--:|--:|---|",
    ]
    for dataset in sorted({run.dataset for run in map(params.run, params.runs)}):
        for run in params.dataset_runs(dataset):
            path = run.eval_metrics_path.as_posix()
            if path not in spread.metrics:
                continue
            cells = []
            for metric in (TRAIN, VAL, TEST, GAP):
                found = spread.spread(path, metric)
                separator = " to " if found and found.min < 0 else "-"  # "-0.017-0.022" would misread
                cells.append(f"{found.mean:.3f} ({found.min:.3f}{separator}{found.max:.3f})" if found else "")
            verdicts = ", ".join((spread.verdicts or {}).get(path, []))
            lines.append(f"| `{run.name}` ({run.role}) | {' | '.join(cells)} | {verdicts} |")
    return lines


def report(spread: noise.SeedSpread, params: Params) -> str:
    """What `python -m overfit_first claims` prints (Markdown): the runs' results over the seeds, then the claims."""
    if not spread.measured:
        return spread.summary()
    readings = read(spread, params)
    judged = [reading for reading in readings if reading.differences]
    found = dict(zip(map(id, judged), noise.paired([reading.differences for reading in judged])))
    k = len(spread.seeds)
    machine = spread.machine.describe() if spread.machine else "an unrecorded machine"
    lines = [
        f"Seeds {', '.join(map(str, spread.seeds))} of {layout.SEED_SPREAD}, measured {spread.measured_at} at commit "
        f"{(spread.commit or '?')[:10]} on {machine}: each saved model's accuracies in inference mode, mean (min-max).",
        "",
        *results_table(spread, params),
        "",
        f"Claims across seeds {', '.join(map(str, spread.seeds))} of {layout.SEED_SPREAD} (k = {k}), each read on "
        f"the seeds' paired values: Student's one-sample t of the per-seed differences, Holm over the {len(judged)} "
        f"claims at family-wise {noise.ALPHA:g}; differences and intervals in accuracy points.",
        "",
        "| dataset | claim | seeds where it held | mean difference [95 % CI] | by the rule |",
        "|---|---|--:|---|---|",
    ]
    for reading in readings:
        relation = found.get(id(reading))
        d = np.asarray(reading.differences, float)
        held = int(((d > 0) if reading.claim.above else (d < 0)).sum())
        mean = f"{100 * d.mean():+.1f}" if len(d) else ""
        if len(d) > 1:
            half = 100 * noise.interval(reading.differences, single=False)
            mean += f" [{100 * d.mean() - half:+.1f}, {100 * d.mean() + half:+.1f}]"
        counted = f"{held} of {len(d)}" if len(d) else ""
        judged_as = verdict(reading, relation)
        lines.append(f"| {reading.dataset} | {reading.claim.text} | {counted} | {mean} | {judged_as} |")
    return "\n".join(lines)


def main() -> None:
    argparse.ArgumentParser(prog="python -m overfit_first claims", description=__doc__.split("\n")[0]).parse_args()
    params = load_params()
    print(report(noise.load(), params))


if __name__ == "__main__":
    run_stage(main)
