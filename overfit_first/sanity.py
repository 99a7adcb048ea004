"""Sanity checks before a long run, in seconds on a CPU: catch broken labels, broken scaling, a wrong learning
rate or an architecture that cannot fit before hours of training are spent on them.

    python -m overfit_first sanity                                  # every run of params.yaml `runs`
    python -m overfit_first sanity fashion_mnist-cnn_overfit        # one or more runs

Three checks per run (settings: params.yaml `sanity`, config.SanityConfig):

1. initial loss: the data loss (cross-entropy, without the regularization penalties) of the freshly built model
   on the fit subset is within `init_loss_tolerance` x ln(C) of ln(C), C the number of classes: an untrained
   softmax should be unsure. Far above: the inputs are not scaled to 0..1 or the initialization is too large.
2. fit a small subset: the model, with its own optimizer and learning rate, fits `fit_batches` of its batches
   (a stratified subset of the training images, data.splits.stratified_subset; no augmentation) to
   `fit_accuracy_min` (inference mode) within `fit_max_steps` optimizer steps. A NaN or rising loss: learning
   rate too high; a loss that barely moves or a plateau: learning rate too low, or an architecture that cannot fit.
3. labels vs an input-independent baseline: the fitted model must beat, on `heldout_images` validation images,
   the majority-class rate of the fit subset (what a model ignoring its inputs gets at best) by `baseline_margin`
   or 3 standard errors, whichever is larger. Constant labels, or labels shuffled relative to the images, fail it
   (a model can memorize shuffled labels, so this is measured on held-out images).

A failed check prints its likely cause and the fix; the command exits 1. With `sanity.before_training: true`,
train@<run> runs this command for its run first, as a child process, and stops when it fails.

An observer (tests/test_dvc_deps.py): it runs in its own process, seeds its own random state and writes nothing,
so it cannot change a training's outputs (tests/test_sanity.py trains with it on and off: identical weights).
No stage lists it, nor the `sanity` params section, as a DVC dependency.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from overfit_first.config import FitConfig, Run, SanityConfig, load_params
from overfit_first.data.splits import SCALE, Split, dataset_dir, load_split, load_summary, stratified_subset
from overfit_first.errors import PipelineError, run_stage

# Likely causes, named in a failed check's message.
CAUSE_SCALING = "broken input scaling (pixels not in 0..1) or an initialization that is too large"
CAUSE_OUTPUT = "an output layer that is not a softmax over $num_classes units"
CAUSE_LR_HIGH = "learning rate too high"
CAUSE_LR_LOW_OR_CAPACITY = (
    "learning rate too low, or an architecture that cannot fit (too little capacity or too much regularization)"
)
CAUSE_LABELS = "broken labels (constant, or shuffled relative to the images)"


@dataclass(frozen=True)
class Check:
    """One check's outcome: `measured` and `expected` in words; `cause` and `fix` only when it failed."""

    name: str
    passed: bool
    measured: str
    expected: str
    cause: str | None = None
    fix: str | None = None

    def line(self) -> str:
        head = f"{'pass' if self.passed else 'FAIL'}  {self.name}: {self.measured} (expected {self.expected})"
        return head if self.passed else f"{head}\n      likely cause: {self.cause}\n      fix: {self.fix}"


def outputs(model: object, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """`model`'s inference-mode outputs (dropout off, batch norm on its moving statistics) on x (float32,
    N x H x W x C), as float64 N x outputs. A direct call per chunk: for a few hundred images, much faster than
    Keras' predict loop."""
    import keras

    chunks = [keras.ops.convert_to_numpy(model(x[i : i + batch], training=False)) for i in range(0, len(x), batch)]  # type: ignore[operator]
    return np.concatenate(chunks).astype(np.float64)


def data_loss(model: object, x: np.ndarray, y: np.ndarray) -> float:
    """Mean sparse categorical cross-entropy of `model`'s inference-mode outputs on (x, y int N), without the
    regularization penalties; NaN when the outputs are not finite."""
    picked = outputs(model, x)[np.arange(len(y)), y]
    if not np.all(np.isfinite(picked)):
        return math.nan
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None)))) + 0.0  # + 0.0: no "-0.000" when fitted


def accuracy(model: object, x: np.ndarray, y: np.ndarray) -> float:
    """Inference-mode accuracy of `model` on (x float32 N x H x W x C, y int N)."""
    return float(np.mean(np.argmax(outputs(model, x), axis=-1) == y))


def check_model(
    build: Callable[[], object],
    fit: FitConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_held: np.ndarray,
    y_held: np.ndarray,
    num_classes: int,
    settings: SanityConfig,
    *,
    scale: float = SCALE,
    seed: int = 0,
    where: str = "models.<model>.fit.learning_rate",
) -> list[Check]:
    """Run the three checks on one model; returns them in order (initial loss, fit, baseline).

    `build()` returns a new, uncompiled Keras model. `x_train`, `x_held`: images (N x H x W x C, uint8 as prepared)
    that become the model's float32 input once multiplied by `scale` (only the images used are converted);
    `y_train`, `y_held`: int class ids (N). The fit subset is
    `settings.fit_batches` x `fit.batch_size` stratified training images. `seed` seeds the batch order; the caller
    seeds the initializers. `where` names the learning-rate key in the fixes.
    """
    from overfit_first.models import build_optimizer

    keep = stratified_subset(y_train, settings.fit_batches * fit.batch_size)
    x_fit, y_fit = x_train[keep].astype(np.float32) * np.float32(scale), y_train[keep]
    held = stratified_subset(y_held, settings.heldout_images)
    x_val, y_val = x_held[held].astype(np.float32) * np.float32(scale), y_held[held]
    model = build()
    model.compile(  # type: ignore[attr-defined]
        optimizer=build_optimizer(fit),
        loss="sparse_categorical_crossentropy",
    )
    checks = [initial_loss_check(model, x_fit, y_fit, num_classes, settings.init_loss_tolerance)]
    fitted, history, steps = fit_subset(model, x_fit, y_fit, fit.batch_size, settings, seed)
    checks.append(fit_check(fitted, history, steps, len(y_fit), settings, fit.learning_rate, where))
    checks.append(baseline_check(model, x_val, y_val, y_fit, settings.baseline_margin))
    return checks


def initial_loss_check(model: object, x: np.ndarray, y: np.ndarray, num_classes: int, tolerance: float) -> Check:
    """Check 1: the untrained model's data loss on (x, y) is within tolerance x ln(num_classes) of ln(num_classes)."""
    expected = math.log(num_classes)
    width = outputs(model, x[:1]).shape[-1]
    wanted = f"ln({num_classes}) = {expected:.3f} +- {tolerance * expected:.3f}"
    if width != num_classes:
        return Check(
            "initial loss",
            False,
            f"the model outputs {width} values per image for {num_classes} classes",
            wanted,
            CAUSE_OUTPUT,
            "end the model with Dense: {units: $num_classes, activation: softmax}",
        )
    loss = data_loss(model, x, y)
    measured = f"data loss {loss:.3f} at initialization on {len(y)} images"
    if abs(loss - expected) <= tolerance * expected:
        return Check("initial loss", True, measured, wanted)
    if not math.isfinite(loss) or loss > expected:
        return Check(
            "initial loss",
            False,
            measured,
            wanted,
            CAUSE_SCALING,
            "feed pixels divided by 255 (overfit_first.inputs does); check the first layers' initializers",
        )
    return Check(
        "initial loss",
        False,
        measured,
        wanted,
        f"{CAUSE_OUTPUT}, or labels that leak into the images",
        "check the output layer and that the labels are not derived from the pixels",
    )


def fit_subset(
    model: object, x: np.ndarray, y: np.ndarray, batch_size: int, settings: SanityConfig, seed: int
) -> tuple[float, list[float], int]:
    """Train `model` (compiled) on (x, y) in shuffled batches until its inference-mode accuracy on them reaches
    settings.fit_accuracy_min or settings.fit_max_steps steps are spent; returns (that accuracy, the data loss
    measured after each pass over the subset, first entry before training, and the steps taken)."""
    rng = np.random.default_rng(seed)
    history = [data_loss(model, x, y)]
    steps = 0
    fitted = accuracy(model, x, y)
    while steps < settings.fit_max_steps and fitted < settings.fit_accuracy_min:
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            rows = order[start : start + batch_size]
            model.train_on_batch(x[rows], y[rows])  # type: ignore[attr-defined]
            steps += 1
            if steps >= settings.fit_max_steps:
                break
        history.append(data_loss(model, x, y))
        if not math.isfinite(history[-1]):
            return math.nan, history, steps
        fitted = accuracy(model, x, y)
    return fitted, history, steps


def fit_check(
    fitted: float,
    history: list[float],
    steps: int,
    images: int,
    settings: SanityConfig,
    learning_rate: float,
    where: str,
) -> Check:
    """Check 2, from fit_subset's results: fitted accuracy, the loss after each pass, the steps taken."""
    wanted = f"accuracy >= {settings.fit_accuracy_min:g} within {settings.fit_max_steps} steps"
    first, last = history[0], history[-1]
    measured = (
        f"accuracy {fitted:.3f} on {images} training images after {steps} steps (data loss {first:.3f} -> {last:.3f})"
    )
    if math.isfinite(fitted) and fitted >= settings.fit_accuracy_min:
        return Check("fit a small subset", True, measured, wanted)
    if not math.isfinite(last) or last > first:
        return Check(
            "fit a small subset",
            False,
            measured,
            wanted,
            CAUSE_LR_HIGH,
            f"lower {where} (now {learning_rate:g}) by 10x",
        )
    return Check(
        "fit a small subset",
        False,
        measured,
        wanted,
        CAUSE_LR_LOW_OR_CAPACITY,
        f"raise {where} (now {learning_rate:g}), or add capacity / remove regularization: a model that cannot fit "
        "a few batches will not fit the training set",
    )


def baseline_check(model: object, x: np.ndarray, y: np.ndarray, y_fit: np.ndarray, margin: float) -> Check:
    """Check 3: the fitted model's held-out accuracy on (x, y) beats the rate of always predicting y_fit's most
    frequent class by max(margin, 3 standard errors of that rate on len(y) images)."""
    classes, counts = np.unique(y_fit, return_counts=True)
    majority = int(classes[np.argmax(counts)])
    if len(classes) < 2:
        return Check(
            "labels vs input-independent baseline",
            False,
            f"every training label is class {majority}",
            "at least two classes",
            CAUSE_LABELS,
            "the labels are constant: check the label files and rebuild with `dvc repro --force prepare@<dataset>`",
        )
    baseline = float(np.mean(y == majority))
    needed = max(margin, 3 * math.sqrt(max(baseline * (1 - baseline), 1e-12) / max(len(y), 1)))
    held = accuracy(model, x, y)
    measured = f"held-out accuracy {held:.3f} on {len(y)} validation images, majority-class rate {baseline:.3f}"
    wanted = f"above {baseline + needed:.3f}, the baseline + {needed:.3f}"
    if held > baseline + needed:
        return Check("labels vs input-independent baseline", True, measured, wanted)
    return Check(
        "labels vs input-independent baseline",
        False,
        measured,
        wanted,
        CAUSE_LABELS + "; or inputs that carry no signal",
        "check that the images and labels are read in the same order (prepare, the image folders) and rebuild "
        "with `dvc repro --force prepare@<dataset>`",
    )


def check_run(run: Run, settings: SanityConfig) -> list[Check]:
    """The checks for one run of params.yaml, on its prepared data (run.shared.subset_size training images)."""
    import keras

    from overfit_first import accelerate
    from overfit_first.models import build_model

    # The training's numerics (train.mixed_precision): an fp16 overflow or a bf16 plateau shows here too.
    accelerate.configure(run.shared)
    directory = dataset_dir(run.dataset)
    summary = load_summary(directory)
    train, valid = load_split(directory, "train"), load_split(directory, "valid")
    keep = stratified_subset(train.y, run.shared.subset_size)
    train = Split(x=train.x[keep], y=train.y[keep])
    keras.utils.set_random_seed(run.shared.seed)  # this process only: the training's process is another one
    shape, classes = train.x.shape[1:], int(summary["num_classes"])
    return check_model(
        lambda: build_model(run.spec, shape, classes, run.knobs, name=run.model),
        run.spec.fit,
        train.x,
        train.y,
        valid.x,
        valid.y,
        classes,
        settings,
        seed=run.shared.seed,
        where=f"models.{run.model}.fit.learning_rate",
    )


def before_training(run_name: str) -> None:
    """train@<run>'s optional first step: this command for `run_name` in a child process (so that the training's
    random state and Keras' layer names are untouched); PipelineError when a check failed."""
    result = subprocess.run([sys.executable, "-m", "overfit_first.sanity", run_name])
    if result.returncode != 0:
        raise PipelineError(
            f"sanity checks of {run_name} failed (above): training not started. Fix the cause, or set "
            "sanity.before_training: false in params.yaml to train anyway"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m overfit_first sanity", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="*", metavar="RUN", help="runs of params.yaml `runs` (default: all)")
    args = parser.parse_args()
    params = load_params()
    runs = [params.run(name) for name in (args.runs or list(params.runs))]
    import keras  # after the params checks: a bad params.yaml or run name fails before TensorFlow's import

    failed = []
    for run in runs:
        started = time.perf_counter()
        checks = check_run(run, params.sanity)
        policy = keras.mixed_precision.global_policy().name
        print(f"{run.name}: sanity checks, dtype policy {policy} ({time.perf_counter() - started:.1f} s)", flush=True)
        for check in checks:
            print(f"  {check.line()}", flush=True)
        failed += [f"{run.name}: {check.name} ({check.cause})" for check in checks if not check.passed]
    if failed:
        raise PipelineError("sanity checks failed, do not start the long run yet:\n  " + "\n  ".join(failed))
    print(f"sanity checks passed: {', '.join(run.name for run in runs)}", flush=True)


if __name__ == "__main__":
    run_stage(main)
