"""The pull-request comment: what a change does to the results, from the base revision to the reproduced workspace.

    python -m overfit_first pr_comment --base origin/main --out comment.md \\
        --images-url https://github.com/OWNER/REPO/raw/HEAD_SHA --artifact-url URL

It first reads every run's workspace metrics (params.yaml `runs`: metrics/<dataset>/<model>.json) through the
metrics contract (overfit_first.metrics), as the report stage does: a missing, corrupt or out-of-range file, or an
unknown verdict, stops it with exit 1 naming the file and the command that rebuilds it, and no comment is written
(`dvc metrics diff` would show such a file as removed or changed metrics, and pass).
The comment holds `dvc metrics diff <base>` (every changed metric: the base's committed value against the
workspace's, i.e. what CI just reproduced), each dataset's overfit-vs-simplified gains, and the charts. Only the
declared headline metrics (noise.FAMILY) are judged, each workspace value against the base's seed values in
metrics/seed_spread.json by overfit_first.procedure.noise's rule, Holm over all of them; other numbers are shown
unmarked, timings as depending on the machine, and the comment names the spread's CPU and this runner's with their
flags.
It is also the check: a run's verdict that got worse (VERDICT_ORDER) fails it only on evidence (`gate`): worse
than the verdicts of every seed of the spread, and a metric that decides it (DECIDED_BY) moved beyond noise.
Then the comment leads with it and the command exits 1 naming the run and both verdicts, after writing the
comment; a worse verdict without that evidence is reported as within the seeds' range, and the check passes.
A comment cannot carry images (GitHub drops data: URLs and has no upload API for comments), so the charts
are shown as committed in the pull request (reports/ is committed: `--images-url` + reports/<dataset>/<png>
exists at its head commit), and labelled so. What CI itself reproduced, its charts and the offline
`dvc plots` page included, is in the workflow's artifact (`--artifact-url`): a training rerun on another
machine differs at least in its timings, so the two are not claimed to be the same files.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from overfit_first import atomic, comparison, layout, metrics, plots
from overfit_first.config import PARAMS_FILE, load_params, read_yaml
from overfit_first.errors import PipelineError, run_stage
from overfit_first.machine import machine
from overfit_first.procedure import dvc_client, noise
from overfit_first.report import comparison_table

MARKER = "<!-- overfit-first-pr-check -->"  # the workflow finds its earlier comment by this line
DIFF_BUDGET = 50_000  # characters of the metrics table, leaving room for the rest under GitHub's 65,536
LINKED_CHARTS = (plots.LEARNING_CURVES, plots.PREDICTIONS, plots.CONFUSION)
# Best first. A move to the right fails the check. "still learning" is not ranked: a run that has not finished
# learning is neither better nor worse than a judged one.
VERDICT_ORDER = ("good fit", "true overfit", "partial overfit", "underfit")
# The metrics that decide each ranked verdict (overfit_first.verdict's rules, params.yaml `evaluate`; gap = train -
# validation accuracy, both of the saved model): a worse verdict fails the check only when one moved beyond noise.
DECIDED_BY = {
    "good fit": ("gap", "train_accuracy_inference"),
    "true overfit": ("gap", "train_accuracy_inference"),
    "partial overfit": ("gap", "train_accuracy_inference"),
    "underfit": ("train_accuracy_inference",),
}
PRECISION = 5  # decimals, as `dvc metrics diff` rounds

Diff = dict[str, dict[str, dict[str, Any]]]  # metrics file -> metric -> {"old", "new", "diff"}
Values = dict[str, dict[str, float]]  # metrics file -> metric -> the workspace's value
Judgements = dict[tuple[str, str], noise.Judged]  # (metrics file, metric) -> its judgement


class VerdictChange(NamedTuple):
    """A run whose verdict is worse than the base's committed one; `fails`: the check fails on it (`gate`)."""

    run: str
    old: str
    new: str
    fails: bool
    reason: str  # why it fails or passes, in words

    def __str__(self) -> str:
        return f"{self.run}: {self.old} -> {self.new}"


def metrics_diff(base: str) -> Diff:
    """`dvc metrics diff <base> --json`: the base's committed metrics against the workspace's, changed ones only.

    A workspace metrics file DVC cannot read stops the check (its values would show as removed); one of the base
    only warns, so that a pull request can repair what the base branch broke (its old values show as -).
    """
    args = ("metrics", "diff", base, "--json")
    fix = "is --base a revision of this repository (fetched: checkout with fetch-depth 0)?"
    result = dvc_client.run(*args, timeout=300, fix=fix)
    return parse_diff(" ".join(["dvc", *args]), result.stdout, result.stderr)


def parse_diff(shown: str, stdout: str, stderr: str) -> Diff:
    """The changes `shown` (`dvc metrics diff ... --json`) printed; a PipelineError when the workspace's metrics
    could not be read or an entry is not a change.

    DVC 3 prints the bare diff and names the revisions it could not read on stderr; its Python result (which
    another version may print) is {"diff": ..., "errors": {revision: error}}: both are read.
    """
    try:
        data = json.loads(stdout or "{}")
    except json.JSONDecodeError as error:
        raise PipelineError(f"`{shown}` printed no JSON ({error}): {stdout.strip()[:200]!r}") from None
    errors = (data.pop("errors", None) or {}) if isinstance(data, dict) else {}
    if isinstance(data, dict) and set(data) == {"diff"}:
        data = data["diff"] or {}
    if not isinstance(data, dict):
        raise PipelineError(f"`{shown}` printed {type(data).__name__}, not a mapping: {stdout.strip()[:200]!r}")
    if not isinstance(errors, dict):
        errors = {"workspace": errors}
    unreadable = {revision: str(error) for revision, error in errors.items() if error}
    found = re.search(r"failed to load some metrics for following revisions: '(.*)'", stderr)
    for revision in found.group(1).split(", ") if found else []:
        unreadable.setdefault(revision, found.group(0))
    if "workspace" in unreadable:
        raise PipelineError(
            f"`{shown}`: {unreadable['workspace']}: the workspace's metrics cannot be compared; "
            "`dvc metrics show` names the file, `dvc repro --force <stage>` rewrites it"
        )
    if unreadable:
        print(f"warning: dvc could not read some metrics of {', '.join(unreadable)}: shown as -", file=sys.stderr)
    bad = [
        path
        for path, changes in data.items()
        if not isinstance(changes, dict) or not all(map(is_change, changes.values()))
    ]
    if bad:
        raise PipelineError(f"`{shown}` printed an unexpected entry for {', '.join(bad)}: {stdout.strip()[:200]!r}")
    return data


def is_change(change: Any) -> bool:
    """A metric's entry of the diff: {"old", "new"} and, for numbers, "diff"."""
    return isinstance(change, dict) and bool(change.keys() & {"old", "new"})


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    return str(round(value, PRECISION)) if isinstance(value, float) else str(value)


def noise_mark(spread: noise.SeedSpread, judged: Judgements, path: str, metric: str, change: dict[str, Any]) -> str:
    """The noise column of a numeric change: its judgement for a headline metric (noise.FAMILY), "depends on the
    machine" for a timing, "not measured" or "no spread" when it cannot be judged, else nothing."""
    if not number(change.get("diff")):
        return ""
    if noise.machine_dependent(metric):
        return noise.MACHINE
    if not noise.in_family(path, metric):
        return ""
    if not spread.measured:
        return noise.NOT_MEASURED
    return judged[(path, metric)].mark() if (path, metric) in judged else "no spread"


def diff_table(diff: Diff, base: str, spread: noise.SeedSpread, judged: Judgements) -> str:
    """The changed metrics as one Markdown table, each numeric change of a headline metric marked against the noise."""
    rows = [f"| Path | Metric | {base} | this pull request | Change | Noise |", "|---|---|---|---|---|---|"]
    changes = [(path, metric, change) for path in sorted(diff) for metric, change in sorted(diff[path].items())]
    if not changes:
        return f"No metric changed from `{base}`."
    for shown, (path, metric, change) in enumerate(changes):
        row = (
            f"| {path} | {metric} | {cell(change.get('old'))} | {cell(change.get('new'))} | "
            f"{cell(change.get('diff'))} | {noise_mark(spread, judged, path, metric, change)} |"
        )
        if sum(len(line) + 1 for line in rows) + len(row) > DIFF_BUDGET:
            rows.append(f"\n{len(changes) - shown} more changed metrics: run `dvc metrics diff {base}` to see all.")
            break
        rows.append(row)
    return "\n".join(rows)


def workspace_values(paths: Iterable[str]) -> Values:
    """The numeric metrics of each metrics file in the workspace; a file the workspace lacks (a run the pull
    request removed) is left out. PipelineError naming a file that is not JSON."""
    values: Values = {}
    for path in paths:
        if not Path(path).is_file():
            continue
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise PipelineError(f"{path} is not valid JSON ({error}): `dvc repro` rewrites it") from error
        values[path] = {metric: float(value) for metric, value in data.items() if number(value)}
    return values


def judge_family(spread: noise.SeedSpread, values: Values) -> Judgements:
    """Every headline row the spread has seeds of and the workspace a value of, Holm over all of them."""
    heads = [(path, metric, values[path][metric]) for path, metric in spread.family() if metric in values.get(path, {})]
    return {(row.path, row.metric): row for row in spread.judge(heads)}


def beyond_line(judged: Judgements) -> str:
    """One line: which headline rows are beyond noise (unchanged rows included, which the table does not show)."""
    beyond = [f"`{path}` {metric}" for (path, metric), row in judged.items() if row.relation.beyond]
    return f"Beyond noise: {len(beyond)} of {len(judged)} headline rows{': ' + ', '.join(beyond) if beyond else ''}."


def run_names() -> dict[str, str]:
    """metrics/<dataset>/<model>.json -> the params.yaml run that writes it (none without a params.yaml)."""
    params = read_yaml(PARAMS_FILE) if PARAMS_FILE.is_file() else None
    runs = (params or {}).get("runs") or {}
    return {
        layout.eval_metrics_file(run["dataset"], run["model"]).as_posix(): name
        for name, run in runs.items()
        if isinstance(run, dict) and {"dataset", "model"} <= run.keys()
    }


def worse_verdicts(diff: Diff, spread: noise.SeedSpread, values: Values) -> list[VerdictChange]:
    """Every run whose verdict moved down VERDICT_ORDER from the base's, named as params.yaml names it (else by its
    file), with whether the check fails on it (`gate`)."""
    names = run_names()
    worse = []
    for path, changes in sorted(diff.items()):
        change = changes.get("verdict") or {}
        old, new = change.get("old"), change.get("new")
        if old in VERDICT_ORDER and new in VERDICT_ORDER and VERDICT_ORDER.index(new) > VERDICT_ORDER.index(old):
            fails, reason = gate(path, old, new, spread, values.get(path, {}))
            worse.append(VerdictChange(names.get(path, path), old, new, fails, reason))
    return worse


def gate(path: str, old: str, new: str, spread: noise.SeedSpread, head: dict[str, float]) -> tuple[bool, str]:
    """Whether a run's verdict that got worse from `old` (the base's) to `new` fails the check, and why.

    It fails when `new` is worse than the verdict of every seed of the spread (seeds whose verdict is *still
    learning*, which is not ranked, do not count; none ranked: not worse) and a metric that decides `new`
    (DECIDED_BY) moved beyond noise (noise's rule, Holm over those metrics). A spread measured before verdicts
    were kept per seed compares with `old` alone and says so; a run without a seed spread fails as it did before.
    """
    deciding = [metric for metric in DECIDED_BY[new] if metric in head and spread.spread(path, metric) is not None]
    if not spread.measured or not deciding:
        return True, "no seed spread of this run to judge it against"
    seeds = (spread.verdicts or {}).get(path)
    if seeds is None:
        than = (
            f"worse than the base's committed verdict ({layout.SEED_SPREAD} keeps no verdict per seed"
            f"{'' if spread.verdicts is None else ' of this run'}: `{noise.REFRESH}` records them)"
        )
    else:
        ranked = [seed for seed in seeds if seed in VERDICT_ORDER]
        if not ranked or any(VERDICT_ORDER.index(new) <= VERDICT_ORDER.index(seed) for seed in ranked):
            return False, f"within the seeds' range ({', '.join(seeds)})"
        than = f"worse than every seed's ({', '.join(seeds)})"
    judged = spread.judge([(path, metric, head[metric]) for metric in deciding])
    evidence = "; ".join(
        f"{row.metric} {row.head:.3f} against seeds {row.spread.mean:.3f} ± {row.spread.std:.3f} sd, {row.relation}"
        for row in judged
    )
    if any(row.relation.beyond for row in judged):
        return True, f"{than}, and {evidence}"
    return False, f"{than}, but no metric that decides it moved beyond noise: {evidence}"


def check_workspace_metrics() -> None:
    """Every run's evaluate metrics in the workspace (params.yaml `runs`), read as the report stage reads them.

    One PipelineError lists each missing or invalid file with its problem and `dvc repro --force evaluate@<run>`;
    metrics.EvalMetrics restricts the verdict to overfit_first.verdict's (tests/test_noise.py checks that
    VERDICT_ORDER and "still learning" are exactly those) and every fraction to 0..1.
    """
    params = load_params()
    problems = []
    for name in params.runs:
        try:
            comparison.read_metrics(params.run(name))
        except PipelineError as error:
            problems.append(str(error))
    if problems:
        raise PipelineError(
            "the workspace's metrics cannot be compared, so no comment was written:\n"
            + "\n".join(f"  {problem}" for problem in problems)
            + f"\n  A committed file changed or deleted by hand comes back with `git checkout -- {layout.METRICS}/`; "
            "`dvc repro --force evaluate@<run>` recomputes one from its model (after `dvc pull`, or it retrains)."
        )


def comparisons() -> list[str]:
    lines = []
    for path in sorted(layout.METRICS.glob("*.comparison.json")):
        dataset = path.name.removesuffix(".comparison.json")
        table = comparison_table(metrics.read(path, metrics.Comparison, f"dvc repro plot@{dataset}"))
        lines += [f"**{dataset}**", "", *(table or ["No overfitting model to compare with."]), ""]
    return lines


def charts(images_url: str | None, artifact_url: str | None) -> list[str]:
    lines = []
    datasets = sorted(path.parent.name for path in layout.REPORTS.glob(f"*/{plots.VALIDATION_OVERLAY}"))
    if images_url and datasets:
        lines += ["As committed in this pull request:", ""]
        for dataset in datasets:
            base = f"{images_url.rstrip('/')}/{layout.report_dir(dataset).as_posix()}"
            links = ", ".join(
                f"[{name.removesuffix('.png').replace('_', ' ')}]({base}/{name})" for name in LINKED_CHARTS
            )
            lines += [
                f"**{dataset}**",
                "",
                f"![{dataset}: validation curves]({base}/{plots.VALIDATION_OVERLAY}) "
                f"![{dataset}: accuracy per model]({base}/{plots.ACCURACY})",
                "",
                f"More: {links}.",
                "",
            ]
    if artifact_url:
        lines.append(
            f"As reproduced by CI for this comment (charts, metrics, the interactive `dvc plots` page, "
            f"which works offline): [the workflow artifact]({artifact_url})."
        )
    return lines


def verdict_lines(worse: list[VerdictChange]) -> list[str]:
    order = f"order: {' > '.join(VERDICT_ORDER)}; *still learning* is not ranked"
    failing, passing = [entry for entry in worse if entry.fails], [entry for entry in worse if not entry.fails]
    if failing:
        lines = [
            f"**Check failed: a verdict got worse** ({order}):",
            "",
            *(f"- `{entry.run}`: {entry.old} → **{entry.new}**: {entry.reason}" for entry in failing),
            "",
        ]
    else:
        lines = [f"Verdicts: none got worse{' beyond the noise' if passing else ''} ({order}).", ""]
    if passing:
        lines += [
            "Worse than the base's verdict, yet no evidence (the check passes on these):",
            "",
            *(f"- `{entry.run}`: {entry.old} → {entry.new}: {entry.reason}" for entry in passing),
            "",
        ]
    return lines


def build(base: str, images_url: str | None = None, artifact_url: str | None = None) -> tuple[str, list[VerdictChange]]:
    """The whole comment and the runs whose verdict got worse, run from the repository root after `dvc repro`."""
    check_workspace_metrics()
    diff, spread = metrics_diff(base), noise.load()
    values = workspace_values(sorted(spread.metrics))
    judged = judge_family(spread, values) if spread.measured else {}
    worse = worse_verdicts(diff, spread, values)
    lines = [
        MARKER,
        "## overfit-first: results of this pull request",
        "",
        *verdict_lines(worse),
        f"### Metrics: `{base}` → this pull request (the workspace's results: in CI, what the check reproduced)",
        "",
        spread.summary(),
        "",
        spread.machines(machine()),
        "",
        *([beyond_line(judged), ""] if spread.measured else []),
        diff_table(diff, base, spread, judged),
        "",
        "### Overfitting vs simplified",
        "",
        *(comparisons() or ["No dataset has a comparison (metrics/<dataset>.comparison.json): did `dvc repro` run?"]),
        "",
    ]
    chart_lines = charts(images_url, artifact_url)
    if chart_lines:
        lines += ["### Charts", "", *chart_lines]
    return "\n".join(lines).rstrip() + "\n", worse


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m overfit_first pr_comment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--base", required=True, help="the revision to compare with, e.g. origin/main")
    parser.add_argument("--out", type=Path, default=Path("comment.md"), help="where to write the comment (Markdown)")
    parser.add_argument("--images-url", help="URL prefix under which the pull request's committed files are served")
    parser.add_argument("--artifact-url", help="URL of the workflow artifact with everything CI reproduced")
    args = parser.parse_args()
    layout.require_repo_root()
    text, worse = build(args.base, args.images_url, args.artifact_url)
    atomic.write_text(args.out, text)
    print(f"wrote {args.out}")
    failing = [entry for entry in worse if entry.fails]
    if failing:
        raise PipelineError(
            f"a verdict got worse from {args.base}: {'; '.join(map(str, failing))} (written to {args.out} too)"
        )


if __name__ == "__main__":
    run_stage(main)
