"""Training throughput: the train stage's input pipeline + fit against the article's plain `model.fit`.

    python -m bench.train_throughput --prepared DIR [--images 10000] [--epochs 2] [--rounds 2] [--out FILE]

Every side trains params.yaml's cnn_simplified (overfit_first.models.build_model; batch norm at Keras's
default momentum, as in the article) from the same seed on the same images (the first --images of the
prepared training split, stratified), batch 64, one warm-up epoch and then --epochs timed ones:

    project          what the train stage does: overfit_first's TensorFlow settings (oneDNN on), accelerate.configure,
                     seed_everything (deterministic ops), inputs.make_dataset (uint8 -> float32 inside tf.data), fit
    article          the article's code: x / 255.0 (float64 NumPy) into model.fit(x, y, batch_size=64), TensorFlow
                     as installed (no TF_ENABLE_ONEDNN_OPTS)
    article_onednn   the article's code with TF_ENABLE_ONEDNN_OPTS=1: which part of the gain is TensorFlow's
                     oneDNN kernels, and which the project's own pipeline

Each side runs in its own process (op determinism, thread pools and oneDNN are process-wide); the sides
alternate for --rounds rounds and each side's best round counts: the one least disturbed by other load.
Process CPU time per step is reported too: on a shared virtual machine it varies less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, SEED, stage_env, write_result

SIDES = ("article", "article_onednn", "project")
MODEL = "cnn_simplified"


def run_side(side: str, prepared: Path, images: int, epochs: int) -> dict[str, Any]:
    """Train one side in this process and return its timings."""
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS")  # as TensorFlow will read it, unless the project sets it
    if side == "project":
        import overfit_first  # noqa: F401 - first, as in the train stage: it sets TensorFlow's defaults
    import keras  # the article's sides import TensorFlow with the environment as given

    from overfit_first import accelerate, inputs, models, training
    from overfit_first.config import load_params
    from overfit_first.data.splits import load_split, load_summary, stratified_subset

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []  # all threads of the process
            self.steps: list[int] = []
            self.batches, self.started, self.cpu_started = 0, 0.0, 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.batches, self.started, self.cpu_started = 0, time.perf_counter(), time.process_time()

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.batches += 1

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds.append(time.perf_counter() - self.started)
            self.cpu_seconds.append(time.process_time() - self.cpu_started)
            self.steps.append(self.batches)

    params = load_params(REPO / "params.yaml")
    spec = params.models[MODEL]
    batch_size = spec.fit.batch_size
    knobs = params.run(next(name for name, run in params.runs.items() if run.model == MODEL)).knobs
    split = load_split(prepared, "train")
    keep = stratified_subset(split.y, images)
    x, y = split.x[keep], split.y[keep]
    num_classes = load_summary(prepared)["num_classes"]

    timer = EpochTimer()
    result: dict[str, Any] = {"side": side, "images": len(y), "batch_size": batch_size}
    if side == "project":
        accelerator = accelerate.configure(params.train)
        training.seed_everything(SEED, accelerator)
        with accelerator.scope():
            model = models.build_model(spec, x.shape[1:], num_classes, knobs, name=MODEL)
            model.compile(
                optimizer=models.build_optimizer(spec.fit),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
                jit_compile=accelerator.jit_compile,
            )
        dataset = inputs.make_dataset(x, y, batch_size, training=True, seed=SEED)
        model.fit(dataset, epochs=1 + epochs, shuffle=False, verbose=0, callbacks=[timer])
        started = time.perf_counter()
        for _ in dataset:  # the input pipeline alone: how far it is from being the bottleneck
            pass
        result["pipeline_images_per_s"] = len(y) / (time.perf_counter() - started)
        result["accelerator"] = accelerator.describe()
    else:
        keras.utils.set_random_seed(SEED)
        model = models.build_model(spec, x.shape[1:], num_classes, knobs, name=MODEL)
        model.compile(
            optimizer=models.build_optimizer(spec.fit), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model.fit(x / 255.0, y, batch_size=batch_size, epochs=1 + epochs, verbose=0, callbacks=[timer])
    seconds, steps = sum(timer.seconds[1:]), sum(timer.steps[1:])  # the warm-up epoch is left out
    result.update(
        warmup_seconds=timer.seconds[0],
        epoch_seconds=timer.seconds[1:],
        ms_per_step=1000 * seconds / steps,
        cpu_ms_per_step=1000 * sum(timer.cpu_seconds[1:]) / steps,
        images_per_s=len(y) * epochs / seconds,
        onednn=os.environ.get("TF_ENABLE_ONEDNN_OPTS") if side == "project" else onednn,
    )
    return result


def compare(prepared: Path, images: int, epochs: int, rounds: int) -> dict[str, Any]:
    """Every side, alternating, each in a fresh process; returns the best round of each and the ratios."""
    measured: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        for round_ in range(rounds):
            for side in SIDES:
                out = Path(scratch) / f"{side}-{round_}.json"
                command = [
                    sys.executable,
                    "-m",
                    "bench.train_throughput",
                    "--side",
                    side,
                    "--prepared",
                    str(prepared),
                    "--images",
                    str(images),
                    "--epochs",
                    str(epochs),
                    "--out",
                    str(out),
                ]
                completed = subprocess.run(command, cwd=REPO, env=side_env(side), capture_output=True, text=True)
                if completed.returncode != 0:
                    raise RuntimeError(f"{side} side failed:\n{completed.stdout}\n{completed.stderr}")
                measured[side].append(json.loads(out.read_text(encoding="utf-8")))
                row = measured[side][-1]
                print(
                    f"  round {round_ + 1} {side:14s} {row['ms_per_step']:6.1f} ms/step {row['images_per_s']:6.1f} "
                    f"images/s (CPU {row['cpu_ms_per_step']:.0f} ms/step)",
                    flush=True,
                )
    best = {side: min(rows, key=lambda row: row["ms_per_step"]) for side, rows in measured.items()}
    project = best["project"]
    ratio = project["images_per_s"] / best["article"]["images_per_s"]
    ratio_onednn = project["images_per_s"] / best["article_onednn"]["images_per_s"]
    # The median round too: one lucky round of a side should not carry a conclusion on a noisy machine.
    median_ms = {side: statistics.median(row["ms_per_step"] for row in rows) for side, rows in measured.items()}
    cpu_ratio = best["article"]["cpu_ms_per_step"] / project["cpu_ms_per_step"]
    for side, row in best.items():
        print(
            f"{side}: {row['images_per_s']:.1f} images/s, {row['ms_per_step']:.1f} ms/step, "
            f"CPU {row['cpu_ms_per_step']:.0f} ms/step"
        )
    print(f"project's input pipeline alone: {project['pipeline_images_per_s']:.0f} images/s; {project['accelerator']}")
    print("median ms/step: " + ", ".join(f"{side} {value:.1f}" for side, value in median_ms.items()))
    print(
        f"RATIO project/article = {ratio:.2f} (required >= 1.0, target >= 1.2; medians "
        f"{median_ms['article'] / median_ms['project']:.2f}); CPU time article/project = {cpu_ratio:.2f}; "
        f"project/(article with oneDNN) = {ratio_onednn:.2f} (medians "
        f"{median_ms['article_onednn'] / median_ms['project']:.2f})",
        flush=True,
    )
    return {
        "best": best,
        "rounds": measured,
        "median_ms_per_step": median_ms,
        "ratio": ratio,
        "cpu_ratio": cpu_ratio,
        "ratio_onednn": ratio_onednn,
        "images": images,
        "epochs": epochs,
    }


def side_env(side: str) -> dict[str, str]:
    """The article's sides get TensorFlow's own oneDNN default or an explicit 1; the project, its own setting."""
    env = stage_env()
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if side == "article_onednn":
        env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return env


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.train_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--prepared", type=Path, required=True, help="a prepared dataset (data/prepared/<name>)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs, after one warm-up epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side, in this process
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.side:
        write_result(args.out, run_side(args.side, args.prepared, args.images, args.epochs))
    else:
        write_result(args.out, compare(args.prepared, args.images, args.epochs, args.rounds))


if __name__ == "__main__":
    main()
