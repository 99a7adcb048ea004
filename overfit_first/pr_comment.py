"""The pull-request comment: what a change does to the results, from the base revision to the reproduced workspace.

    python -m overfit_first.pr_comment --base origin/main --out comment.md \\
        --images-url https://github.com/OWNER/REPO/raw/HEAD_SHA --artifact-url URL

It holds `dvc metrics diff <base> --md` (every changed metric: the base's committed value against the
workspace's, i.e. what CI just reproduced), each dataset's overfit-vs-simplified gains, and the charts.
A comment cannot carry images (GitHub drops data: URLs and has no upload API for comments), so the charts
are shown as committed in the pull request (reports/ is committed: `--images-url` + reports/<dataset>/<png>
exists at its head commit), and labelled so. What CI itself reproduced, its charts and the offline
`dvc plots` page included, is in the workflow's artifact (`--artifact-url`): a training rerun on another
machine differs at least in its timings, so the two are not claimed to be the same files.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

from overfit_first import atomic, layout, metrics, plots
from overfit_first.errors import PipelineError, run_stage
from overfit_first.report import comparison_table

MARKER = "<!-- overfit-first-pr-check -->"  # the workflow finds its earlier comment by this line
DIFF_BUDGET = 50_000  # characters of the metrics table, leaving room for the rest under GitHub's 65,536
LINKED_CHARTS = (plots.LEARNING_CURVES, plots.PREDICTIONS, plots.CONFUSION)


def metrics_diff(base: str) -> str:
    """`dvc metrics diff <base> --md`: the base's committed metrics against the workspace's."""
    command = ["dvc", "metrics", "diff", base, "--md"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PipelineError(f"`{' '.join(command)}` could not run ({error}): is the virtualenv active?") from error
    if result.returncode != 0:
        raise PipelineError(f"`{' '.join(command)}` failed: {(result.stderr or result.stdout).strip()}; "
                            "is --base a revision of this repository (fetched: checkout with fetch-depth 0)?")
    # DVC pads every cell to its column's widest value (a recommendation: 100+ characters); GitHub does not
    # need the padding, and a comment holds at most 65,536 characters.
    rows = [re.sub(r" {2,}", " ", line) for line in result.stdout.strip().splitlines()]
    rows[1:2] = [re.sub(r"-{4,}", "---", row) for row in rows[1:2]]
    if len(rows) <= 2:  # without a change DVC prints the header and the separator only
        return f"No metric changed from `{base}`."
    kept = rows[:2]
    for row in rows[2:]:
        if sum(len(line) + 1 for line in kept) + len(row) > DIFF_BUDGET:
            kept.append(f"\n{len(rows) - len(kept)} more changed metrics: run `dvc metrics diff {base}` to see all.")
            break
        kept.append(row)
    return "\n".join(kept)


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
            links = ", ".join(f"[{name.removesuffix('.png').replace('_', ' ')}]({base}/{name})"
                              for name in LINKED_CHARTS)
            lines += [f"**{dataset}**", "",
                      f"![{dataset}: validation curves]({base}/{plots.VALIDATION_OVERLAY}) "
                      f"![{dataset}: accuracy per model]({base}/{plots.ACCURACY})", "", f"More: {links}.", ""]
    if artifact_url:
        lines.append(f"As reproduced by CI for this comment (charts, metrics, the interactive `dvc plots` page, "
                     f"which works offline): [the workflow artifact]({artifact_url}).")
    return lines


def build(base: str, images_url: str | None = None, artifact_url: str | None = None) -> str:
    """The whole comment, run from the repository root after `dvc repro`."""
    lines = [
        MARKER,
        "## overfit-first: results of this pull request",
        "",
        f"### Metrics: `{base}` → this pull request (reproduced by CI)",
        "",
        metrics_diff(base),
        "",
        "### Overfitting vs simplified",
        "",
        *(comparisons() or ["No dataset has a comparison (metrics/<dataset>.comparison.json): did `dvc repro` run?"]),
        "",
    ]
    chart_lines = charts(images_url, artifact_url)
    if chart_lines:
        lines += ["### Charts", "", *chart_lines]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m overfit_first.pr_comment", description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the revision to compare with, e.g. origin/main")
    parser.add_argument("--out", type=Path, default=Path("comment.md"), help="where to write the comment (Markdown)")
    parser.add_argument("--images-url", help="URL prefix under which the pull request's committed files are served")
    parser.add_argument("--artifact-url", help="URL of the workflow artifact with everything CI reproduced")
    args = parser.parse_args()
    layout.require_repo_root()
    atomic.write_text(args.out, build(args.base, args.images_url, args.artifact_url))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_stage(main)
