"""This machine's matrix-multiply peaks in float32 and bfloat16, and what TensorFlow computes them with.

    python -m bench.matmul_peak [--size 2048] [--repeats 10] [--out FILE]

`tf.matmul` of two random square matrices of --size, float32 and bfloat16 (float32 accumulation inside
oneDNN), timed --repeats times after one warm-up: the best time gives the peak in GFLOP/s (2 * size**3
FLOPs per product), on the threads TensorFlow uses (its intra-op pool, all cores by default); the best
process CPU time gives the rate per CPU second. 2048 is enough for oneDNN's peak on a few cores (4096 was
not faster here) and keeps each measurement to seconds. It runs under
the train stage's TensorFlow settings (overfit_first imported first: oneDNN on), so a model's achieved
GFLOP/s (overfit_first.flops) can be read as a fraction of what this CPU does at best in each precision.
Also recorded: the CPU model, its instruction-set flags that matter here, and TensorFlow's thread and
oneDNN settings.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import overfit_first  # noqa: F401 - first, as in the train stage: it sets TensorFlow's defaults
from bench.common import isa_flags, machine, project_precision, write_result
from overfit_first import accelerate

ENV_SETTINGS = (
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "ONEDNN_MAX_CPU_ISA",
)


def tensorflow_settings() -> dict[str, Any]:
    """TensorFlow's version, thread pools (0 = its default: every core) and the environment that sets them."""
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "cores": len(os.sched_getaffinity(0)),
        "env": {name: os.environ[name] for name in ENV_SETTINGS if name in os.environ},
    }


def peak(dtype: str, size: int, repeats: int) -> dict[str, Any]:
    """Best-of-`repeats` rates of a size x size `tf.matmul` in `dtype` ("float32" or "bfloat16").

    `gflops`: per wall-clock second; `gflops_per_cpu_s`: per second of this process's CPU time (all threads),
    which other load on a shared machine disturbs far less (a training's rate per CPU second compares with it).
    """
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(0)
    a = tf.cast(generator.normal((size, size)), dtype)
    b = tf.cast(generator.normal((size, size)), dtype)
    tf.matmul(a, b).numpy()  # warm-up: oneDNN creates its primitive for this shape once
    seconds, cpu_seconds = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        tf.matmul(a, b).numpy()  # .numpy() waits for the result
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
    flop = 2 * size**3
    return {
        "dtype": dtype,
        "size": size,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "gflops": flop / min(seconds) / 1e9,
        "gflops_per_cpu_s": flop / min(cpu_seconds) / 1e9,
    }


def measure(size: int, repeats: int) -> dict[str, Any]:
    """Both peaks, the CPU and TensorFlow's settings; prints them as it goes."""
    result: dict[str, Any] = {
        "cpu_model": machine()["cpu_model"],
        "flags": isa_flags(),
        "settings": tensorflow_settings(),
        "project_policy": accelerate.choose_policy(project_precision(), None),
        "peaks": {},
    }
    print(f"CPU {result['cpu_model']}; flags {' '.join(result['flags'])}; {result['settings']}", flush=True)
    for dtype in ("float32", "bfloat16"):
        result["peaks"][dtype] = peak(dtype, size, repeats)
        row = result["peaks"][dtype]
        print(
            f"  {dtype} matmul {size}x{size}: {row['gflops']:.0f} GFLOP/s, "
            f"{row['gflops_per_cpu_s']:.0f} per CPU second",
            flush=True,
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.matmul_peak", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="the square matrices' side")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    write_result(args.out, measure(args.size, args.repeats))


if __name__ == "__main__":
    main()
