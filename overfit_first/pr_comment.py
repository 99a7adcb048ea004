"""The pull-request comment: what a change does to the results, from the base revision to the reproduced workspace.

    python -m overfit_first.pr_comment --base origin/main --out comment.md \\
        --images-url https://github.com/OWNER/REPO/raw/HEAD_SHA --artifact-url URL

It first reads every run's workspace metrics (params.yaml `runs`: metrics/<dataset>/<model>.json) through the
metrics contract (overfit_first.metrics), as the report stage does: a missing, corrupt or out-of-range file, or an
unknown verdict, stops it with exit 1 naming the file and the command that rebuilds it, and no comment is written
(`dvc metrics diff` would show such a file as removed or changed metrics, and pass).
The comment holds `dvc metrics diff <base>` (every changed metric: the base's committed value against the
workspace's, i.e. what CI just reproduced), each numeric difference marked within or beyond the run-to-run noise
measured by overfit_first.seed_spread (overfit_first.noise has the rule), each dataset's overfit-vs-simplified
gains, and the charts. It is also the check: when a run's verdict got worse (VERDICT_ORDER), the comment leads
with it and the command exits 1 naming the run and both verdicts, after writing the comment.
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
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

from overfit_first import atomic, comparison, layout, metrics, noise, plots
from overfit_first.config import PARAMS_FILE, load_params, read_yaml
from overfit_first.errors import PipelineError, run_stage
from overfit_first.report import comparison_table

MARKER = "<!-- overfit-first-pr-check -->"  # the workflow finds its earlier comment by this line
DIFF_BUDGET = 50_000  # characters of the metrics table, leaving room for the rest under GitHub's 65,536
LINKED_CHARTS = (plots.LEARNING_CURVES, plots.PREDICTIONS, plots.CONFUSION)
# Best first. A move to the right fails the check. "still learning" is not ranked: a run that has not finished
# learning is neither better nor worse than a judged one.
VERDICT_ORDER = ("good fit", "true overfit", "partial overfit", "underfit")
PRECISION = 5  # decimals, as `dvc metrics diff` rounds

Diff = dict[str, dict[str, dict[str, Any]]]  # metrics file -> metric -> {"old", "new", "diff"}


class WorseVerdict(NamedTuple):
    run: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.run}: {self.old} -> {self.new}"


def metrics_diff(base: str) -> Diff:
    """`dvc metrics diff <base> --json`: the base's committed metrics against the workspace's, changed ones only.

    A workspace metrics file DVC cannot read stops the check (its values would show as removed); one of the base
    only warns, so that a pull request can repair what the base branch broke (its old values show as -).
    """
    command = ["dvc", "metrics", "diff", base, "--json"]
    shown = " ".join(command)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PipelineError(f"`{shown}` could not run ({error}): is the virtualenv active?") from error
    if result.returncode != 0:
        raise PipelineError(
            f"`{shown}` failed: {(result.stderr or result.stdout).strip()}; "
            "is --base a revision of this repository (fetched: checkout with fetch-depth 0)?"
        )
    return parse_diff(shown, result.stdout, result.stderr)


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


def noise_mark(spread: noise.SeedSpread, path: str, metric: str, change: dict[str, Any]) -> str:
    """The noise column: the judgement and the largest difference that is still noise, for numeric changes."""
    if not number(change.get("diff")):
        return ""
    judged = spread.judge(path, metric, change["diff"])
    metric_spread = spread.spread(path, metric)
    if judged not in (noise.WITHIN, noise.BEYOND) or metric_spread is None:
        return judged
    bound = f"±{cell(metric_spread.threshold)}"
    return f"**{judged}** ({bound})" if judged == noise.BEYOND else f"{judged} ({bound})"


def diff_table(diff: Diff, base: str, spread: noise.SeedSpread) -> str:
    """The changed metrics as one Markdown table, each numeric change marked against the noise."""
    rows = [f"| Path | Metric | {base} | this pull request | Change | Noise |", "|---|---|---|---|---|---|"]
    changes = [(path, metric, change) for path in sorted(diff) for metric, change in sorted(diff[path].items())]
    if not changes:
        return f"No metric changed from `{base}`."
    for shown, (path, metric, change) in enumerate(changes):
        row = (
            f"| {path} | {metric} | {cell(change.get('old'))} | {cell(change.get('new'))} | "
            f"{cell(change.get('diff'))} | {noise_mark(spread, path, metric, change)} |"
        )
        if sum(len(line) + 1 for line in rows) + len(row) > DIFF_BUDGET:
            rows.append(f"\n{len(changes) - shown} more changed metrics: run `dvc metrics diff {base}` to see all.")
            break
        rows.append(row)
    return "\n".join(rows)


def run_names() -> dict[str, str]:
    """metrics/<dataset>/<model>.json -> the params.yaml run that writes it (none without a params.yaml)."""
    params = read_yaml(PARAMS_FILE) if PARAMS_FILE.is_file() else None
    runs = (params or {}).get("runs") or {}
    return {
        layout.eval_metrics_file(run["dataset"], run["model"]).as_posix(): name
        for name, run in runs.items()
        if isinstance(run, dict) and {"dataset", "model"} <= run.keys()
    }


def worse_verdicts(diff: Diff) -> list[WorseVerdict]:
    """Every run whose verdict moved down VERDICT_ORDER, named as params.yaml names it (else by its file)."""
    names = run_names()
    worse = []
    for path, changes in sorted(diff.items()):
        change = changes.get("verdict") or {}
        old, new = change.get("old"), change.get("new")
        if old in VERDICT_ORDER and new in VERDICT_ORDER and VERDICT_ORDER.index(new) > VERDICT_ORDER.index(old):
            worse.append(WorseVerdict(names.get(path, path), old, new))
    return worse


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


def verdict_lines(worse: list[WorseVerdict]) -> list[str]:
    order = f"order: {' > '.join(VERDICT_ORDER)}; *still learning* is not ranked"
    if not worse:
        return [f"Verdicts: none got worse ({order}).", ""]
    return [
        f"**Check failed: a verdict got worse** ({order}):",
        "",
        *(f"- `{entry.run}`: {entry.old} → **{entry.new}**" for entry in worse),
        "",
    ]


def build(base: str, images_url: str | None = None, artifact_url: str | None = None) -> tuple[str, list[WorseVerdict]]:
    """The whole comment and the runs whose verdict got worse, run from the repository root after `dvc repro`."""
    check_workspace_metrics()
    diff, spread = metrics_diff(base), noise.load()
    worse = worse_verdicts(diff)
    lines = [
        MARKER,
        "## overfit-first: results of this pull request",
        "",
        *verdict_lines(worse),
        f"### Metrics: `{base}` → this pull request (reproduced by CI)",
        "",
        spread.summary(),
        "",
        diff_table(diff, base, spread),
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
        prog="python -m overfit_first.pr_comment",
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
    if worse:
        raise PipelineError(
            f"a verdict got worse from {args.base}: {'; '.join(map(str, worse))} (written to {args.out} too)"
        )


if __name__ == "__main__":
    run_stage(main)
