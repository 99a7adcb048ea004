"""The regularization ladder: one command sweeps a params key over DVC experiments and recommends a step.

    python -m overfit_first ladder dropout                                   # model.dropout 0.0 0.2 0.4 0.6
    python -m overfit_first ladder dropout --values 0 0.2 0.4 0.6 --seeds 0 1 2 --jobs 2 \\
        --runs fashion_mnist-cnn_simplified                                  # only that run retrains
    python -m overfit_first ladder lr --param models.cnn_simplified.fit.learning_rate --values 3e-4 1e-3 3e-3
    python -m overfit_first ladder aug --augmentation --runs fashion_mnist-cnn_simplified_augmented   # off / on
    python -m overfit_first ladder dropout --collect                         # the report again, from the experiments
    python -m overfit_first ladder dropout --rejudge          # its recorded values judged again (procedure/rejudge.py)

Each (step, seed) is a DVC experiment `<name>-<step>[-s<seed>]` (overfit_first.procedure.sweep): queued, run by
`dvc queue start -j N`, waited for. The report, reports/ladders/<name>/ (README.md, ladder.json, ladder.png), has
per run and step the train, validation and test accuracy and the gap (mean and range over seeds, measured by the
evaluate stage in inference mode), the verdicts, and the recommended step (`recommend`): the smallest gap among
the steps whose validation accuracy is not below the best's both beyond noise and by more than the tolerance; a
smaller gap wins only beyond noise. "Beyond noise" is the project's one rule (overfit_first.procedure.noise): the
two steps' seed values by Student's two-sample t, Holm over the run's comparisons. The test accuracy never chooses.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from overfit_first import tracking
from overfit_first.errors import PipelineError, run_stage
from overfit_first.procedure import noise, rejudge
from overfit_first.procedure.sweep import (
    SEED,
    Step,
    StepResults,
    Sweep,
    check_name,
    check_seeds,
    check_steps,
    check_subset_sizes,
    get_key,
    load,
    number_label,
    parse_numbers,
    select_runs,
    train_images,
)
from overfit_first.procedure.sweep_report import chart, failures_markdown, report_dir, results_json, table, write_report
from overfit_first.procedure.sweep_run import run_sweep, stop_if_failed

DEFAULT_KEY = "model.dropout"
SUBSET_SIZE = "train.subset_size"
DEFAULT_VALUES = ("0.0", "0.2", "0.4", "0.6")
TOLERANCE = 0.01  # validation accuracy within this of the best is as good, noise or not (1 point; SE ~0.011 on 1,000)
VAL, GAP = "val_accuracy_inference", "gap"


def recommend(rows: StepResults, tolerance: float = TOLERANCE) -> tuple[str | None, dict[str, str], str]:
    """The recommended step of one run's ladder: (its label or None, a note per step label, one sentence why).

    best = the step with the highest mean validation accuracy. A step is as good as the best unless the best leads
    it beyond noise (noise.relations: its seeds against the best's, Holm over the steps) and by more than
    `tolerance` (accuracy, 0..1); with one seed there is no noise estimate and the tolerance alone decides. Among
    those, the smallest mean gap; a step whose gap is not larger beyond noise (Holm over those steps) ties with it,
    and of the tied steps the one with the higher validation accuracy is recommended. Failed steps (no seed
    succeeded) are skipped; earlier steps win exact ties.
    """
    done = [row for row in rows if row.ok]
    notes = {row.step.label: "failed" for row in rows if not row.ok}
    if not done:
        return None, notes, "every step failed: nothing to recommend"
    best = max(done, key=lambda row: row.stats[VAL].mean)
    others = [row for row in done if row is not best]
    candidates = [best]
    notes[best.step.label] = "best validation"
    for row, relation in zip(
        others, noise.relations([(row.stats[VAL].values, best.stats[VAL].values) for row in others])
    ):
        lead = relation.difference
        if lead <= tolerance:
            notes[row.step.label] = f"validation {lead:.3f} below best, within the tolerance {tolerance:g}"
        else:
            notes[row.step.label] = f"validation {lead:.3f} below best, {relation}"
        if lead <= tolerance or not relation.beyond:
            candidates.append(row)
    candidates.sort(key=done.index)  # earlier steps win exact ties
    smallest = min(candidates, key=lambda row: row.stats[GAP].mean)
    rivals = [row for row in candidates if row is not smallest]
    tied = [smallest]
    for row, relation in zip(
        rivals, noise.relations([(smallest.stats[GAP].values, row.stats[GAP].values) for row in rivals])
    ):
        notes[row.step.label] += f"; gap {relation.difference:+.3f} against {smallest.step.label}'s, {relation}"
        if not relation.beyond:
            tied.append(row)
    tied.sort(key=done.index)
    chosen = max(tied, key=lambda row: row.stats[VAL].mean)
    notes[chosen.step.label] = "**recommended**; " + notes[chosen.step.label]
    why = (
        f"validation {chosen.stats[VAL].text()}, gap {chosen.stats[GAP].text()}: the smallest gap among the "
        f"{len(candidates)} step(s) whose validation accuracy is not below the best's ({best.step.label}: "
        f"{best.stats[VAL].text()}) beyond noise and by more than {tolerance:g}"
    )
    if len(tied) > 1:
        ties = ", ".join(row.step.label for row in tied if row is not chosen)
        why += f"; gap within noise of {ties}, so the higher validation accuracy decides"
    return chosen.step.label, notes, why


def plan(args: argparse.Namespace) -> tuple[Sweep, float]:
    """The sweep the arguments ask for, every input checked first (PipelineError naming the argument and the fix)."""
    check_name(args.name)
    params, raw = load()
    tolerance = TOLERANCE if args.tolerance is None else args.tolerance
    if tolerance < 0 or tolerance >= 1:
        raise PipelineError(f"--tolerance {tolerance}: an accuracy difference, 0 <= tolerance < 1")
    if args.augmentation:
        if args.param or args.values:
            raise PipelineError("--augmentation sweeps models.<model>.augmentation off/on: drop --param and --values")
        if not args.runs or len(args.runs) != 1:
            raise PipelineError("--augmentation needs one run: --runs <run> (its model's augmentation is switched)")
        run = params.run(args.runs[0])
        key = f"models.{run.model}.augmentation"
        block = get_key(raw, key) if "augmentation" in raw["models"][run.model] else None
        if not block:
            raise PipelineError(
                f"{key} is not set: nothing to switch off. Give models.{run.model} an augmentation block in "
                "params.yaml (e.g. cnn_simplified_augmented's)"
            )
        steps = [Step("off", None, None), Step("on", block, None, as_is=True)]
    else:
        key = args.param or DEFAULT_KEY
        if key == SEED:
            raise PipelineError(f"--param {SEED}: seeds are repeats of every step, not steps: use --seeds 0 1 2")
        current = get_key(raw, key)
        if isinstance(current, bool) or not isinstance(current, int | float | None):
            raise PipelineError(
                f"{key} = {current!r} is not a number: the ladder sweeps numeric keys (for augmentation: "
                "--augmentation --runs <run>)"
            )
        texts = args.values or (DEFAULT_VALUES if key == DEFAULT_KEY else None)
        if not texts:
            raise PipelineError(f"--values: give the values of {key} to sweep, e.g. --values 0.1 0.2 0.4")
        integer = isinstance(current, int) or (current is None and all(v.lstrip("-").isdigit() for v in texts))
        numbers = parse_numbers(key, texts, integer)
        if len(numbers) < 2:
            raise PipelineError(f"--values {' '.join(texts)}: a ladder compares steps, give at least two values")
        steps = [Step(number_label(value), value, float(value)) for value in numbers]
    check_steps(raw, key, [step for step in steps if not step.as_is])
    runs = select_runs(params, key, args.runs)
    if key == SUBSET_SIZE:  # checked against the prepared training images, as the data-size curve's sizes are
        check_subset_sizes("--values", [int(step.value) for step in steps], train_images(runs[0].dataset))
    return Sweep(args.name, key, steps, check_seeds(args.seeds), runs, "ladder"), tolerance


def readme(
    sweep: Sweep,
    results: dict[str, StepResults],
    failed: dict[str, str],
    tolerance: float,
    measured_by: str | None,
    rejudged_by: str | None = None,
) -> tuple[str, dict]:
    """The report's README.md and the recommendation per run ({run: {"step": label or None, "why": sentence}});
    `measured_by`, `rejudged_by`: the commands that measured the values (None: not recorded) and judged them again
    (rejudge.provenance)."""
    seeds = f"seeds {', '.join(map(str, sweep.seeds))}" if sweep.seeds else "params.yaml's train.seed (one seed)"
    lines = [
        f"# Ladder `{sweep.name}`: {sweep.key}",
        "",
        rejudge.provenance(measured_by, rejudged_by, sweep.name),
        "",
        f"Steps {', '.join(step.label for step in sweep.steps)} over {seeds}; each (step, seed) is the DVC experiment "
        f"`{sweep.name}-<step>{'-s<seed>' if sweep.seeds else ''}` (`dvc exp show`). Accuracies are the evaluate "
        "stage's, measured on the saved model in inference mode; gap = train - validation. With several seeds: "
        "mean (min-max). Recommended: the smallest gap among the steps whose validation accuracy is not below the "
        f"best's both beyond noise and by more than {tolerance:g}; a smaller gap wins only beyond noise. Beyond "
        "noise: the two steps' seed values differ by Student's two-sample t test at "
        f"family-wise {noise.ALPHA:g}, Holm over the run's comparisons (p as adjusted; "
        "overfit_first/procedure/noise.py); "
        "with one seed there is no noise estimate. The test accuracy never chooses.",
        "",
        "![gap and validation accuracy](ladder.png)",
        "",
    ]
    recommended: dict[str, Any] = {}
    for run, rows in results.items():
        label, notes, why = recommend(rows, tolerance)
        recommended[run] = {"step": label, "why": why}
        lines += [f"## {run}", "", f"**Recommended: {sweep.key} = {label}**: {why}." if label else why, ""]
        lines += [table(rows, sweep.key, notes), ""]
    lines.append(failures_markdown(failed))
    return "\n".join(lines).rstrip() + "\n", recommended


def command() -> str:
    return shlex.join(["python", "-m", "overfit_first", "ladder", *sys.argv[1:]])


def report(
    sweep: Sweep,
    results: dict[str, StepResults],
    failed: dict[str, str],
    tolerance: float,
    measured_by: str | None,
    rejudged_by: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Write reports/ladders/<name>/ whole (README.md, ladder.json, ladder.png) from `results`, judged by
    `recommend`; the directory and the recommendation per run (readme). The json records `measured_by` as
    "command", and `rejudged_by` when given."""
    text, recommended = readme(sweep, results, failed, tolerance, measured_by, rejudged_by)
    data = {
        "sweep": sweep.name,
        "key": sweep.key,
        "steps": [step.label for step in sweep.steps],
        "seeds": sweep.seeds,
        "tolerance": tolerance,
        "command": measured_by,
        **({"rejudged_by": rejudged_by} if rejudged_by else {}),
        "recommended": recommended,
        "runs": results_json(results),
        "failed_experiments": failed,
    }
    directory = report_dir("ladders", sweep.name)
    title = f"ladder {sweep.name}: {sweep.key}"
    write_report(
        directory,
        {"README.md": text, "ladder.json": data},
        "ladder.png",
        lambda p: chart(results, sweep.key, p, title),
    )
    return directory, recommended


MEASURING = ("collect", "values", "seeds", "runs", "jobs", "augmentation", "param")  # options --rejudge refuses


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m overfit_first ladder", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="the sweep's name: prefixes its DVC experiments and names its report")
    parser.add_argument("--param", help=f"a numeric params.yaml key (default {DEFAULT_KEY})")
    parser.add_argument(
        "--values", nargs="+", help=f"its values (default for {DEFAULT_KEY}: {' '.join(DEFAULT_VALUES)})"
    )
    parser.add_argument(
        "--augmentation", action="store_true", help="sweep the --runs run's augmentation off/on instead"
    )
    parser.add_argument("--runs", nargs="+", help="runs to retrain and report (default: every run the key affects)")
    parser.add_argument("--seeds", type=int, nargs="+", help="repeat each step with these train.seed values")
    parser.add_argument("--jobs", type=int, help="experiments at once (`dvc queue start -j`, default 1)")
    parser.add_argument(
        "--tolerance", type=float, help=f"validation tolerance (default {TOLERANCE}; with --rejudge the report's)"
    )
    parser.add_argument(
        "--collect", action="store_true", help="queue nothing: report the experiments an earlier run queued"
    )
    parser.add_argument(
        "--rejudge",
        action="store_true",
        help="measure nothing: judge the values ladder.json recorded again under the current rule, rewrite the report",
    )
    args = parser.parse_args()
    if args.rejudge:
        found = rejudge.recorded(args, report_dir("ladders", args.name) / "ladder.json", "ladder", MEASURING)
        sweep = found.sweep
        directory, recommended = report(sweep, found.results, found.failed, found.tolerance, found.command, command())
    else:
        if args.jobs is not None and args.jobs < 1:
            raise PipelineError(f"--jobs {args.jobs}: at least 1")
        sweep, tolerance = plan(args)
        # From the creation of its MLflow runs to their end (finish_sweep): a stop signal or an error on the way ends
        # them KILLED or FAILED, none stays RUNNING.
        with tracking.SweepGuard() as guard:
            results, failed, mlflow_runs = run_sweep(sweep, args.jobs or 1, args.collect, guard)
            directory, recommended = report(sweep, results, failed, tolerance, command())
            tracking.finish_sweep(
                mlflow_runs, results, failed, directory, {run: str(rec["step"]) for run, rec in recommended.items()}
            )
    for run, rec in recommended.items():
        print(f"{run}: recommended {sweep.key} = {rec['step']}: {rec['why']}", flush=True)
    print(f"wrote {directory}/README.md, ladder.json, ladder.png", flush=True)
    if not args.rejudge:
        stop_if_failed(failed, directory)


if __name__ == "__main__":
    run_stage(main)
