"""More data or more regularization? The ladder's machinery over the training-set size, train.subset_size.

    python -m overfit_first data_curve size                       # 1/4, 1/2, all of the profile's images
    python -m overfit_first data_curve size --fractions 0.25 0.5 1 --seeds 0 1 2 --jobs 2 \\
        --runs fashion_mnist-cnn_overfit fashion_mnist-cnn_simplified
    python -m overfit_first data_curve size --sizes 200 400 800
    python -m overfit_first data_curve size --collect             # the report again, from the experiments
    python -m overfit_first data_curve size --rejudge             # its recorded values judged again (rejudge)

The sizes are fractions of the training images the profile uses (train.subset_size, or every prepared training image
when it is null), or counts; before anything is queued each is checked against the prepared training split
(data/prepared/<dataset>/summary.json): at least one image per class, at most every image, each size once. Default runs:
the dataset's first overfitting and first simplified run (roles in params.yaml); each (size, seed) is a DVC experiment
`<name>-<size>[-s<seed>]` that retrains only them. The report, reports/data_curves/<name>/ (README.md, data_curve.json,
data_curve.png), charts validation accuracy and gap against the size and gives one reading per run (`reading`): a gap
that shrinks with data beyond noise (the project's one rule, overfit_first.procedure.noise) says get more data; a flat
one says regularize or change the architecture.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from overfit_first import tracking
from overfit_first.config import Params
from overfit_first.errors import PipelineError, run_stage
from overfit_first.procedure import noise, rejudge
from overfit_first.procedure.sweep import (
    Step,
    StepResults,
    Sweep,
    TrainImages,
    check_name,
    check_seeds,
    check_steps,
    check_subset_sizes,
    load,
    select_runs,
    train_images,
)
from overfit_first.procedure.sweep_report import chart, failures_markdown, report_dir, results_json, table, write_report
from overfit_first.procedure.sweep_run import run_sweep, stop_if_failed

KEY = "train.subset_size"
FRACTIONS = (0.25, 0.5, 1.0)
TOLERANCE = 0.01  # a change within this is flat, noise or not (accuracy and gap, 0..1)
VAL, GAP = "val_accuracy_inference", "gap"


def reading(rows: StepResults, tolerance: float = TOLERANCE) -> str:
    """One line: how the gap moves from the smallest to the largest size that succeeded.

    Shrinks beyond noise (noise.relations: the two sizes' seed values, Holm over this run's two comparisons, the
    gap's and validation accuracy's) and by more than `tolerance`: "get more data"; otherwise (flat, or growing):
    "regularize or change the architecture". Adds whether validation accuracy rose in the same sense. With one seed
    there is no noise estimate: the tolerance alone decides.
    """
    done = [row for row in rows if row.ok]
    if len(done) < 2:
        return "fewer than two sizes succeeded: no reading"
    small, large = done[0], done[-1]
    gap, rise = noise.relations(
        [(small.stats[GAP].values, large.stats[GAP].values), (small.stats[VAL].values, large.stats[VAL].values)]
    )
    sizes = f"from {small.step.label} to {large.step.label} images"
    values = f"{small.stats[GAP].mean:.3f} -> {large.stats[GAP].mean:.3f} {sizes}"
    rises = rise.difference > tolerance and rise.beyond
    validation = (
        f"validation accuracy {'rises' if rises else 'does not rise beyond noise and the tolerance'} "
        f"({small.stats[VAL].mean:.3f} -> {large.stats[VAL].mean:.3f}, {rise})"
    )
    if -gap.difference > tolerance and gap.beyond:
        return (
            f"the gap shrinks with data ({values}, {gap}, by more than {tolerance:g}) and {validation}: get more data"
        )
    return (
        f"the gap is flat with data ({values}, {gap}: it does not shrink beyond noise and by more than "
        f"{tolerance:g}), {validation}: regularize or change the architecture"
    )


def base_size(params: Params, images: TrainImages) -> int:
    """The training images a run of the profile uses: train.subset_size, or all prepared ones when it is null (or
    larger: stratified_subset then takes them all)."""
    if params.train.subset_size is None:
        return images.count
    return min(params.train.subset_size, images.count)


def resolve_sizes(args: argparse.Namespace, params: Params, images: TrainImages) -> list[int]:
    """The sizes of the curve, ascending, from --sizes or --fractions (default 1/4, 1/2, all of base_size), each
    checked against the prepared training images (sweep.check_subset_sizes); PipelineError naming the option."""
    if args.sizes and args.fractions:
        raise PipelineError("give --sizes or --fractions, not both")
    if args.sizes:
        sizes = list(args.sizes)
        check_subset_sizes("--sizes", sizes, images)
    else:
        fractions = list(args.fractions or FRACTIONS)
        bad = [f for f in fractions if not 0 < f <= 1]
        if bad:
            raise PipelineError(f"--fractions {bad}: fractions of the profile's training images, in (0, 1]")
        base = base_size(params, images)
        sizes = [round(fraction * base) for fraction in fractions]
        check_subset_sizes("--fractions", sizes, images, fractions, base)
    if len(sizes) < 2:
        raise PipelineError(f"sizes {sizes}: a curve needs at least two different sizes")
    return sorted(sizes)


def default_runs(params: Params, dataset: str | None) -> list[str]:
    """The first overfitting and the first simplified run (of the first dataset having both)."""
    for name in params.data.datasets if dataset is None else [dataset]:
        runs = params.dataset_runs(name)
        picked = [next((run.name for run in runs if run.role == role), None) for role in ("overfit", "simplified")]
        if all(picked):
            return [name for name in picked if name]
    raise PipelineError("no dataset has both an overfitting and a simplified run: pass --runs")


def plan(args: argparse.Namespace) -> tuple[Sweep, float]:
    check_name(args.name)
    params, raw = load()
    runs = select_runs(params, KEY, args.runs or default_runs(params, None))
    sizes = resolve_sizes(args, params, train_images(runs[0].dataset))
    steps = [Step(str(size), size, float(size)) for size in sizes]
    check_steps(raw, KEY, steps)
    tolerance = TOLERANCE if args.tolerance is None else args.tolerance
    return Sweep(args.name, KEY, steps, check_seeds(args.seeds), runs, "data curve"), tolerance


def readme(
    sweep: Sweep,
    results: dict[str, StepResults],
    failed: dict[str, str],
    tolerance: float,
    measured_by: str | None,
    rejudged_by: str | None = None,
) -> tuple[str, dict[str, str]]:
    """The report's README.md and the reading per run; `measured_by`, `rejudged_by`: the commands that measured the
    values (None: not recorded) and judged them again (rejudge.provenance)."""
    seeds = f"seeds {', '.join(map(str, sweep.seeds))}" if sweep.seeds else "params.yaml's train.seed (one seed)"
    lines = [
        f"# Data-size curve `{sweep.name}`: {KEY}",
        "",
        rejudge.provenance(measured_by, rejudged_by, sweep.name),
        "",
        f"Training images per run: {', '.join(step.label for step in sweep.steps)} (the first of every class, in "
        f"proportion), over {seeds}; each (size, seed) is the DVC experiment "
        f"`{sweep.name}-<size>{'-s<seed>' if sweep.seeds else ''}`. Validation is the same set at every size. "
        "With several seeds: mean (min-max). A change counts when beyond noise (the two sizes' seed values by "
        f"Student's two-sample t at family-wise {noise.ALPHA:g}, Holm over the run's two comparisons, p as adjusted; "
        f"overfit_first/procedure/noise.py) and larger than {tolerance:g}; with one seed there is no noise estimate.",
        "",
        "![validation accuracy and gap against training-set size](data_curve.png)",
        "",
    ]
    readings = {}
    for run, rows in results.items():
        readings[run] = reading(rows, tolerance)
        lines += [f"## {run}", "", f"**Reading:** {readings[run]}.", "", table(rows, "images"), ""]
    lines.append(failures_markdown(failed))
    return "\n".join(lines).rstrip() + "\n", readings


def command() -> str:
    return shlex.join(["python", "-m", "overfit_first", "data_curve", *sys.argv[1:]])


def report(
    sweep: Sweep,
    results: dict[str, StepResults],
    failed: dict[str, str],
    tolerance: float,
    measured_by: str | None,
    rejudged_by: str | None = None,
) -> tuple[Path, dict[str, str]]:
    """Write reports/data_curves/<name>/ whole (README.md, data_curve.json, data_curve.png) from `results`, read by
    `reading`; the directory and the reading per run. The json records `measured_by` as "command", and
    `rejudged_by` when given."""
    text, readings = readme(sweep, results, failed, tolerance, measured_by, rejudged_by)
    data: dict[str, Any] = {
        "sweep": sweep.name,
        "key": KEY,
        "sizes": [step.value for step in sweep.steps],
        "seeds": sweep.seeds,
        "tolerance": tolerance,
        "command": measured_by,
        **({"rejudged_by": rejudged_by} if rejudged_by else {}),
        "readings": readings,
        "runs": results_json(results),
        "failed_experiments": failed,
    }
    directory = report_dir("data_curves", sweep.name)
    title = f"data-size curve {sweep.name}"
    write_report(
        directory,
        {"README.md": text, "data_curve.json": data},
        "data_curve.png",
        lambda path: chart(results, "training images", path, title),
    )
    return directory, readings


MEASURING = ("collect", "fractions", "sizes", "runs", "seeds", "jobs")  # options --rejudge refuses


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m overfit_first data_curve", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="the sweep's name: prefixes its DVC experiments and names its report")
    parser.add_argument("--fractions", type=float, nargs="+", help="of the profile's training images (0.25 0.5 1)")
    parser.add_argument("--sizes", type=int, nargs="+", help="training-image counts instead of fractions")
    parser.add_argument("--runs", nargs="+", help="runs to retrain (default: the first overfitting and simplified)")
    parser.add_argument("--seeds", type=int, nargs="+", help="repeat each size with these train.seed values")
    parser.add_argument("--jobs", type=int, help="experiments at once (`dvc queue start -j`, default 1)")
    parser.add_argument(
        "--tolerance", type=float, help=f"gap tolerance (default {TOLERANCE}; with --rejudge the report's)"
    )
    parser.add_argument("--collect", action="store_true", help="queue nothing: report the experiments already run")
    parser.add_argument(
        "--rejudge",
        action="store_true",
        help="measure nothing: judge the values data_curve.json recorded again under the current rule, rewrite the "
        "report",
    )
    args = parser.parse_args()
    if args.rejudge:
        path = report_dir("data_curves", args.name) / "data_curve.json"
        found = rejudge.recorded(args, path, "data curve", MEASURING)
        directory, readings = report(
            found.sweep, found.results, found.failed, found.tolerance, found.command, command()
        )
    else:
        if args.jobs is not None and args.jobs < 1:
            raise PipelineError(f"--jobs {args.jobs}: at least 1")
        sweep, tolerance = plan(args)
        # From the creation of its MLflow runs to their end (finish_sweep): a stop signal or an error on the way ends
        # them KILLED or FAILED, none stays RUNNING.
        with tracking.SweepGuard() as guard:
            results, failed, mlflow_runs = run_sweep(sweep, args.jobs or 1, args.collect, guard)
            directory, readings = report(sweep, results, failed, tolerance, command())
            tracking.finish_sweep(mlflow_runs, results, failed, directory, {})
    for run, line in readings.items():
        print(f"{run}: {line}", flush=True)
    print(f"wrote {directory}/README.md, data_curve.json, data_curve.png", flush=True)
    if not args.rejudge:
        stop_if_failed(failed, directory)


if __name__ == "__main__":
    run_stage(main)
