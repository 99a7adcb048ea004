"""Measure the seed spread of every metric (overfit_first.procedure.noise) and write metrics/seed_spread.json.

    python -m overfit_first seed_spread --seeds 0 1 2 3 4
    python -m overfit_first seed_spread --seeds 0 1 2 --experiments workspace seed1-x seed2-x   # already run

Each seed is one `dvc exp run --temp -S train.seed=<seed>` of the pipeline as it stands (the committed default
profile: about 11 minutes a seed on 2 cores), run one after another in a temporary copy, so the workspace is
left alone; the experiments stay listed by `dvc exp show` under the names the file records. A seed equal to
params.yaml's train.seed retrains nothing when `dvc status` is clean: its experiment then holds the committed
results. Every numeric metric of every metrics file of params.yaml's runs and datasets (`own_files`) is
summarized, and each run's verdict is kept per seed (the pull-request check's verdict gate reads them); commit the
file.

What the seed varies: the weights' initialization, the shuffling, the dropout masks and the augmentation. The
data is fixed (the training subset is each class's first images, seed-free): a pull request's reproduction
retrains on the same data, so data sampling is not part of the noise its check must absorb. Five seeds
(noise.REFRESH) give the rule four degrees of freedom; `python -m overfit_first noise` prints what that buys.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from overfit_first import atomic, layout
from overfit_first.config import Params, load_params
from overfit_first.errors import PipelineError, run_stage
from overfit_first.machine import machine
from overfit_first.procedure import dvc_client
from overfit_first.procedure.noise import MEASURED, MetricSpread, SeedSpread

VERDICT = "verdict"  # the evaluate stage's verdict of a run (metrics/<dataset>/<model>.json)
WORKSPACE = "workspace"


def run_seed(seed: int, name: str) -> None:
    print(f"seed {seed}: dvc exp run --temp --name {name} --set-param train.seed={seed}", flush=True)
    dvc_client.run("exp", "run", "--temp", "--name", name, "--set-param", f"train.seed={seed}", capture=False)


def experiment_metrics(names: list[str]) -> dict[str, dict[str, Any]]:
    """Each named experiment's metrics, {name: {metrics file: {metric: value}}}, from `dvc exp show --json`: the
    current commit's experiments, then (`--all-commits`, slower) those run on an earlier commit, when some name is
    not found there; PipelineError naming those not found at all."""
    found = dvc_client.experiment_metrics(names, all_commits=True)
    missing = [name for name in names if name not in found]
    if missing:
        raise PipelineError(f"`dvc exp show` lists no experiment {', '.join(missing)}: did `dvc exp run` fail?")
    return found


def own_files(params: Params) -> set[str]:
    """The metrics files params.yaml's train.seed moves: each of its runs' and each of its datasets' comparison. A
    second pipeline in its own folder (cifar/, with its own params.yaml) is listed by `dvc exp show` too, with the
    same committed values in every seed: no spread of the seed."""
    runs = [params.run(name) for name in params.runs]
    datasets = {run.dataset for run in runs}
    return {run.eval_metrics_path.as_posix() for run in runs} | {layout.comparison_file(d).as_posix() for d in datasets}


def spread(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, MetricSpread]]:
    """The numeric metrics present in every seed's results, summarized over the seeds."""
    result: dict[str, dict[str, MetricSpread]] = {}
    for path in sorted(per_seed[0]):
        for metric in sorted(per_seed[0][path]):
            values = [seed.get(path, {}).get(metric) for seed in per_seed]
            if not all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
                continue  # a verdict, a recommendation, or a metric some seed lacks
            numbers = [float(value) for value in values]
            result.setdefault(path, {})[metric] = MetricSpread(
                values=numbers,
                mean=statistics.fmean(numbers),
                std=statistics.stdev(numbers) if len(numbers) > 1 else 0.0,
                min=min(numbers),
                max=max(numbers),
            )
    return result


def verdicts(per_seed: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each run's verdict per seed ({metrics file: [verdict of each seed, in order]}): the files whose results
    hold a verdict in every seed."""
    result: dict[str, list[str]] = {}
    for path in sorted(per_seed[0]):
        found = [seed.get(path, {}).get(VERDICT) for seed in per_seed]
        if all(isinstance(value, str) for value in found):
            result[path] = found
    return result


def measure(seeds: list[int], out: Path, existing: list[str] | None = None) -> SeedSpread:
    """Run every seed (or read the `existing` experiments, one per seed, `workspace` for the workspace's
    results), then write and return the spread."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    names = existing or [f"seed{seed}-{stamp}" for seed in seeds]  # unique per refresh: earlier ones stay
    if not existing:
        for seed, name in zip(seeds, names):
            run_seed(seed, name)
    found = experiment_metrics([name for name in names if name != WORKSPACE])
    if WORKSPACE in names:
        found[WORKSPACE] = dvc_client.workspace_metrics()
    own = own_files(load_params())
    found = {name: {path: values for path, values in files.items() if path in own} for name, files in found.items()}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or None
    result = SeedSpread(
        status=MEASURED,
        command=f"python -m overfit_first seed_spread --seeds {' '.join(map(str, seeds))}",
        seeds=seeds,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        commit=commit,
        experiments=names,
        machine=machine(),
        metrics=spread([found[name] for name in names]),
        verdicts=verdicts([found[name] for name in names]),
    )
    atomic.write_text(out, result.model_dump_json(indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m overfit_first seed_spread",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", required=True, help="two or more train.seed values (five: 0 1 2 3 4)"
    )
    parser.add_argument("--out", type=Path, default=layout.SEED_SPREAD, help="where to write the spread (JSON)")
    parser.add_argument(
        "--experiments",
        nargs="+",
        metavar="NAME",
        help="summarize these finished experiments, one per seed in --seeds order, instead of "
        f"running them ('{WORKSPACE}': the workspace's results)",
    )
    args = parser.parse_args()
    layout.require_repo_root()
    bad = [seed for seed in args.seeds if not 0 <= seed <= 2**32 - 1]
    if bad:
        raise PipelineError(f"--seeds {' '.join(map(str, bad))}: a train.seed is 0 to 2**32 - 1 (Keras' range)")
    if len(set(args.seeds)) < 2:
        raise PipelineError("--seeds needs at least two different seeds: one seed has no spread")
    if args.experiments and len(args.experiments) != len(args.seeds):
        raise PipelineError(
            f"--experiments names {len(args.experiments)} experiments for {len(args.seeds)} seeds: "
            "give one per seed, in the same order"
        )
    result = measure(list(dict.fromkeys(args.seeds)), args.out, args.experiments)
    total = sum(len(metrics) for metrics in result.metrics.values())
    print(f"wrote {args.out}: {total} metrics of {len(result.metrics)} files over seeds {result.seeds}; commit it")


if __name__ == "__main__":
    run_stage(main)
