"""Training throughput: the train stage's input pipeline + fit against the article's plain `model.fit`, per model,
with the achieved GFLOP/s against this machine's matrix-multiply peaks measured in the same rounds.

    python -m bench.train_throughput --prepared DIR [--models cnn_simplified,cnn_overfit] [--images 640]
                                     [--epochs 1] [--rounds 3] [--out FILE]

Every side trains a params.yaml model (overfit_first.models.build_model; batch norm at Keras's default
momentum, as in the article) from the same seed on the same images (the first --images of the prepared
training split, stratified), at the model's batch size, one warm-up epoch and then --epochs timed ones:

    project          what the train stage does: overfit_first's TensorFlow settings (oneDNN on), accelerate.configure
                     (params.yaml `train` with mixed_precision bf16 on a CPU with avx512_bf16 or amx_bf16, else auto),
                     seed_everything (deterministic ops), inputs.make_dataset (uint8 -> float32 inside tf.data), fit
    project_float32  the same with train.mixed_precision false: what the 16-bit policy gains, on the same pipeline
    article          the article's code: x / 255.0 (float64 NumPy) into model.fit(x, y, batch_size=64), TensorFlow
                     as installed (no TF_ENABLE_ONEDNN_OPTS)
    article_onednn   (--article-onednn, first model only) the article's code with TF_ENABLE_ONEDNN_OPTS=1: which part
                     of the gain is TensorFlow's oneDNN kernels (on by default on CPUs with AVX-512 or AMX)
    project_interop1 (the first model only) `project` with TF_NUM_INTEROP_THREADS=1: one op at a time, each on
                     the whole intra-op pool, instead of TensorFlow's default of as many concurrent ops as cores
    peak             bench.matmul_peak: float32 and bfloat16 tf.matmul peaks, under the project's settings

Each side runs in its own process (op determinism, thread pools, oneDNN and the dtype policy are process-wide);
within a round the sides of every model alternate, for --rounds rounds. Figures: each side's median round
(one lucky round should not carry a conclusion on a noisy machine) and its best; process CPU time per step (all
threads: on a shared virtual machine it varies less than wall time); the achieved training GFLOP/s = training
FLOPs per image (overfit_first.flops: Conv2D and Dense, forward x 3) x images per second, as a percentage of
the best matmul peak of the side's compute precision (bfloat16 for a mixed_bfloat16 policy, else float32).
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

from bench.common import REPO, SEED, project_precision, stage_env, write_result

SIDES = ("article", "article_onednn", "project_float32", "project", "project_interop1")
# Speed-only settings tried on the first model, each as the project's side with extra environment: numbers
# stay the same (thread counts change no result under deterministic ops), so they need no DVC dependency.
LEVERS = {"project_interop1": {"TF_NUM_INTEROP_THREADS": "1"}}
MODELS = ("cnn_simplified", "cnn_overfit")


def run_side(side: str, model_name: str, prepared: Path, images: int, epochs: int) -> dict[str, Any]:
    """Train `model_name` as `side` in this process and return its timings."""
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS")  # as TensorFlow will read it, unless the project sets it
    project = side.startswith("project")
    if project:
        import overfit_first  # noqa: F401 - first, as in the train stage: it sets TensorFlow's defaults
    import keras  # the article's sides import TensorFlow with the environment as given

    from overfit_first import accelerate, flops, inputs, models, training
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
    spec = params.models[model_name]
    batch_size = spec.fit.batch_size
    knobs = params.run(next(name for name, run in params.runs.items() if run.model == model_name)).knobs
    split = load_split(prepared, "train")
    keep = stratified_subset(split.y, images)
    x, y = split.x[keep], split.y[keep]
    num_classes = load_summary(prepared)["num_classes"]

    timer = EpochTimer()
    result: dict[str, Any] = {"side": side, "model": model_name, "images": len(y), "batch_size": batch_size}
    if project:
        precision = False if side == "project_float32" else project_precision()
        train = params.train.model_copy(update={"mixed_precision": precision})
        accelerator = accelerate.configure(train)
        training.seed_everything(SEED, accelerator)
        with accelerator.scope():
            model = models.build_model(spec, x.shape[1:], num_classes, knobs, name=model_name)
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
        result["policy"] = accelerator.policy
    else:
        keras.utils.set_random_seed(SEED)
        model = models.build_model(spec, x.shape[1:], num_classes, knobs, name=model_name)
        model.compile(
            optimizer=models.build_optimizer(spec.fit), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model.fit(x / 255.0, y, batch_size=batch_size, epochs=1 + epochs, verbose=0, callbacks=[timer])
        result["policy"] = keras.mixed_precision.global_policy().name
    seconds, steps = sum(timer.seconds[1:]), sum(timer.steps[1:])  # the warm-up epoch is left out
    result.update(
        warmup_seconds=timer.seconds[0],
        epoch_seconds=timer.seconds[1:],
        ms_per_step=1000 * seconds / steps,
        cpu_ms_per_step=1000 * sum(timer.cpu_seconds[1:]) / steps,
        images_per_s=len(y) * epochs / seconds,
        training_flops_per_image=flops.training_flops(model),
        onednn=os.environ.get("TF_ENABLE_ONEDNN_OPTS") if project else onednn,
    )
    return result


def model_sides(index: int, article_onednn: bool) -> tuple[str, ...]:
    """The sides of the `index`-th model: the levers (and article_onednn when asked) for the first only: they
    are about TensorFlow's settings, not models."""
    first = index == 0
    return tuple(
        side
        for side in SIDES
        if (side != "article_onednn" or (article_onednn and first)) and (side not in LEVERS or first)
    )


def summarize(rows: list[dict[str, Any]], peaks: dict[str, dict[str, float]]) -> dict[str, Any]:
    """One side's rounds -> median and best ms/step, CPU ms/step, images/s, GFLOP/s and % of its precision's peak.

    `peaks`: by dtype ("float32", "bfloat16"), bench.matmul_peak's `gflops` (per wall second) and
    `gflops_per_cpu_s`. GFLOP/s come from the median round (the one with the median ms/step, the upper middle
    of an even count, so that its figures come from one process); the rate per CPU second from the median
    CPU time per step, against the matmul's rate per CPU second: what other load on the machine disturbs least.
    """
    ordered = sorted(rows, key=lambda row: row["ms_per_step"])
    median, best = ordered[len(ordered) // 2], ordered[0]
    dtype = "bfloat16" if rows[0]["policy"] == "mixed_bfloat16" else "float32"
    flop = median["training_flops_per_image"]
    cpu_ms = statistics.median(row["cpu_ms_per_step"] for row in rows)
    gflops = flop * median["images_per_s"] / 1e9
    gflops_per_cpu_s = flop * median["batch_size"] / cpu_ms / 1e6
    return {
        "policy": rows[0]["policy"],
        "peak_dtype": dtype,
        "median_ms_per_step": statistics.median(row["ms_per_step"] for row in rows),
        "median_cpu_ms_per_step": cpu_ms,
        "median_images_per_s": median["images_per_s"],
        "best_ms_per_step": best["ms_per_step"],
        "gflops": gflops,
        "percent_of_peak": 100 * gflops / peaks[dtype]["gflops"],
        "gflops_per_cpu_s": gflops_per_cpu_s,
        "percent_of_peak_cpu": 100 * gflops_per_cpu_s / peaks[dtype]["gflops_per_cpu_s"],
        "training_flops_per_image": flop,
    }


def run_child(command: list[str], env: dict[str, str], out: Path) -> dict[str, Any]:
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}")
    return json.loads(out.read_text(encoding="utf-8"))


def compare(
    prepared: Path, model_names: list[str], images: int, epochs: int, rounds: int, article_onednn: bool
) -> dict[str, Any]:
    """Every side of every model and the matmul peaks, alternating, each in a fresh process.

    Returns per model the rounds, each side's summary (`summarize`) and the ratios; the first model's figures
    are also at the top level (the history's columns).
    """
    measured: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {side: [] for side in model_sides(index, article_onednn)} for index, name in enumerate(model_names)
    }
    peak_rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        for round_ in range(rounds):
            out = Path(scratch) / f"peak-{round_}.json"
            command = [sys.executable, "-m", "bench.matmul_peak", "--out", str(out)]
            peak_rounds.append(run_child(command, stage_env(), out))
            print(
                f"  round {round_ + 1} matmul peaks: "
                + ", ".join(
                    f"{dtype} {row['gflops']:.0f} ({row['gflops_per_cpu_s']:.0f} per CPU second)"
                    for dtype, row in peak_rounds[-1]["peaks"].items()
                )
                + " GFLOP/s",
                flush=True,
            )
            for name, sides in measured.items():
                for side, rows in sides.items():
                    out = Path(scratch) / f"{name}-{side}-{round_}.json"
                    command = [sys.executable, "-m", "bench.train_throughput", "--side", side, "--models", name]
                    command += ["--prepared", str(prepared), "--images", str(images), "--epochs", str(epochs)]
                    rows.append(run_child([*command, "--out", str(out)], side_env(side), out))
                    row = rows[-1]
                    print(
                        f"  round {round_ + 1} {name:15s} {side:15s} {row['ms_per_step']:6.1f} ms/step "
                        f"{row['images_per_s']:6.1f} images/s (CPU {row['cpu_ms_per_step']:.0f} ms/step, "
                        f"{row['policy']})",
                        flush=True,
                    )
    peaks = {
        dtype: {key: max(row["peaks"][dtype][key] for row in peak_rounds) for key in ("gflops", "gflops_per_cpu_s")}
        for dtype in ("float32", "bfloat16")
    }
    per_model = {}
    for name, sides in measured.items():
        summary = {side: summarize(rows, peaks) for side, rows in sides.items()}
        best = {side: min(rows, key=lambda row: row["ms_per_step"]) for side, rows in sides.items()}
        median_ms = {side: row["median_ms_per_step"] for side, row in summary.items()}
        per_model[name] = {
            "rounds": sides,
            "summary": summary,
            "best": best,
            "median_ms_per_step": median_ms,
            "ratio": best["project"]["images_per_s"] / best["article"]["images_per_s"],
            "ratio_median": median_ms["article"] / median_ms["project"],
            "ratio_float32_median": median_ms["project_float32"] / median_ms["project"],
            "cpu_ratio": best["article"]["cpu_ms_per_step"] / best["project"]["cpu_ms_per_step"],
            "cpu_ratio_median": summary["article"]["median_cpu_ms_per_step"]
            / summary["project"]["median_cpu_ms_per_step"],
        }
        for lever in LEVERS:
            if lever in summary:
                per_model[name][f"ratio_{lever}_median"] = median_ms["project"] / median_ms[lever]
        if "article_onednn" in best:
            per_model[name]["ratio_onednn"] = best["project"]["images_per_s"] / best["article_onednn"]["images_per_s"]
        figures = per_model[name]
        print(
            f"{name}: "
            + "; ".join(
                f"{side} median {row['median_ms_per_step']:.1f} ms/step, "
                f"CPU {row['median_cpu_ms_per_step']:.0f} ms/step, "
                f"{row['gflops']:.0f} GFLOP/s = {row['percent_of_peak']:.0f} % of the {row['peak_dtype']} peak "
                f"({row['percent_of_peak_cpu']:.0f} % per CPU second)"
                for side, row in summary.items()
            )
        )
        print(
            f"RATIO {name} project/article: medians {figures['ratio_median']:.2f} (target >= 1.3), best "
            f"{figures['ratio']:.2f}, CPU time {figures['cpu_ratio_median']:.2f}; project/project_float32 "
            f"{figures['ratio_float32_median']:.2f}",
            flush=True,
        )
    first = per_model[model_names[0]]
    return {
        **first,
        "model": model_names[0],
        "models": per_model,
        "peaks": peaks,
        "peak_rounds": peak_rounds,
        "flags": peak_rounds[0]["flags"],
        "cpu_model": peak_rounds[0]["cpu_model"],
        "settings": peak_rounds[0]["settings"],
        "project_policy": peak_rounds[0]["project_policy"],
        "images": images,
        "epochs": epochs,
    }


def side_env(side: str) -> dict[str, str]:
    """The article's sides get TensorFlow's own oneDNN default or an explicit 1; the project, its own setting."""
    env = stage_env()
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if side == "article_onednn":
        env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    env.update(LEVERS.get(side, {}))
    return env


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.train_throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--prepared", type=Path, required=True, help="a prepared dataset (data/prepared/<name>)")
    parser.add_argument("--models", default=",".join(MODELS), help="params.yaml models, comma-separated")
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs, after one warm-up epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--article-onednn",
        action="store_true",
        help="also the article's code with TF_ENABLE_ONEDNN_OPTS=1 (the same as `article` where TensorFlow turns "
        "oneDNN on by itself: on CPUs with AVX-512 or AMX)",
    )
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side of one model, in this process
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model_names = args.models.split(",")
    if args.side:
        write_result(args.out, run_side(args.side, model_names[0], args.prepared, args.images, args.epochs))
    else:
        write_result(
            args.out, compare(args.prepared, model_names, args.images, args.epochs, args.rounds, args.article_onednn)
        )


if __name__ == "__main__":
    main()
