"""Accuracy parity of two numerics (float32 and bf16) on the default profile, over seeds: bench/precision_parity.md.

    python -m bench.parity --float32 git:48ac4ee seed1-default seed2-default \\
                           --bf16 git:HEAD bf16-seed1 bf16-seed2

Each side names one result per seed: a DVC experiment (by name), or `git:<rev>` for the results committed
at <rev>; both are read from git. Verdicts are recomputed with the current rules (params.yaml `evaluate`)
from each result's accuracies and training history, so results evaluated under an earlier rule compare
fairly. Per run and metric the table gives each side's values, mean and range over its seeds and
the difference of the means; parity holds for a metric when that difference is at most the larger of the
two seed ranges (max - min), the seed-to-seed spread measured in the same table. The verdicts must agree by
majority over the seeds (a verdict near a threshold may flip between seeds of one precision already).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
from collections import Counter
from pathlib import Path

import pandas as pd

from bench.common import REPO
from overfit_first import atomic, layout
from overfit_first.config import EvaluateConfig, Params, load_params
from overfit_first.errors import PipelineError, run_stage
from overfit_first.verdict import still_learning, verdict

COMPARED = ("train_accuracy_inference", "val_accuracy_inference", "test_accuracy", "gap")
OUT = REPO / "bench" / "precision_parity.md"


def git(*args: str) -> str:
    shown = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO)
    if shown.returncode != 0:
        raise PipelineError(f"`git {' '.join(args)}` failed: {shown.stderr.strip()}")
    return shown.stdout


def revision(name: str) -> str:
    """`git:<rev>` -> rev; an experiment's name -> its commit (DVC keeps it at refs/exps/.../<name>)."""
    if name.startswith("git:"):
        return name[4:]
    refs = git("for-each-ref", "--format=%(objectname) %(refname)", "refs/exps").splitlines()
    found = [line.split()[0] for line in refs if line.endswith(f"/{name}")]
    if len(found) != 1:
        raise PipelineError(f"{len(found)} experiments named {name} (`dvc exp list --all-commits` lists them)")
    return found[0]


def result(name: str, params: Params) -> dict[str, dict]:
    """{run: its evaluate metrics} of one result, the verdict recomputed with the current rules."""
    rev = revision(name)
    rules: EvaluateConfig = params.evaluate
    found = {}
    for run_name in params.runs:
        run = params.run(run_name)
        measured = json.loads(git("show", f"{rev}:{layout.eval_metrics_file(run.dataset, run.model).as_posix()}"))
        history = pd.read_csv(
            io.StringIO(git("show", f"{rev}:{layout.published_history_file(run.dataset, run.model).as_posix()}"))
        )
        learning = still_learning(history["val_accuracy"].tolist(), params.prepare.valid_size, rules)
        train, val = measured["train_accuracy_inference"], measured["val_accuracy_inference"]
        found[run_name] = {**measured, "verdict": verdict(train, val, rules, learning)}
    return found


def majority(verdicts: list[str]) -> str | None:
    """The verdict more than half of the seeds gave; None when the seeds disagree more than that."""
    verdict_, count = Counter(verdicts).most_common(1)[0]
    return verdict_ if count > len(verdicts) / 2 else None


def compare(float32: list[dict[str, dict]], bf16: list[dict[str, dict]], runs: list[str]) -> tuple[str, bool]:
    """The markdown table and whether parity holds for every run, metric and verdict."""
    lines = [
        "| run | metric | float32 (per seed) | mean | range | bf16 (per seed) | mean | range | bf16 - float32 "
        "| parity |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---|",
    ]
    holds = True
    for run in runs:
        for metric in COMPARED:
            a = [float(seed[run][metric]) for seed in float32]
            b = [float(seed[run][metric]) for seed in bf16]
            difference = statistics.fmean(b) - statistics.fmean(a)
            spread = max(max(a) - min(a), max(b) - min(b))
            ok = abs(difference) <= spread
            holds &= ok
            lines.append(
                f"| {run} | {metric} | {' / '.join(f'{v:.3f}' for v in a)} | {statistics.fmean(a):.3f} | "
                f"{max(a) - min(a):.3f} | {' / '.join(f'{v:.3f}' for v in b)} | {statistics.fmean(b):.3f} | "
                f"{max(b) - min(b):.3f} | {difference:+.3f} | {'yes' if ok else '**no**'} |"
            )
        a_verdicts = [seed[run]["verdict"] for seed in float32]
        b_verdicts = [seed[run]["verdict"] for seed in bf16]
        a_majority, b_majority = majority(a_verdicts), majority(b_verdicts)
        if a_majority is None or b_majority is None:
            # No majority: the verdict flips between seeds of one precision, noise decides it either way.
            outcome = "undecided: no majority"
        else:
            outcome = "yes" if a_majority == b_majority else "**no**"
            holds &= a_majority == b_majority
        lines.append(
            f"| {run} | verdict | {' / '.join(a_verdicts)} | {a_majority or 'none'} | | "
            f"{' / '.join(b_verdicts)} | {b_majority or 'none'} | | | {outcome} |"
        )
    return "\n".join(lines), holds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.parity", description=__doc__.split("\n")[0])
    parser.add_argument("--float32", nargs="+", required=True, metavar="RESULT", help="one per seed")
    parser.add_argument("--bf16", nargs="+", required=True, metavar="RESULT", help="one per seed, same order")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    layout.require_repo_root()
    if len(args.float32) != len(args.bf16) or len(args.float32) < 2:
        raise PipelineError("give --float32 and --bf16 the same number (two or more) of results, one per seed")
    params = load_params()
    table, holds = compare(
        [result(name, params) for name in args.float32], [result(name, params) for name in args.bf16], list(params.runs)
    )
    text = (
        "# Accuracy parity: bf16 against float32 on the default profile\n\n"
        f"Written by `python -m bench.parity --float32 {' '.join(args.float32)} --bf16 {' '.join(args.bf16)}`. "
        "One result per seed (train.seed 0, 1, 2, in that order), each a full `dvc repro` of the default profile; "
        "accuracies in inference mode. Parity of a metric: |difference of the means| <= the larger seed range "
        "of the two precisions; of a verdict: the same majority verdict over the seeds (undecided where one "
        "precision's seeds give no majority: noise decides that verdict).\n\n"
        f"{table}\n\n**Parity {'holds' if holds else 'fails'}**: {table.count('**no**')} row(s) marked no, "
        f"{table.count('undecided')} verdict(s) undecided.\n"
    )
    atomic.write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    run_stage(main)
