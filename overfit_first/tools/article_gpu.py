"""The article's eight runs at full scale on one GPU, in one command: Keras 3 on JAX, no TensorFlow, no DVC.

    python -m overfit_first article_gpu --archives DIR --out OUT [--minutes 7]

1. Prepares CIFAR-10 and CIFAR-100 from local archives in DIR, exactly as the pipeline's download and prepare
   stages do (validation = the first 5,000 training images): the official python archives
   (cifar-10-python.tar.gz, cifar-100-python.tar.gz, checksums verified) or image-folder archives
   (cifar10-jpeg.tar.gz, cifar100-jpeg.tar.gz, with hierarchy.csv for CIFAR-100's superclasses).
2. Trains the runs of profiles/article.yaml (over params.yaml) concurrently, one process each on the one GPU:
   the article's models, optimizers, batch sizes, epochs, early stopping (patience 10 on validation
   accuracy) and best-epoch checkpoint (overfit_first.training), under the `mixed_bfloat16` policy on a GPU
   (each output layer float32, as params.yaml says) with XLA (`jit_compile=True`). The datasets are arrays
   in memory; cnn_augmented's on-the-fly augmentation runs as Keras preprocessing layers in front of the
   model, on the device (training only).
3. Evaluates every run as the evaluate stage does (overfit_first.evaluation) and writes the pipeline's files.

A wall-clock budget (`--minutes`, for everything) bounds it: a run stops after the epoch at which the next one
would no longer fit before the budget's end less `--reserve-seconds` (its evaluation), and is recorded as
stopped by the budget (epochs done against the article's); its best epoch so far is then what it reports.

Output folder (`--out`):

    metrics/<dataset>/train/<model>.json, .history.csv   the training log, as the evaluate stage publishes it
    metrics/<dataset>/<model>.json, .per_class.json, .predictions.csv   as the evaluate stage writes them
    runs/<run>.json     how each run went: epochs done / planned / the article's, stopped by, epoch seconds,
                        device, jax and keras versions, dtype policy
    summary.md, summary.json   one row per run beside the article's reported numbers
    article.log         preparation and every run's per-epoch progress, as it happened

The GPU machine needs, beyond Python 3.12 with jax (CUDA), numpy, pillow, pandas, pyyaml and Keras' own
dependencies, the wheels of scripts/gpu-wheels.txt (downloaded by scripts/gpu_wheels.sh into .whl/):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
        .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && \\
        python3 -m overfit_first article_gpu --archives DIR --out $OUT/article --minutes 7

(scripts/article_gpu_device.sh DIR [MINUTES] does just that, then prints the log's tail and summary.md.)

On a CPU, `--tiny` (or --train-images / --valid-images / --epochs) makes a quick smoke run of the same path.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from overfit_first import atomic, config, layout
from overfit_first.data import image_folder, parsers, prepare, raw, sources
from overfit_first.data.splits import PREPARED_ROOT
from overfit_first.errors import PipelineError, run_stage
from overfit_first.tools import profiles
from overfit_first.tools.article_gpu_summary import summarize
from overfit_first.tools.article_gpu_worker import worker

REPO = Path(__file__).resolve().parents[2]
ARTICLE_PROFILE = REPO / "profiles" / "article.yaml"
# Archive names searched in --archives, per dataset, first found wins: the official archive, then an image folder.
ARCHIVE_NAMES = {
    "cifar10": ("cifar-10-python.tar.gz", "cifar10-jpeg.tar.gz", "cifar10.tar.gz", "cifar10"),
    "cifar100": ("cifar-100-python.tar.gz", "cifar100-jpeg.tar.gz", "cifar100.tar.gz", "cifar100"),
}
OFFICIAL_PARSERS = {"cifar-10-python.tar.gz": parsers.read_cifar10, "cifar-100-python.tar.gz": parsers.read_cifar100}
TINY = {"train_images": 200, "valid_images": 100, "epochs": 2}
PRECISIONS = ("auto", "mixed_bfloat16", "float32")
KILL_AFTER_S = 20.0  # a worker still alive this long after SIGTERM is killed


# ---------------------------------------------------------------------------------------------- settings


def article_params(
    profile: Path = ARTICLE_PROFILE,
    runs: list[str] | None = None,
    train_images: int | None = None,
    valid_images: int | None = None,
    epochs: int | None = None,
) -> dict[str, Any]:
    """params.yaml with `profile` merged in (as `python -m overfit_first profiles` merges it), validated.

    `runs` keeps only those runs (and their datasets); `train_images` sets train.subset_size, `valid_images`
    prepare.valid_size, and `epochs` caps every run's epochs (runs.<run>.epochs). Returns the raw mapping
    (JSON-serializable, for the workers); raises PipelineError on an unknown run or an invalid result.
    """
    params = config.read_yaml(REPO / config.PARAMS_FILE)
    profiles.merge(params, config.read_yaml(profile))
    if runs:
        unknown = sorted(set(runs) - set(params["runs"]))
        if unknown:
            raise PipelineError(f"unknown run(s) {', '.join(unknown)}; {profile} defines {', '.join(params['runs'])}")
        params["runs"] = {name: params["runs"][name] for name in runs}
    params["data"]["datasets"] = sorted({entry["dataset"] for entry in params["runs"].values()})
    if train_images is not None:
        params["train"]["subset_size"] = train_images
    if valid_images is not None:
        params["prepare"]["valid_size"] = valid_images
    if epochs is not None:
        for entry in params["runs"].values():
            entry["epochs"] = min(epochs, entry.get("epochs") or epochs)
    config.validate(params, source=f"params.yaml with {profile.name}")
    return json.loads(json.dumps(params))


def find_sources(datasets: list[str], archives: Path | None, explicit: dict[str, Path]) -> dict[str, Path]:
    """The archive (or image-folder directory) of each dataset: `explicit` first, then ARCHIVE_NAMES in `archives`."""
    found: dict[str, Path] = {}
    for dataset in datasets:
        if dataset in explicit:
            found[dataset] = explicit[dataset]
            continue
        candidates = [archives / name for name in ARCHIVE_NAMES.get(dataset, (dataset,))] if archives else []
        match = next((path for path in candidates if path.exists()), None)
        if match is None:
            names = ", ".join(ARCHIVE_NAMES.get(dataset, (dataset,)))
            raise PipelineError(
                f"no archive of {dataset} in {archives} (looked for {names}); or pass --data {dataset}=PATH"
            )
        found[dataset] = match
    return found


# ---------------------------------------------------------------------------------------------- data


def read_source(dataset: str, path: Path) -> tuple[raw.RawData, dict[str, Any]]:
    """The dataset's official splits from `path` and the meta.json of the download stage.

    An official CIFAR python archive (by its file name) is checked against its published checksums before it is
    unpickled; anything else is read as an image folder (overfit_first.data.image_folder).
    """
    checksum = image_folder.tree_checksum(path)
    parser = OFFICIAL_PARSERS.get(path.name)
    if parser is not None:
        published = next(file for source in sources.BUILTIN.values() for file in source.files if file.name == path.name)
        if checksum not in published.checksums:
            raise PipelineError(
                f"{path}: {checksum} is not the published checksum of {path.name} "
                f"({', '.join(published.checksums)}); it is corrupt or another file"
            )
        data, description = parser({path.name: path}), f"official archive {path.name}"
    else:
        data, description = image_folder.read(path), f"image folder {path}"
    raw.check(data, str(path))
    meta = {
        "dataset": dataset,
        "source": description,
        "class_names": data.class_names,
        "superclass_names": data.superclass_names,
        "files": [{"name": path.name, "checksum": checksum, "origin": str(path)}],
    }
    return data, meta


def prepare_dataset(dataset: str, path: Path, settings: dict[str, Any], work: Path) -> dict[str, Any]:
    """Write work/data/raw/<dataset> and work/data/prepared/<dataset> as the download and prepare stages do.

    `settings` is params.yaml `prepare`. Returns the prepared summary plus `seconds` (wall clock).
    """
    started = time.perf_counter()
    data, meta = read_source(dataset, path)
    raw_root = work / raw.RAW_ROOT
    raw.write(raw_root / dataset, data, meta)
    summary = prepare.prepare(dataset, config.PrepareConfig(**settings), raw_root, work / PREPARED_ROOT)
    return {**summary, "seconds": round(time.perf_counter() - started, 1)}


# ---------------------------------------------------------------------------------------------- orchestration


@dataclass
class Worker:
    run: str
    process: subprocess.Popen[str]
    reader: threading.Thread
    terminated: bool = False


class Log:
    """article.log and stdout at once, one whole line at a time (the reader threads share it)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stream: TextIO = path.open("a", encoding="utf-8")
        self.lock = threading.Lock()
        self.started = time.time()

    def __call__(self, text: str, source: str = "main") -> None:
        line = f"{time.time() - self.started:7.1f}s [{source}] {text.rstrip()}"
        with self.lock:
            print(line, flush=True)
            self.stream.write(line + "\n")
            self.stream.flush()


def _relay(process: subprocess.Popen[str], run: str, log: Log) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip():
            log(line, run)


def start_worker(run: str, args: argparse.Namespace, work: Path, deadline: float, parallel: int, log: Log) -> Worker:
    """A `python -m overfit_first.tools.article_gpu --worker RUN` process, its output relayed to the log."""
    env = dict(os.environ)
    env["KERAS_BACKEND"] = "jax"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # Several processes share the one GPU: none may grab most of its memory up front.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / max(parallel, 1):.3f}")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [
        sys.executable,
        "-m",
        "overfit_first.tools.article_gpu",
        "--worker",
        run,
        "--work",
        str(work),
        "--out",
        str(args.out),
        "--deadline",
        repr(deadline),
        "--steps-per-execution",
        str(args.steps_per_execution),
        "--precision",
        args.precision,
    ]
    process = subprocess.Popen(
        command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    reader = threading.Thread(target=_relay, args=(process, run, log), daemon=True)
    reader.start()
    return Worker(run, process, reader)


def orchestrate(args: argparse.Namespace) -> None:
    """Prepare the data, run every run's worker (at most --parallel at once) within the budget, summarize."""
    started = time.time()
    if args.minutes <= 0 or args.reserve_seconds < 0 or args.grace_seconds < 0:
        raise PipelineError("--minutes must be positive, --reserve-seconds and --grace-seconds zero or more")
    if args.archives is None and not args.data:
        raise PipelineError("say where the datasets' archives are: --archives DIR or --data DATASET=PATH")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "article.log")
    if args.tiny:
        for key, value in TINY.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    params = article_params(args.profile, args.runs, args.train_images, args.valid_images, args.epochs)
    with work_folder(args.work) as work:
        run_all(args, params, work, out, log, started)


@contextlib.contextmanager
def work_folder(given: str | None) -> Iterator[Path]:
    """The folder for the prepared data and the checkpoints: `given` (--work), kept afterwards; else a new one in
    the system's temporary directory (TMPDIR), removed however the command ends: done, failed, Ctrl-C or a stop
    signal (errors.run_stage turns those into KeyboardInterrupt). It holds the raw and prepared datasets (hundreds
    of MB for CIFAR, --tiny too) and nothing the output needs: out/ holds the results, and the link
    work/metrics -> out/metrics is removed, not followed."""
    if given:
        work = Path(given).resolve()
        work.mkdir(parents=True, exist_ok=True)
        yield work
        return
    work = Path(tempfile.mkdtemp(prefix="article_gpu-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_all(args: argparse.Namespace, params: dict[str, Any], work: Path, out: Path, log: Log, started: float) -> None:
    """orchestrate's work in `work`: prepare, train and evaluate every run within the budget, summarize."""
    atomic.write_json(work / "params.json", params)
    (out / "metrics").mkdir(exist_ok=True)
    link = work / layout.METRICS
    if not link.is_symlink():
        shutil.rmtree(link, ignore_errors=True)
        link.symlink_to(out / "metrics", target_is_directory=True)
    budget_end = started + 60 * args.minutes
    deadline = budget_end - args.reserve_seconds
    runs = list(params["runs"])
    log(
        f"{len(runs)} run(s): {', '.join(runs)}; budget {args.minutes:g} min (training until "
        f"{deadline - started:.0f}s), work folder {work}{'' if args.work else ' (removed at the end)'}, output {out}"
    )

    explicit = {name: Path(path) for name, path in (item.split("=", 1) for item in args.data)}
    found = find_sources(params["data"]["datasets"], args.archives, explicit)
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with concurrent.futures.ProcessPoolExecutor(len(found), mp_context=context) as pool:
        futures = {
            dataset: pool.submit(prepare_dataset, dataset, path.resolve(), params["prepare"], work)
            for dataset, path in found.items()
        }
        prepared = {dataset: future.result() for dataset, future in futures.items()}
    for dataset, summary in prepared.items():
        counts = ", ".join(f"{name} {split['count']}" for name, split in summary["splits"].items())
        log(f"prepared {dataset} from {found[dataset]} in {summary['seconds']}s: {counts}", dataset)

    parallel = min(args.parallel or len(runs), len(runs))
    pending, running = list(runs), []
    outcomes: dict[str, str] = {}  # run -> why it has no results, for the summary (a run with results: unused)
    try:
        while pending or running:
            while pending and len(running) < parallel:
                name = pending.pop(0)
                if time.time() >= deadline:
                    outcomes[name] = "not started: no budget left"
                    log(outcomes[name], name)
                    continue
                running.append(start_worker(name, args, work, deadline, parallel, log))
            time.sleep(0.5)
            for worker_ in [w for w in running if w.process.poll() is not None]:
                worker_.reader.join(timeout=5)
                code = worker_.process.returncode
                outcomes[worker_.run] = (
                    "killed past the budget" if worker_.terminated else f"failed (exit status {code})"
                )
                running.remove(worker_)
                log(f"exited with status {code}", worker_.run)
            overdue = time.time() - (budget_end + args.grace_seconds)
            if overdue > 0:
                for worker_ in running:
                    if not worker_.terminated:
                        log("past the budget and its grace period: terminated", worker_.run)
                        worker_.process.terminate()
                        worker_.terminated = True
                    elif overdue > KILL_AFTER_S:
                        worker_.process.kill()
    finally:
        for worker_ in running:
            if worker_.process.poll() is None:
                worker_.process.kill()
            outcomes[worker_.run] = f"killed (exit status {worker_.process.wait()})"
        rows = summarize(out, params, outcomes, prepared, time.time() - started)
        log(f"summary: {out / 'summary.md'} ({sum(row['status'] == 'ok' for row in rows)}/{len(rows)} runs complete)")
    failed = [row["run"] for row in rows if row["status"] != "ok"]
    if failed:
        raise PipelineError(f"run(s) {', '.join(failed)} did not complete: see {out / 'article.log'}")


# ---------------------------------------------------------------------------------------------- entry point


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m overfit_first article_gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument("--archives", type=Path, help="folder holding the datasets' archives (see ARCHIVE_NAMES)")
    result.add_argument("--data", action="append", default=[], metavar="DATASET=PATH", help="a dataset's archive")
    result.add_argument("--out", type=Path, required=True, help="output folder (metrics/, runs/, summary.md, log)")
    result.add_argument(
        "--work",
        help="folder for the prepared data and checkpoints, kept (default: a temporary one, removed at the end)",
    )
    result.add_argument("--minutes", type=float, default=7.0, help="wall-clock budget for everything (default 7)")
    result.add_argument("--reserve-seconds", type=float, default=60.0, help="kept for evaluation (default 60)")
    result.add_argument("--grace-seconds", type=float, default=60.0, help="after the budget, before killing")
    result.add_argument("--profile", type=Path, default=ARTICLE_PROFILE, help="profile merged over params.yaml")
    result.add_argument("--runs", nargs="+", help="only these runs of the profile (default: all)")
    result.add_argument("--parallel", type=int, help="runs training at once (default: all)")
    result.add_argument("--steps-per-execution", type=int, default=32, help="Keras compile() setting (default 32)")
    result.add_argument("--precision", choices=PRECISIONS, default="auto", help="auto: mixed_bfloat16 on a GPU")
    result.add_argument("--tiny", action="store_true", help=f"a smoke run: defaults {TINY}")
    result.add_argument("--train-images", type=int, help="train.subset_size (default: all)")
    result.add_argument("--valid-images", type=int, help="prepare.valid_size (default: the article's 5000)")
    result.add_argument("--epochs", type=int, help="at most this many epochs per run")
    result.add_argument("--worker", help=argparse.SUPPRESS)
    result.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    return result


def main() -> None:
    args = parser().parse_args()
    layout.require_repo_root()
    if args.worker:
        worker(
            args.worker, Path(args.work), args.out.resolve(), args.deadline, args.steps_per_execution, args.precision
        )
    else:
        orchestrate(args)


if __name__ == "__main__":
    run_stage(main)
