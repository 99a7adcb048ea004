"""Evaluation throughput: overfit_first.evaluation's predict path against a plain model.predict on float arrays.

    python -m bench.eval_throughput --prepared DIR [--rounds 3] [--out FILE]

The same cnn_simplified model (its weights do not matter for speed) predicts the prepared test split, at
params.yaml evaluate.batch_size, through `evaluation.predict` (uint8 -> float32 inside tf.data) and through
`model.predict(x.astype("float32") / 255, batch_size=...)`, alternately; each path's best round counts.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, SEED, write_result


def measure(prepared: Path, rounds: int) -> dict[str, Any]:
    import keras
    import numpy as np

    from overfit_first import evaluation, models
    from overfit_first.config import load_params
    from overfit_first.data.splits import SCALE, load_split, load_summary

    params = load_params(REPO / "params.yaml")
    batch_size = params.evaluate.batch_size
    test = load_split(prepared, "test")
    keras.utils.set_random_seed(SEED)
    knobs = {"$dropout": params.model.dropout, "$batchnorm_momentum": params.train.batchnorm_momentum}
    model = models.build_model(
        params.models["cnn_simplified"], test.x.shape[1:], load_summary(prepared)["num_classes"], knobs
    )
    paths = {
        "project": lambda: evaluation.predict(model, test, batch_size),
        # The float conversion is part of the plain path: the arrays on disk are uint8.
        "plain": lambda: model.predict(test.x.astype(np.float32) * np.float32(SCALE), batch_size=batch_size, verbose=0),
    }
    for predict in paths.values():  # warm-up: tracing and the first allocation of each path
        predict()
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    outputs = {}
    for _ in range(rounds):
        for name, predict in paths.items():
            started = time.perf_counter()
            outputs[name] = predict()
            seconds[name].append(time.perf_counter() - started)
    agree = float(np.mean(outputs["project"].argmax(axis=1) == outputs["plain"].argmax(axis=1)))
    best = {name: min(values) for name, values in seconds.items()}
    rate = {name: len(test.y) / value for name, value in best.items()}
    ratio = rate["project"] / rate["plain"]
    print(
        f"project (evaluation.predict): {rate['project']:.0f} images/s; plain model.predict: "
        f"{rate['plain']:.0f} images/s; {len(test.y)} images, batch {batch_size}; same predictions: {agree:.4f}"
    )
    print(f"RATIO project/plain = {ratio:.2f} (>= 1.0 means the input pipeline costs nothing)", flush=True)
    return {
        "images": len(test.y),
        "batch_size": batch_size,
        "seconds": seconds,
        "images_per_s": rate,
        "ratio": ratio,
        "same_predictions": agree,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.eval_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--prepared", type=Path, required=True, help="a prepared dataset (data/prepared/<name>)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    write_result(args.out, measure(args.prepared, args.rounds))


if __name__ == "__main__":
    main()
