"""Training throughput: the train stage's input pipeline + fit against the article's plain `model.fit`.

    python -m bench.train_throughput --prepared DIR [--images 10000] [--epochs 2] [--rounds 2] [--out FILE]

Both sides train params.yaml's cnn_simplified (overfit_first.models.build_model; batch norm at Keras's
default momentum, as in the article) from the same seed on the same images (the first --images of the
prepared training split, stratified), batch 64, one warm-up epoch and then --epochs timed ones:

    project   what the train stage does: overfit_first.accelerate.configure, seed_everything (deterministic
              ops), overfit_first.inputs.make_dataset (uint8 -> float32 inside tf.data) and model.fit on it
    article   the article's code: x / 255.0 (float64 NumPy) into model.fit(x, y, batch_size=64)

Each side runs in its own process (op determinism and thread pools are process-wide); the sides alternate
for --rounds rounds and each side's best round counts: the one least disturbed by other load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, SEED, stage_env, write_result

SIDES = ("article", "project")
MODEL = "cnn_simplified"


def run_side(side: str, prepared: Path, images: int, epochs: int) -> dict[str, Any]:
    """Train one side in this process and return its timings."""
    import keras
    import yaml

    from overfit_first import accelerate, inputs, models, training
    from overfit_first.data.prepared import load_split, load_summary

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.steps: list[int] = []
            self.batches, self.started = 0, 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.batches, self.started = 0, time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.batches += 1

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds.append(time.perf_counter() - self.started)
            self.steps.append(self.batches)

    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    spec = params["models"][MODEL]
    batch_size = spec["training"]["batch_size"]
    split = load_split(prepared, "train")
    keep = training.stratified_limit(split.y, images)
    x, y = split.x[keep], split.y[keep]
    num_classes = load_summary(prepared)["num_classes"]

    timer = EpochTimer()
    result: dict[str, Any] = {"side": side, "images": len(y), "batch_size": batch_size}
    if side == "project":
        accelerator = accelerate.configure(params["train"])
        training.seed_everything(SEED, accelerator)
        with accelerator.scope():
            model = models.build_model(spec, x.shape[1:], num_classes, params["model"]["dropout"], name=MODEL)
            model.compile(optimizer=models.build_optimizer(spec["training"], MODEL),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                          jit_compile=accelerator.jit_compile)
        dataset = inputs.make_dataset(x, y, batch_size, training=True, seed=SEED)
        model.fit(dataset, epochs=1 + epochs, shuffle=False, verbose=0, callbacks=[timer])
        started = time.perf_counter()
        for _ in dataset:  # the input pipeline alone: how far it is from being the bottleneck
            pass
        result["pipeline_images_per_s"] = len(y) / (time.perf_counter() - started)
        result["accelerator"] = accelerator.describe()
    else:
        keras.utils.set_random_seed(SEED)
        model = models.build_model(spec, x.shape[1:], num_classes, params["model"]["dropout"], name=MODEL)
        model.compile(optimizer=models.build_optimizer(spec["training"], MODEL),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x / 255.0, y, batch_size=batch_size, epochs=1 + epochs, verbose=0, callbacks=[timer])
    seconds, steps = sum(timer.seconds[1:]), sum(timer.steps[1:])  # the warm-up epoch is left out
    result.update(
        warmup_seconds=timer.seconds[0],
        epoch_seconds=timer.seconds[1:],
        ms_per_step=1000 * seconds / steps,
        images_per_s=len(y) * epochs / seconds,
    )
    return result


def compare(prepared: Path, images: int, epochs: int, rounds: int) -> dict[str, Any]:
    """Both sides, alternating, each in a fresh process; returns the best round of each and the ratio."""
    measured: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        for round_ in range(rounds):
            for side in SIDES:
                out = Path(scratch) / f"{side}-{round_}.json"
                command = [sys.executable, "-m", "bench.train_throughput", "--side", side, "--prepared",
                           str(prepared), "--images", str(images), "--epochs", str(epochs), "--out", str(out)]
                completed = subprocess.run(command, cwd=REPO, env=stage_env(), capture_output=True, text=True)
                if completed.returncode != 0:
                    raise RuntimeError(f"{side} side failed:\n{completed.stdout}\n{completed.stderr}")
                measured[side].append(json.loads(out.read_text(encoding="utf-8")))
                row = measured[side][-1]
                print(f"  round {round_ + 1} {side:8s} {row['ms_per_step']:7.1f} ms/step "
                      f"{row['images_per_s']:7.1f} images/s", flush=True)
    best = {side: min(rows, key=lambda row: row["ms_per_step"]) for side, rows in measured.items()}
    ratio = best["project"]["images_per_s"] / best["article"]["images_per_s"]
    project, article = best["project"], best["article"]
    print(f"project: {project['images_per_s']:.1f} images/s, {project['ms_per_step']:.1f} ms/step "
          f"(input pipeline alone: {project['pipeline_images_per_s']:.0f} images/s; {project['accelerator']})")
    print(f"article: {article['images_per_s']:.1f} images/s, {article['ms_per_step']:.1f} ms/step")
    print(f"RATIO project/article = {ratio:.2f} (required >= 1.0, target >= 1.2)", flush=True)
    return {"best": best, "rounds": measured, "ratio": ratio, "images": images, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.train_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--prepared", type=Path, required=True, help="a prepared dataset (data/prepared/<name>)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs, after one warm-up epoch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side, in this process
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.side:
        write_result(args.out, run_side(args.side, args.prepared, args.images, args.epochs))
    else:
        write_result(args.out, compare(args.prepared, args.images, args.epochs, args.rounds))


if __name__ == "__main__":
    main()
