"""Devices, distribution, mixed precision and XLA (overfit_first.accelerate), tested on a CPU.

The distributed path runs for real: a subprocess splits the CPU into two logical devices before TensorFlow
starts and trains the tiny CNN with `training.fit` under a MirroredStrategy over them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest

from overfit_first import accelerate
from overfit_first.config import Precision, TrainConfig

from conftest import run_stage
from helpers_train import (
    IMAGE_SHAPE,
    RUN,
    make_project,
    output_paths,
    project_params,
    read_metrics,
    sqlite_uri,
    train_env,
)

TWO_CPU_REPLICAS = """
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from overfit_first import accelerate, training
from overfit_first.config import load_params
from overfit_first.data.splits import dataset_dir, load_split, load_summary

run = load_params().run(sys.argv[1])
devices = [device.name for device in tf.config.list_logical_devices("CPU")]
accelerator = accelerate.configure(run.shared, devices=devices)
directory = dataset_dir(run.dataset)
train, valid = load_split(directory, "train"), load_split(directory, "valid")
result = training.fit(run, train, valid, load_summary(directory)["num_classes"], accelerator=accelerator)
training.write_outputs(run, result)
print(json.dumps({"devices": devices, "replicas": accelerator.replicas,
                  "strategy": type(accelerator.strategy).__name__, "metrics": result.metrics.model_dump()}))
"""


@pytest.mark.parametrize(
    ("setting", "gpus", "expected"),
    [
        ("auto", 0, False),
        ("auto", 1, True),
        ("auto", 4, True),
        (True, 0, True),
        (False, 2, False),
    ],
)
def test_auto_means_on_with_a_gpu_only(setting: accelerate.Setting, gpus: int, expected: bool) -> None:
    assert accelerate.resolve(setting, gpus) is expected


@pytest.mark.parametrize(
    ("setting", "capability", "policy"),
    [
        ("auto", (9, 0), "mixed_bfloat16"),  # Hopper
        ("auto", (8, 0), "mixed_bfloat16"),  # Ampere: the first with bf16 tensor cores
        ("auto", (7, 5), "mixed_float16"),  # Turing: fp16 tensor cores
        ("auto", None, "float32"),  # every CPU, also one with native bf16: parity failed there
        ("bf16", None, "mixed_bfloat16"),  # explicit: honoured anywhere
        ("fp16", (9, 0), "mixed_float16"),
        (False, (9, 0), "float32"),
    ],
)
def test_auto_precision_is_bf16_on_recent_gpus_only(
    setting: Precision, capability: tuple[int, int] | None, policy: str
) -> None:
    assert accelerate.choose_policy(setting, capability) == policy


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        (frozenset({"avx2", "avx512f", "avx512_bf16"}), True),  # Zen 4, Cooper Lake
        (frozenset({"avx2", "avx512f", "amx_bf16", "amx_tile"}), True),  # Sapphire Rapids
        (frozenset({"avx2", "fma"}), False),  # AVX2 only: bf16 would be emulated
        (frozenset(), False),  # no flags known (not Linux)
    ],
)
def test_native_bf16_cpus_are_told_by_their_flags(flags: frozenset[str], native: bool) -> None:
    assert accelerate.native_bf16_cpu(flags) is native


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 amx_bf16\n\nprocessor\t: 1\n"
    )
    assert accelerate.cpu_flags(cpuinfo) == frozenset({"fpu", "sse2", "avx2", "amx_bf16"})
    assert accelerate.cpu_flags(tmp_path / "absent") == frozenset()
    assert accelerate.cpu_flags(Path("/proc/cpuinfo")) == accelerate.cpu_flags(), "the default reads this machine"


def test_distribution_follows_tf_config_then_the_device_count() -> None:
    assert accelerate.choose_distribution(0, None) == "single"
    assert accelerate.choose_distribution(1, None) == "single"
    assert accelerate.choose_distribution(2, None) == "mirrored"
    assert accelerate.choose_distribution(1, '{"cluster": {"worker": ["a:1", "b:1"]}}') == "multi_worker"


def test_only_the_chief_worker_writes_results() -> None:
    workers = {"worker": ["a:1", "b:1"]}
    assert accelerate.is_chief("")
    assert accelerate.is_chief(json.dumps({"cluster": workers, "task": {"type": "worker", "index": 0}}))
    assert not accelerate.is_chief(json.dumps({"cluster": workers, "task": {"type": "worker", "index": 1}}))
    with_chief = {"chief": ["c:1"], **workers}
    assert accelerate.is_chief(json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}}))
    assert not accelerate.is_chief(json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}}))


def test_cpu_defaults_are_a_single_device_in_float32_without_xla() -> None:
    if accelerate.gpu_count():
        pytest.skip("a GPU is visible: auto turns mixed precision and XLA on")
    before = keras.mixed_precision.global_policy().name
    try:
        accelerator = accelerate.configure(
            TrainConfig(seed=0, subset_size=None, batchnorm_momentum=None, mixed_precision="auto", xla="auto")
        )
        assert (accelerator.gpus, accelerator.policy, accelerator.xla) == (0, "float32", False)
        assert accelerator.strategy is None and accelerator.replicas == 1 and accelerator.jit_compile is False
        assert keras.mixed_precision.global_policy().name == "float32"
        assert "CPU, 1 replica(s), dtype policy float32, XLA off" in accelerator.describe()
        native = accelerate.native_bf16_cpu(accelerate.cpu_flags())
        assert ("train.mixed_precision: bf16 trains several times faster" in accelerator.describe()) is native
    finally:
        keras.mixed_precision.set_global_policy(before)


@pytest.mark.slow
def test_training_under_a_mirrored_strategy_of_two_cpus(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    result = subprocess.run(
        [sys.executable, "-c", TWO_CPU_REPLICAS, RUN],
        cwd=project,
        env=train_env(sqlite_uri(tmp_path)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["devices"]) == 2
    assert report["strategy"] == "MirroredStrategy" and report["replicas"] == 2
    assert "2 replica(s)" in result.stdout
    metrics = report["metrics"]
    assert metrics["epochs_run"] == 3 and metrics["train_images"] == 160
    assert metrics["val_accuracy"] > 0.5, "the tiny CNN should learn the tiny dataset on two replicas too"
    assert all(path.is_file() for path in output_paths(project))


@pytest.mark.slow
@pytest.mark.parametrize(("setting", "policy"), [("bf16", "mixed_bfloat16"), ("fp16", "mixed_float16")])
def test_mixed_precision_run_through_the_train_stage(tmp_path: Path, setting: str, policy: str) -> None:
    params = project_params()
    params["train"]["mixed_precision"] = setting
    project = make_project(tmp_path / "project", params)
    result = run_stage("stages.train", RUN, cwd=project, env=train_env(sqlite_uri(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert f"dtype policy {policy}" in result.stdout
    model = keras.saving.load_model(output_paths(project)[0])
    assert model.layers[0].dtype_policy.name == policy
    assert model.layers[-1].dtype_policy.name == "float32"
    assert model.predict(np.zeros((1, *IMAGE_SHAPE), dtype=np.float32), verbose=0).dtype == np.float32
    assert read_metrics(project)["val_accuracy"] > 0.5
    mlflow.set_tracking_uri(sqlite_uri(tmp_path))
    (logged,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert logged.data.params["train.mixed_precision"] == setting
    assert logged.data.params["train.dtype_policy"] == policy, "the resolved policy is logged with the run"


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason='jax is not installed: pip install -e ".[jax]"')
@pytest.mark.slow
def test_train_stage_runs_on_the_jax_backend(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    result = run_stage("stages.train", RUN, cwd=project, env=train_env(sqlite_uri(tmp_path), KERAS_BACKEND="jax"))
    assert result.returncode == 0, result.stderr
    assert "jax on CPU, 1 replica(s)" in result.stdout
    assert read_metrics(project)["val_accuracy"] > 0.5
