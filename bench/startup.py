"""A stage's start-up: importing Keras with the unused libraries skipped (overfit_first.unused_imports, what every
stage does first) against importing it as is (the baseline), in fresh interpreters, alternately.

    python -m bench.startup [--rounds 5] [--out FILE]

The median of each counts; the ratio is baseline / skipped (above 1: the stages start faster).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, stage_env, write_result
from overfit_first.errors import run_stage

BASELINE = "import keras"
SKIPPED = "from overfit_first import unused_imports; unused_imports.skip(); import keras"
CHECK = "; import sys; print(sorted(name for name in ('jax', 'sklearn') if sys.modules.get(name)))"


def seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=stage_env(), check=True, capture_output=True)
    return time.perf_counter() - started


def measure(rounds: int) -> dict[str, Any]:
    imported = {
        name: subprocess.run(
            [sys.executable, "-c", code + CHECK], cwd=REPO, env=stage_env(), check=True, capture_output=True, text=True
        ).stdout.strip()
        for name, code in (("baseline", BASELINE), ("skipped", SKIPPED))
    }
    times: dict[str, list[float]] = {"baseline": [], "skipped": []}
    for round_number in range(rounds):
        for name, code in (("baseline", BASELINE), ("skipped", SKIPPED)):
            times[name].append(seconds(code))
        print(f"round {round_number + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
    baseline, skipped = statistics.median(times["baseline"]), statistics.median(times["skipped"])
    return {
        "rounds": rounds,
        "seconds": times,
        "baseline_median": baseline,
        "skipped_median": skipped,
        "ratio": baseline / skipped,
        "imported": imported,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure(args.rounds)
    print(
        f"import keras: {result['skipped_median']:.2f} s skipped, {result['baseline_median']:.2f} s as is; "
        f"RATIO {result['ratio']:.2f}; imported jax/sklearn: {result['imported']}",
        flush=True,
    )
    write_result(args.out, result)


if __name__ == "__main__":
    run_stage(main)
