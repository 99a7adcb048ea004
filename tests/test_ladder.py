"""The ladder's and the data-size curve's logic on synthetic tables (no training, no dvc): the recommendation and the
data-size reading read against the noise rule (overfit_first.procedure.noise), bad input refused before anything is
queued, and --rejudge: a written report's recorded values judged again (overfit_first.procedure.rejudge)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from overfit_first.errors import PipelineError
from overfit_first.procedure import data_curve, dvc_client, ladder, sweep_report, sweep_run
from overfit_first.procedure.sweep import Stat, Step, StepResult, Sweep, affects
from overfit_first.procedure.sweep_report import table

from conftest import REPO, default_stop_signals, run_stage, stage_env, write_params

METRICS = ("train_accuracy_inference", "val_accuracy_inference", "test_accuracy", "gap")


def row(label: str, val: list[float], gap: list[float], failed: bool = False) -> StepResult:
    """A step whose validation accuracies and gaps over seeds are `val` and `gap` (train = val + gap)."""
    result = StepResult(Step(label, float(label), float(label)))
    if failed:
        result.failed = [f"sweep-{label}"]
        return result
    result.stats = {
        "train_accuracy_inference": Stat([v + g for v, g in zip(val, gap)]),
        "val_accuracy_inference": Stat(list(val)),
        "test_accuracy": Stat([v - 0.02 for v in val]),
        "gap": Stat(list(gap)),
    }
    result.verdicts = ["good fit"] * len(val)
    return result


def test_recommends_the_smallest_gap_within_tolerance_of_the_best_validation() -> None:
    rows = [
        row("0.0", [0.850], [0.15]),  # best validation, large gap
        row("0.2", [0.845], [0.08]),  # within 0.01 of the best, smaller gap: recommended
        row("0.4", [0.830], [0.03]),  # smallest gap but 0.02 behind: too far
    ]
    label, notes, why = ladder.recommend(rows, tolerance=0.01)
    assert label == "0.2", (notes, why)
    # one seed: no noise estimate, so the tolerance decides the validation and the means the gap
    assert notes == {
        "0.0": "best validation; gap +0.070 against 0.2's, no noise estimate (one seed)",
        "0.2": "**recommended**; validation 0.005 below best, within the tolerance 0.01",
        "0.4": "validation 0.020 below best, no noise estimate (one seed)",
    }
    assert "smallest gap among the 2 step(s)" in why


def test_a_step_is_better_only_if_it_wins_beyond_noise() -> None:
    rows = [
        row("0.0", [0.86, 0.84, 0.85], [0.15, 0.14, 0.16]),
        # 0.02 behind the best on average, but the seeds spread by 0.04: within noise, as good as the best
        row("0.4", [0.85, 0.81, 0.83], [0.06, 0.07, 0.05]),
        # 0.03 behind: raw p 0.08, within noise too; its gap is 0.01 smaller than 0.4's, within noise: tied, and
        # 0.4's higher validation decides
        row("0.6", [0.84, 0.80, 0.82], [0.05, 0.06, 0.04]),
    ]
    label, notes, why = ladder.recommend(rows, tolerance=0.01)
    assert label == "0.4", (notes, why)
    assert notes == {
        "0.0": "best validation; gap +0.100 against 0.6's, beyond noise (p < 0.001, Holm)",
        "0.4": "**recommended**; validation 0.020 below best, within noise (p = 0.2, Holm); gap +0.010 against "
        "0.6's, within noise (p = 0.29, Holm)",
        "0.6": "validation 0.030 below best, within noise (p = 0.16, Holm)",  # Holm: twice its p of 0.08
    }
    assert "gap within noise of 0.6, so the higher validation accuracy decides" in why
    one_seed = [row("0.0", [0.85], [0.15]), row("0.4", [0.83], [0.06])]
    assert ladder.recommend(one_seed, tolerance=0.01)[0] == "0.0"  # no spread: 0.02 behind is too far


def test_failed_steps_are_skipped_and_reported() -> None:
    rows = [row("0.0", [0.8], [0.1]), row("0.2", [], [], failed=True)]
    label, notes, _ = ladder.recommend(rows)
    assert label == "0.0" and notes["0.2"] == "failed"
    assert "| 0.2 | failed | | | | sweep-0.2 |" in table(rows, "model.dropout", notes)
    assert ladder.recommend([row("0.2", [], [], failed=True)])[0] is None


def test_data_curve_reading_gap_shrinking_means_get_data_flat_means_regularize() -> None:
    shrinking = [row("250", [0.70, 0.72], [0.25, 0.27]), row("1000", [0.84, 0.85], [0.12, 0.13])]
    assert data_curve.reading(shrinking) == (
        "the gap shrinks with data (0.260 -> 0.125 from 250 to 1000 images, beyond noise (p = 0.014, Holm), by more "
        "than 0.01) and validation accuracy rises (0.710 -> 0.845, beyond noise (p = 0.014, Holm)): get more data"
    )
    flat = [row("250", [0.80, 0.84], [0.13, 0.11]), row("1000", [0.82, 0.85], [0.12, 0.10])]
    assert data_curve.reading(flat).endswith("regularize or change the architecture")
    # a 0.03 shrink inside a 0.06 seed spread is noise, not a trend
    noisy = [row("250", [0.80, 0.80], [0.16, 0.10]), row("1000", [0.80, 0.80], [0.11, 0.09])]
    assert data_curve.reading(noisy).endswith("regularize or change the architecture")
    assert data_curve.reading([shrinking[0]]) == "fewer than two sizes succeeded: no reading"
    # one seed per size: no noise estimate, the tolerance alone decides
    one_seed = [row("250", [0.80], [0.20]), row("1000", [0.85], [0.195])]
    assert "(0.200 -> 0.195 from 250 to 1000 images, no noise estimate (one seed): it does not shrink" in (
        data_curve.reading(one_seed)
    )


def arguments(**given: object) -> argparse.Namespace:
    defaults = {"name": "dropout", "param": None, "values": None, "augmentation": False, "runs": None}
    defaults.update(seeds=None, jobs=1, tolerance=ladder.TOLERANCE, collect=False)
    defaults.update(given)
    return argparse.Namespace(**defaults)


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(REPO)
    return REPO


def test_default_ladder_is_dropout_over_the_runs_it_retrains(in_repo: Path) -> None:
    sweep, tolerance = ladder.plan(arguments(seeds=[0, 1, 2]))
    assert sweep.key == "model.dropout" and [step.label for step in sweep.steps] == ["0.0", "0.2", "0.4", "0.6"]
    assert [run.name for run in sweep.runs] == [
        "fashion_mnist-cnn_simplified",
        "fashion_mnist-cnn_simplified_augmented",
    ]
    points = sweep.points()
    assert len(points) == 12 and points[1].name == "dropout-0.0-s1"
    assert sweep.sets(points[1]) == ["model.dropout=0.0", "train.seed=1"]
    assert tolerance == ladder.TOLERANCE


def test_augmentation_ladder_switches_the_run_models_block_off_and_keeps_it_on(in_repo: Path) -> None:
    sweep, _ = ladder.plan(arguments(name="aug", augmentation=True, runs=["fashion_mnist-cnn_simplified_augmented"]))
    assert sweep.key == "models.cnn_simplified_augmented.augmentation"
    off, on = sweep.points()
    assert sweep.sets(off) == ["models.cnn_simplified_augmented.augmentation=null"] and sweep.sets(on) == []


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"param": "model.dropuot", "values": ["0.1"]}, "params.yaml has no key 'model.dropuot': model holds dropout"),
        ({"values": ["0.1", "lots"]}, "--values: 'lots' is not a number; model.dropout takes numbers"),
        ({"values": ["0.1", "1.5"]}, "model.dropout = 1.5: Input should be less than 1"),
        ({"param": "train.subset_size", "values": ["100", "250.5"]}, "'250.5' is not a whole number"),
        ({"param": "models.mlp.fit.optimizer", "values": ["1"]}, "is not a number: the ladder sweeps numeric keys"),
        ({"runs": ["fashion_mnist-nope"]}, "no run 'fashion_mnist-nope' under `runs`; defined runs:"),
        ({"runs": ["fashion_mnist-mlp"]}, "--runs fashion_mnist-mlp: not affected by model.dropout"),
        ({"name": "a/b"}, "sweep name 'a/b': use letters, digits"),
        ({"seeds": [-1]}, "--seeds [-1]: seeds are 0..2**32-1"),
        ({"augmentation": True, "runs": ["fashion_mnist-cnn_simplified"]}, "augmentation is not set"),
        ({"values": ["0.3"]}, "--values 0.3: a ladder compares steps, give at least two values"),
        ({"param": "train.seed", "values": ["0", "1"]}, "seeds are repeats of every step, not steps: use --seeds"),
    ],
)
def test_bad_input_is_refused_naming_the_key_and_the_fix(in_repo: Path, given: dict, message: str) -> None:
    with pytest.raises(PipelineError, match=None) as error:
        ladder.plan(arguments(**given))
    assert message in str(error.value)


def prepared_project(directory: Path, class_counts: list[int], subset_size: int | None = 1000) -> Path:
    """A scratch project: the repository's params.yaml (train.subset_size = `subset_size`) and the summary.json the
    prepare stage would write for Fashion-MNIST with `class_counts` training images per class (no images)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["train"]["subset_size"] = subset_size
    directory.mkdir(parents=True, exist_ok=True)
    write_params(directory, params)
    summary = {
        "dataset": "fashion_mnist",
        "image_shape": [32, 32, 1],
        "num_classes": len(class_counts),
        "splits": {
            "train": {"count": sum(class_counts), "class_counts": class_counts},
            "valid": {"count": 1000, "class_counts": [100] * len(class_counts)},
            "test": {"count": 10000, "class_counts": [1000] * len(class_counts)},
        },
    }
    (directory / "data/prepared/fashion_mnist").mkdir(parents=True)
    (directory / "data/prepared/fashion_mnist/summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return directory


@pytest.fixture
def prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's trial: 59,000 prepared training images of 10 classes; the profile trains on 1,000."""
    monkeypatch.chdir(prepared_project(tmp_path, [5900] * 10))
    return tmp_path


def curve_arguments(**given: object) -> argparse.Namespace:
    defaults = {"name": "size", "fractions": None, "sizes": None, "runs": None, "seeds": [0, 1, 2], "tolerance": 0.01}
    return argparse.Namespace(**{**defaults, **given})


def test_data_curve_defaults_to_quarter_half_all_of_the_profile_for_overfit_and_simplified(prepared: Path) -> None:
    sweep, _ = data_curve.plan(curve_arguments())
    assert isinstance(sweep, Sweep) and sweep.key == "train.subset_size"
    assert [step.value for step in sweep.steps] == [250, 500, 1000]
    assert [run.name for run in sweep.runs] == ["fashion_mnist-cnn_overfit", "fashion_mnist-cnn_simplified"]


def test_data_curve_sizes_from_one_image_per_class_to_every_prepared_image_are_accepted(prepared: Path) -> None:
    sweep, _ = data_curve.plan(curve_arguments(sizes=[59000, 10]))
    assert [step.value for step in sweep.steps] == [10, 59000]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        # the user's trial: 5 images of 10 classes would drop 5 classes, 100000 would silently mean all 59000
        (
            {"sizes": [5, 100000]},
            "--sizes 5: fewer than the 10 classes of fashion_mnist's training images (a stratified subset needs at "
            "least one image per class); allowed: 10 to 59000 images",
        ),
        (
            {"sizes": [100, 100000]},
            "--sizes 100000: more than the 59000 prepared training images of fashion_mnist (a larger size would "
            "silently train on all of them); allowed: 10 to 59000 images",
        ),
        ({"sizes": [200, 400, 200]}, "--sizes lists 200 twice: give each size once (10 to 59000 images)"),
        ({"sizes": [0, 200]}, "--sizes 0: fewer than the 10 classes"),
        (
            {"fractions": [0.005, 0.5]},
            "--fractions 0.005 (= 5 of 1000 training images): fewer than the 10 classes of fashion_mnist's",
        ),
        (
            {"fractions": [0.5, 0.5004]},
            "--fractions 0.5 (= 500 of 1000 training images) and 0.5004 (= 500 of 1000 training images) are one size",
        ),
        ({"fractions": [0.5, 2.0]}, "--fractions [2.0]: fractions of the profile's training images, in (0, 1]"),
        ({"fractions": [0.5, 1.0], "sizes": [100, 200]}, "give --sizes or --fractions, not both"),
    ],
)
def test_data_curve_sizes_are_checked_against_the_prepared_training_images(
    prepared: Path, given: dict, message: str
) -> None:
    with pytest.raises(PipelineError) as error:
        data_curve.plan(curve_arguments(**given))
    assert message in str(error.value)


def test_data_curve_fractions_are_of_every_prepared_image_when_the_profile_takes_all(tmp_path: Path) -> None:
    # null, or a subset_size above the 590 prepared images: the runs train on all 590, so the fractions are of 590
    for subset_size in (None, 100000):
        directory = prepared_project(tmp_path / str(subset_size), [59] * 10, subset_size)
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(directory)
            sweep, _ = data_curve.plan(curve_arguments(fractions=[0.5, 1.0]))
        assert [step.value for step in sweep.steps] == [295, 590]


def test_the_minimum_is_one_image_per_class_that_has_training_images(tmp_path: Path) -> None:
    # a class without training images: stratified_subset takes one of each of the 9 others first
    from overfit_first.data.splits import stratified_subset

    counts = [100] * 9 + [0]
    labels = np.repeat(np.arange(10), counts)
    assert len(np.unique(labels[stratified_subset(labels, 9)])) == 9
    assert len(np.unique(labels[stratified_subset(labels, 8)])) == 8  # below it, classes are dropped
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(prepared_project(tmp_path, counts))
        assert [step.value for step in data_curve.plan(curve_arguments(sizes=[9, 900]))[0].steps] == [9, 900]
        with pytest.raises(PipelineError, match="--sizes 8: fewer than the 9 classes"):
            data_curve.plan(curve_arguments(sizes=[8, 900]))


def test_sizes_need_the_prepared_data_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_params(tmp_path, yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8")))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=r"run `dvc repro prepare@fashion_mnist` first"):
        data_curve.plan(curve_arguments(sizes=[100, 200]))


def test_a_ladder_over_train_subset_size_is_checked_as_the_data_curve_is(prepared: Path) -> None:
    with pytest.raises(PipelineError, match="--values 100000: more than the 59000 prepared training images"):
        ladder.plan(arguments(name="n", param="train.subset_size", values=["100", "100000"]))
    sweep, _ = ladder.plan(arguments(name="n", param="train.subset_size", values=["100", "59000"]))
    assert [step.value for step in sweep.steps] == [100, 59000]


@pytest.mark.slow  # a process that imports MLflow (overfit_first.tracking)
def test_the_data_curve_command_exits_1_before_queueing_anything(prepared: Path) -> None:
    result = run_stage("overfit_first", "data_curve", "x", "--sizes", "5", "100000", cwd=prepared, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "error: --sizes 5: fewer than the 10 classes" in result.stderr
    assert "queue" not in result.stdout  # no `queue <experiment>` line: nothing was queued


def test_a_key_affects_the_runs_whose_stages_depend_on_it(in_repo: Path) -> None:
    from overfit_first.config import load_params

    params = load_params()
    overfit, simplified = params.run("fashion_mnist-cnn_overfit"), params.run("fashion_mnist-cnn_simplified")
    assert affects("train.seed", overfit, params) and affects("train.seed", simplified, params)
    assert not affects("model.dropout", overfit, params) and affects("model.dropout", simplified, params)
    assert affects("models.cnn_overfit.fit.learning_rate", overfit, params)
    assert not affects("models.cnn_overfit.fit.learning_rate", simplified, params)
    assert not affects("sanity.fit_batches", overfit, params)  # an observer section: retrains nothing


# Stands in for `dvc` (a stub, so no queue starts): `dvc queue start` returns at once and `dvc queue status` shows
# one experiment of three done; the second status says "ready" (the states are seen), then it waits to be stopped.
WAITING = textwrap.dedent("""
    from overfit_first.procedure import dvc_client, sweep, sweep_run
    from overfit_first.errors import run_stage

    polls = []

    def status():
        polls.append(1)
        if len(polls) == 2:
            print("ready", flush=True)
        return {"size-250": "Success", "size-500": "Running", "size-1000": "Queued"}

    dvc_client.run = lambda *args, **options: print("dvc", *args, flush=True) or dvc_client.Output("", "", 0)
    sweep_run.start_queue = lambda jobs, env: print("dvc queue start -j", jobs, flush=True)
    sweep_run.queue_status = status
    job = sweep.Sweep("size", "train.subset_size", [], None, [], "data curve")
    run_stage(lambda: sweep_run.start_and_wait(job, ["size-250", "size-500", "size-1000"], 2, {}, poll_s=0.1))
""")


@pytest.mark.slow  # a process that imports MLflow (overfit_first.procedure.sweep_run imports overfit_first.tracking)
def test_ctrl_c_while_waiting_says_the_queue_keeps_running_and_how_to_stop_it_or_collect(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", WAITING, "size", "--sizes", "250", "500", "1000", "--jobs", "2"],
        cwd=tmp_path,
        env=stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_stop_signals,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(2)]
    assert lines == ["dvc queue start -j 2\n", "dvc queue start -j 2\n"], process.communicate()
    while (line := process.stdout.readline()) != "ready\n":
        assert line, process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert (
        "the data curve size stopped waiting, but its queued experiments keep running in DVC's queue (not finished "
        "when last seen: size-500, size-1000; `dvc queue status` shows them):"
    ) in stderr
    assert "to stop them: `dvc queue stop --kill`" in stderr and "one at a time: `dvc queue kill size-500`" in stderr
    collect = "python -m overfit_first data_curve size --sizes 250 500 1000 --jobs 2 --collect"
    assert f"to write the report once they are done: `{collect}`" in stderr
    # then the way out every command takes, unchanged
    assert stderr.rstrip().endswith("interrupted by SIGINT: no output was written"), stderr


def test_ctrl_c_while_queueing_names_the_experiments_left_queued(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def dvc(*args: str, **options: object) -> dvc_client.Output:
        if "size-500" in args:
            raise KeyboardInterrupt
        return dvc_client.Output("", "", 0)

    monkeypatch.setattr(dvc_client, "run", dvc)
    steps = [Step(str(size), size, float(size)) for size in (250, 500, 1000)]
    job = Sweep("size", "train.subset_size", steps, None, [], "data curve")
    with pytest.raises(KeyboardInterrupt):
        sweep_run.queue(job, job.points())
    assert (
        "size-250 stay queued in DVC's queue, not started; remove them with `dvc queue remove size-250`"
    ) in capsys.readouterr().err


# Stands in for `dvc` on PATH: like `dvc queue start`, it leaves a worker running in the background that inherits
# its stdout and stderr, and exits; the worker lives until the test creates the file $RELEASE.
DVC_LEAVING_A_WORKER = """#!/bin/sh
( while [ ! -e "$RELEASE" ]; do sleep 0.1; done ) &
echo "started 2 workers"
"""


def test_queue_start_returns_while_its_workers_still_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    stand_in = tmp_path / "bin" / "dvc"
    stand_in.write_text(DVC_LEAVING_A_WORKER, encoding="utf-8")
    stand_in.chmod(0o755)
    release = tmp_path / "release"
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "RELEASE": str(release)}
    returned = threading.Event()
    caller = threading.Thread(target=lambda: (sweep_run.start_queue(2, env), returned.set()), daemon=True)
    caller.start()
    try:
        # Reading the command's output through a pipe would wait for the worker, which waits for `release`.
        assert returned.wait(timeout=60), "start_queue waited for the queue's workers instead of returning"
    finally:
        release.touch()
    caller.join(timeout=60)
    stand_in.write_text("#!/bin/sh\necho 'ERROR: no queue here' >&2\nexit 255\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=r"`dvc queue start -j 2` failed \(exit 255\):\nERROR: no queue here"):
        sweep_run.start_queue(2, env)


# --rejudge (overfit_first.procedure.rejudge): a written report's recorded per-seed values judged again, nothing
# measured.
RUN = "fashion_mnist-cnn_simplified"
MEASURED = f"python -m overfit_first ladder dropout --values 0 0.2 0.4 --seeds 0 1 2 --runs {RUN}"
DROPOUT = [
    row("0.0", [0.878, 0.878, 0.875], [0.122, 0.122, 0.125]),
    row("0.2", [0.882, 0.868, 0.881], [0.116, 0.108, 0.115]),
    row("0.4", [0.876, 0.856, 0.875], [0.098, 0.112, 0.102]),
]
SIZES = [row("250", [0.775, 0.783, 0.776], [0.161, 0.095, 0.125]), row("1000", [0.876, 0.856, 0.875], [0.1, 0.11, 0.1])]


def ladder_json() -> dict:
    """ladder.json as the old rule wrote it (its recommendation is stale)."""
    return {
        "sweep": "dropout",
        "key": "model.dropout",
        "steps": ["0.0", "0.2", "0.4"],
        "seeds": [0, 1, 2],
        "tolerance": 0.01,
        "command": MEASURED,
        "recommended": {RUN: {"step": "0.0", "why": "the old rule's"}},
        "runs": json.loads(json.dumps(sweep_report.results_json({RUN: DROPOUT}))),  # a copy: not DROPOUT's lists
        "failed_experiments": {},
    }


def curve_json() -> dict:
    """data_curve.json as written before it recorded its command."""
    sizes = [
        replace(result, step=Step(result.step.label, int(result.step.value), result.step.value)) for result in SIZES
    ]
    return {
        "sweep": "size",
        "key": "train.subset_size",
        "sizes": [250, 1000],
        "seeds": [0, 1, 2],
        "tolerance": 0.01,
        "readings": {RUN: "the old rule's"},
        "runs": sweep_report.results_json({RUN: sizes}),
        "failed_experiments": {},
    }


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2), encoding="utf-8")
    return path


def run_main(monkeypatch: pytest.MonkeyPatch, module: object, *args: str) -> None:
    """`python -m <module> <args>` in this process, with `dvc` and MLflow runs made to fail the test."""

    def refused(*_: object, **__: object) -> None:
        raise AssertionError("--rejudge ran dvc or started an MLflow run")

    monkeypatch.setattr(dvc_client, "run", refused)
    monkeypatch.setattr(sweep_run.tracking, "SweepGuard", refused)
    monkeypatch.setattr(sys, "argv", [module.__name__, *args])  # type: ignore[attr-defined]
    module.main()  # type: ignore[attr-defined]


def test_results_from_json_is_the_inverse_of_results_json() -> None:
    results = {RUN: [*DROPOUT, row("0.6", [], [], failed=True)], "other": DROPOUT[:2]}
    assert sweep_report.results_from_json(json.loads(json.dumps(sweep_report.results_json(results)))) == results
    sizes = json.loads(json.dumps(curve_json()["runs"]))
    assert [result.step for result in sweep_report.results_from_json(sizes)[RUN]] == [
        Step("250", 250, 250.0),
        Step("1000", 1000, 1000.0),
    ]
    # categorical steps (augmentation off/on): x is None; as_is, how a step is queued, is not recorded
    steps = [Step("off", None, None), Step("on", {"rotation": 0.1}, None, as_is=True)]
    switched = {RUN: [replace(result, step=step) for result, step in zip(DROPOUT, steps)]}
    back = sweep_report.results_from_json(json.loads(json.dumps(sweep_report.results_json(switched))))[RUN]
    assert [(result.step.label, result.step.value, result.step.x) for result in back] == [
        ("off", None, None),
        ("on", {"rotation": 0.1}, None),
    ]
    assert [result.stats for result in back] == [result.stats for result in switched[RUN]]


def test_ladder_rejudge_rewrites_the_report_under_the_rule_and_keeps_the_measuring_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_json(tmp_path / "reports/ladders/dropout/ladder.json", ladder_json())
    run_main(monkeypatch, ladder, "dropout", "--rejudge")
    label, _, why = ladder.recommend(DROPOUT, 0.01)
    readme = (path.parent / "README.md").read_text(encoding="utf-8")
    assert f"**Recommended: model.dropout = {label}**: {why}." in readme
    rejudged = "python -m overfit_first ladder dropout --rejudge"
    assert (
        f"The values were measured by `{MEASURED}` and judged again, without retraining, by `{rejudged}` under the "
        "current rule (overfit_first/procedure/noise.py)."
    ) in readme
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["command"] == MEASURED and data["rejudged_by"] == rejudged
    assert data["recommended"] == {RUN: {"step": label, "why": why}} and data["runs"] == ladder_json()["runs"]
    assert (path.parent / "ladder.png").read_bytes().startswith(b"\x89PNG")
    # again, with another tolerance: the command that measured the values stays
    run_main(monkeypatch, ladder, "dropout", "--rejudge", "--tolerance", "0.05")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["command"] == MEASURED and data["rejudged_by"] == f"{rejudged} --tolerance 0.05"
    assert data["tolerance"] == 0.05 and data["recommended"][RUN]["step"] == ladder.recommend(DROPOUT, 0.05)[0]


def test_data_curve_rejudge_takes_the_command_an_older_readme_names_else_says_it_was_not_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_json(tmp_path / "reports/data_curves/size/data_curve.json", curve_json())
    run_main(monkeypatch, data_curve, "size", "--rejudge")
    rows = sweep_report.results_from_json(curve_json()["runs"])[RUN]
    readme = (path.parent / "README.md").read_text(encoding="utf-8")
    assert f"**Reading:** {data_curve.reading(rows, 0.01)}." in readme
    assert (
        "The values were measured by the experiments of sweep `size` (command not recorded) and judged again, "
        "without retraining, by `python -m overfit_first data_curve size --rejudge` under the current rule"
    ) in readme
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["command"] is None and data["rejudged_by"] == "python -m overfit_first data_curve size --rejudge"
    assert data["readings"] == {RUN: data_curve.reading(rows, 0.01)} and data["sizes"] == [250, 1000]
    assert (path.parent / "data_curve.png").read_bytes().startswith(b"\x89PNG")
    # an older README names the command on its third line, as the report of the command once did: it is kept (that
    # README names the command by its module's path before issue 23, overfit_first.data_curve)
    measured = "python -m overfit_first.data_curve size --fractions 0.25 1 --seeds 0 1 2"
    (path.parent / "README.md").write_text(f"# Data-size curve `size`\n\n`{measured}`\n\n...\n", encoding="utf-8")
    write_json(path, curve_json())
    run_main(monkeypatch, data_curve, "size", "--rejudge")
    assert json.loads(path.read_text(encoding="utf-8"))["command"] == measured
    assert f"The values were measured by `{measured}` and judged again" in (path.parent / "README.md").read_text()


def spoiled(change: str) -> object:
    """ladder.json spoiled one way."""
    data = ladder_json()
    if change == "not JSON":
        return '{"sweep": "dropout",'
    if change == "no tolerance":
        del data["tolerance"]
    elif change == "a text value":
        data["runs"][RUN][1]["metrics"]["validation"]["values"][2] = "0.881"
    elif change == "no verdicts":
        del data["runs"][RUN][0]["verdicts"]
    elif change == "another sweep":
        data["sweep"] = "other"
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (None, "reports/ladders/dropout/ladder.json is missing: --rejudge judges the values of a written report"),
        ("not JSON", "reports/ladders/dropout/ladder.json is not JSON (Expecting"),
        ("no tolerance", "reports/ladders/dropout/ladder.json has no key 'tolerance'"),
        (
            "a text value",
            f"reports/ladders/dropout/ladder.json: runs.{RUN}[1].metrics.validation.values[2] is '0.881', not a number",
        ),
        ("no verdicts", f"reports/ladders/dropout/ladder.json: runs.{RUN}[0] has no key 'verdicts'"),
        ("another sweep", "reports/ladders/dropout/ladder.json: sweep is 'other', not 'dropout'"),
    ],
)
def test_rejudge_of_a_missing_or_odd_json_names_the_file_and_the_key_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str | None, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "reports/ladders/dropout/ladder.json"
    if change is not None:
        write_json(path, spoiled(change))
    before = {file: file.read_bytes() for file in tmp_path.rglob("*") if file.is_file()}
    with pytest.raises(PipelineError) as error:
        run_main(monkeypatch, ladder, "dropout", "--rejudge")
    assert message in str(error.value)
    if change is None:
        assert "run the ladder first" in str(error.value) and "--collect" in str(error.value)
    assert {file: file.read_bytes() for file in tmp_path.rglob("*") if file.is_file()} == before


@pytest.mark.parametrize(
    ("module", "given", "flag"),
    [
        (ladder, ["--seeds", "0", "1"], "--seeds"),
        (ladder, ["--jobs", "2"], "--jobs"),
        (ladder, ["--collect"], "--collect"),
        (ladder, ["--augmentation"], "--augmentation"),
        (data_curve, ["--sizes", "250", "1000"], "--sizes"),
        (data_curve, ["--fractions", "0.5", "1"], "--fractions"),
    ],
)
def test_rejudge_refuses_the_options_that_measure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: object, given: list[str], flag: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=f"--rejudge cannot be combined with {flag}: it measures nothing"):
        run_main(monkeypatch, module, "x", "--rejudge", *given)
