"""Where a training step's time goes: TensorFlow's profiler per op type, oneDNN's verbose log per kernel.

    python -m bench.train_profile --prepared DIR [--model cnn_simplified] [--steps 10] [--out FILE]

For the project's pipeline (as bench.train_throughput's `project` side: overfit_first's settings, seeded,
deterministic, inputs.make_dataset) under the project policy (bf16 where native) and under float32, each in
its own process:

    trace     tf.profiler.experimental over --steps steps after a warm-up: the host plane of the XSpace it
              writes, read with TensorFlow's own protobuf (no TensorBoard), summed per TensorFlow op type
              (_MklNativeConv2D..., FusedBatchNormV3, Cast, the dropout's ops, the optimizer's); the sum of
              op times can exceed the steps' wall time where ops run concurrently (inter-op threads)
    kernels   the same steps under ONEDNN_VERBOSE=1: oneDNN's primitives by kind, implementation (brgconv,
              brg_matmul, jit...: which instruction set, `amx` = the AMX tiles) and data types, with their
              execution time per step, as oneDNN itself measures it

Nothing is timed against a baseline here: this says where time goes, bench.train_throughput says how much.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import overfit_first  # noqa: F401 - before TensorFlow, as in the train stage: it sets TensorFlow's defaults
from bench.common import REPO, SEED, project_precision, stage_env, write_result

POLICIES = ("project", "float32")  # project: bench.common.project_precision (bf16 where native)
WARMUP_STEPS = 10
TOP = 12  # rows kept per table
LAYER_KINDS = ("conv2d", "batch_normalization", "dropout", "max_pooling2d", "dense", "flatten")
OPTIMIZER_SCOPES = ("adam", "nadam", "rmsprop", "sgd", "optimizer")


def train_steps(prepared: Path, model_name: str, policy: str, steps: int, trace_dir: Path | None) -> dict[str, Any]:
    """Fit `model_name` for WARMUP_STEPS, then `steps` more (traced into `trace_dir` when given); timings."""
    import tensorflow as tf

    from overfit_first import accelerate, inputs, models, training
    from overfit_first.config import load_params
    from overfit_first.data.splits import load_split, load_summary, stratified_subset

    params = load_params(REPO / "params.yaml")
    spec = params.models[model_name]
    knobs = params.run(next(name for name, run in params.runs.items() if run.model == model_name)).knobs
    batch_size = spec.fit.batch_size
    split = load_split(prepared, "train")
    keep = stratified_subset(split.y, batch_size * (WARMUP_STEPS + steps))
    precision = project_precision() if policy == "project" else False
    train = params.train.model_copy(update={"mixed_precision": precision})
    accelerator = accelerate.configure(train)
    training.seed_everything(SEED, accelerator)
    with accelerator.scope():
        model = models.build_model(spec, split.x.shape[1:], load_summary(prepared)["num_classes"], knobs)
        model.compile(
            optimizer=models.build_optimizer(spec.fit),
            loss="sparse_categorical_crossentropy",
            jit_compile=accelerator.jit_compile,
        )
    dataset = inputs.make_dataset(split.x[keep], split.y[keep], batch_size, training=True, seed=SEED)
    model.fit(dataset.take(WARMUP_STEPS), verbose=0)
    if trace_dir is not None:
        tf.profiler.experimental.start(str(trace_dir))
    started = time.perf_counter()
    model.fit(dataset.skip(WARMUP_STEPS), verbose=0)
    seconds = time.perf_counter() - started
    if trace_dir is not None:
        tf.profiler.experimental.stop()
    return {"policy": accelerator.policy, "steps": steps, "ms_per_step": 1000 * seconds / steps}


def op_component(name: str, thread: str) -> str:
    """Which part of training an op event belongs to: a layer kind (forward or backward), the optimizer, the
    input pipeline, or "other" (loss, metrics, the step's bookkeeping); from its name scope and thread."""
    if thread.startswith("tf_data"):
        return "input pipeline (tf.data threads)"
    parts = name.partition(":")[0].split("/")
    direction = "backward" if "gradient_tape" in parts else "forward"
    for part in parts:
        kind = re.sub(r"(_\d+)+$", "", part)
        if kind in LAYER_KINDS:
            return f"{kind} {direction}"
        if kind in OPTIMIZER_SCOPES:
            return "optimizer"
    return "other"


def op_times(trace_dir: Path, steps: int) -> dict[str, list[dict[str, Any]]]:
    """ms per step of the trace in `trace_dir` (host plane), per TensorFlow op type and per `op_component`.

    TensorFlow names an op's event `scope/name:Type`; other events (functions, the executor, Python, tf.data's
    iterators) are left out. Largest first. Raises StopIteration when the profiler wrote no XSpace.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(next(trace_dir.rglob("*.xplane.pb")).read_bytes())
    by_type: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    by_component: collections.Counter[str] = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                scope, _, op_type = name.rpartition(":")
                if not scope or scope.endswith(":") or not op_type or " " in op_type:
                    continue
                by_type[op_type] += event.duration_ps
                calls[op_type] += 1
                by_component[op_component(name, line.name)] += event.duration_ps
    return {
        "by_type": [
            {"op": op, "ms_per_step": picoseconds / 1e9 / steps, "calls_per_step": calls[op] / steps}
            for op, picoseconds in by_type.most_common(TOP)
        ],
        "by_component": [
            {"component": component, "ms_per_step": picoseconds / 1e9 / steps}
            for component, picoseconds in by_component.most_common()
        ],
    }


def memory_type(descriptor: str) -> str:
    """The data type of one oneDNN memory descriptor: `src:bf16::blocked:acdb::f0`, `wei:bf16:a:blocked:...`
    (argument, type, properties, format) or, from the gemm API, `src_f32::blocked:ab:f0`."""
    argument, _, rest = descriptor.partition(":")
    return rest.split(":")[0] or argument.rpartition("_")[2]


def kernel_times(log: str, steps: int) -> list[dict[str, Any]]:
    """oneDNN's verbose `exec` lines summed per (primitive, implementation, data types): ms per step.

    `steps`: the training steps the log covers (warm-up included), to divide by.
    """
    totals: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for line in log.splitlines():
        fields = line.split(",")
        # onednn_verbose,v1,primitive,exec,cpu,<kind>,<implementation>,<prop>,<memory descriptors>,...,<ms>
        if len(fields) < 10 or fields[:4] != ["onednn_verbose", "v1", "primitive", "exec"]:
            continue
        types = sorted({memory_type(part) for part in fields[8].split()} - {"undef"})
        totals[(fields[5], fields[6], "/".join(types))] += float(fields[-1])
    return [
        {"primitive": kind, "implementation": implementation, "types": types, "ms_per_step": ms / steps}
        for (kind, implementation, types), ms in totals.most_common()
    ]


def child(prepared: Path, model_name: str, policy: str, steps: int, mode: str) -> dict[str, Any]:
    """One profile in this process: `mode` "trace" (TensorFlow's profiler) or "kernels" (run under ONEDNN_VERBOSE)."""
    if mode == "kernels":
        return train_steps(prepared, model_name, policy, steps, None)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as scratch:
        result = train_steps(prepared, model_name, policy, steps, Path(scratch))
        result.update(op_times(Path(scratch), steps))
    return result


def profile(prepared: Path, model_name: str, steps: int) -> dict[str, Any]:
    """Both modes under both policies, each in its own process; prints the tables as it goes."""
    results: dict[str, Any] = {"model": model_name, "steps": steps}
    for policy in POLICIES:
        with tempfile.TemporaryDirectory(prefix="bench-profile-") as scratch:
            out = Path(scratch) / "out.json"
            command = [sys.executable, "-m", "bench.train_profile", "--prepared", str(prepared), "--model"]
            command += [model_name, "--steps", str(steps), "--policy", policy, "--out", str(out)]
            subprocess.run([*command, "--mode", "trace"], cwd=REPO, env=stage_env(), check=True)
            traced = json.loads(out.read_text(encoding="utf-8"))
            completed = subprocess.run(
                [*command, "--mode", "kernels"],
                cwd=REPO,
                env=stage_env(ONEDNN_VERBOSE="1"),
                check=True,
                capture_output=True,
                text=True,
            )
            verbose = json.loads(out.read_text(encoding="utf-8"))
        verbose["kernels"] = kernel_times(completed.stdout, WARMUP_STEPS + steps)[:TOP]
        results["onednn"] = next(
            (line.split(",")[3] for line in completed.stdout.splitlines() if ",info,oneDNN v" in line), "unknown"
        )
        results[policy] = {"trace": traced, "kernels": verbose}
        print(f"{model_name}, {traced['policy']}: {traced['ms_per_step']:.1f} ms/step while traced", flush=True)
        for row in traced["by_component"]:
            print(f"  {row['component']:40s} {row['ms_per_step']:7.2f} ms/step")
        for row in traced["by_type"]:
            print(f"  op {row['op']:40s} {row['ms_per_step']:7.2f} ms/step ({row['calls_per_step']:.0f} calls)")
        for row in verbose["kernels"]:
            print(
                f"  oneDNN {row['primitive']:22s} {row['implementation']:28s} {row['types']:16s} "
                f"{row['ms_per_step']:7.2f} ms/step"
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.train_profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prepared", type=Path, required=True, help="a prepared dataset (data/prepared/<name>)")
    parser.add_argument("--model", default="cnn_simplified", help="a params.yaml model")
    parser.add_argument("--steps", type=int, default=10, help="profiled steps, after a warm-up")
    parser.add_argument("--policy", choices=POLICIES, help=argparse.SUPPRESS)  # one profile, in this process
    parser.add_argument("--mode", choices=("trace", "kernels"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.policy:
        write_result(args.out, child(args.prepared, args.model, args.policy, args.steps, args.mode))
    else:
        write_result(args.out, profile(args.prepared, args.model, args.steps))


if __name__ == "__main__":
    main()
