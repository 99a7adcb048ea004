"""Where and how a run trains: devices, distribution, mixed precision and XLA (params.yaml `train`).

The one module that knows about devices. Models and training use only the backend-neutral Keras API;
the TensorFlow distribution strategies are made here, and only under the TensorFlow backend, so
KERAS_BACKEND=jax (or torch) trains on its single default device with the same code.

    train.mixed_precision  auto | bf16 | fp16 | false   Keras policy mixed_bfloat16 | mixed_float16 | float32
                                                        (each model's output layer says `dtype: float32` in
                                                        params.yaml, as Keras' mixed-precision guide advises)
    train.xla              auto | true | false          model.compile(jit_compile=...)

Mixed precision `auto` picks bf16 on NVIDIA GPUs of compute capability 8.0 or later (Ampere, Hopper), fp16 on
older ones (tensor cores since 7.0; Keras scales the loss), and float32 on every CPU: also on x86 CPUs whose
flags list avx512_bf16 or amx_bf16, where oneDNN's bf16 kernels are native and much faster, because parity
failed there (bench/precision_parity.md, default profile, 3 seeds each: validation and test accuracies agree
within the seed spread, but the regularized CNNs' train accuracy and gap come out about 2 points lower in
bf16, which moves verdicts). On such a CPU `bf16` is one explicit setting away, and training says so. XLA `auto`
is on with a GPU and off on a CPU, where it was measured slower (the
article's notes: 410 vs 87 ms/step on 2 CPU cores). Devices, TensorFlow backend:

    TF_CONFIG set (several machines)   tf.distribute.MultiWorkerMirroredStrategy
    several GPUs visible               tf.distribute.MirroredStrategy over them
    otherwise                          no strategy: the single default device
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import keras

from overfit_first.config import Precision, TrainConfig

Setting = Literal["auto"] | bool
Distribution = Literal["multi_worker", "mirrored", "single"]


@dataclass(frozen=True)
class Accelerator:
    """What `configure` decided for one run; `scope()` wraps building and compiling the model."""

    gpus: int
    policy: str  # the Keras dtype policy: float32, mixed_bfloat16 or mixed_float16
    xla: bool
    strategy: Any | None = None  # a tf.distribute.Strategy; None: the backend's default device

    @property
    def mixed_precision(self) -> bool:
        return self.policy != "float32"

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync) if self.strategy is not None else 1

    @property
    def jit_compile(self) -> bool | str:
        # JAX has no non-XLA graph mode: jit_compile=False would run every step eagerly (many times slower),
        # so off-by-default on JAX means Keras's own "auto" (jit). An explicit `xla: false` still means eager.
        if not self.xla and keras.backend.backend() != "tensorflow":
            return "auto"
        return self.xla

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def fingerprint(self) -> dict[str, Any]:
        """The numerics in effect: a training backup made under others must not be resumed."""
        return {"policy": self.policy, "xla": self.xla, "replicas": self.replicas}

    def describe(self) -> str:
        where = f"{self.gpus} GPU(s)" if self.gpus else "CPU"
        hint = ""
        if not self.gpus and self.policy == "float32" and native_bf16_cpu(cpu_flags()):
            hint = (
                " (this CPU computes bf16 natively: train.mixed_precision: bf16 trains several times faster; "
                "its accuracy against float32: bench/precision_parity.md)"
            )
        return (
            f"{keras.backend.backend()} on {where}, {self.replicas} replica(s), "
            f"dtype policy {self.policy}, XLA {'on' if self.xla else 'off'}{hint}"
        )


def gpu_count() -> int:
    """GPUs the Keras backend sees (without initializing TensorFlow's runtime)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return sum(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.device_count()
    return 0


def resolve(setting: Setting, gpus: int) -> bool:
    """XLA: `auto` -> on when a GPU is present; true/false as given."""
    return gpus > 0 if setting == "auto" else bool(setting)


POLICIES = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16", False: "float32"}
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # as Linux names them in /proc/cpuinfo


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The instruction-set flags of the first CPU in `cpuinfo` (Linux); empty where there is no such file."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 says flags, Arm says Features
            return frozenset(value.split())
    return frozenset()


def gpu_compute_capability() -> tuple[int, int] | None:
    """The first GPU's compute capability (major, minor) as the Keras backend reports it; None without one."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") if gpus else None
        return tuple(capability) if capability else None
    if backend == "jax":
        import jax

        gpus = [device for device in jax.devices() if device.platform == "gpu"]
        capability = getattr(gpus[0], "compute_capability", None) if gpus else None
        return tuple(int(part) for part in str(capability).split(".")[:2]) if capability else None
    if backend == "torch":
        import torch

        return tuple(torch.cuda.get_device_capability()) if torch.cuda.is_available() else None
    return None


def native_bf16_cpu(flags: frozenset[str]) -> bool:
    """Whether a CPU with these instruction-set flags computes bf16 natively (oneDNN's AVX512_BF16/AMX kernels)."""
    return bool(flags & set(BF16_CPU_FLAGS))


def choose_policy(setting: Precision, capability: tuple[int, int] | None) -> str:
    """The Keras dtype policy for params.yaml `train.mixed_precision`; `capability`: the GPU's compute
    capability, None on a CPU.

    `auto`: bf16 on GPUs of compute capability >= 8.0, fp16 on older GPUs, float32 on CPUs (see the module's
    docstring for why also on CPUs with native bf16). An explicit bf16/fp16 is honoured anywhere (emulated
    where the hardware lacks it: slower).
    """
    if setting != "auto":
        return POLICIES[setting]
    if capability is not None:
        return POLICIES["bf16"] if capability >= (8, 0) else POLICIES["fp16"]
    return POLICIES[False]


def choose_distribution(devices: int, tf_config: str | None) -> Distribution:
    if tf_config:
        return "multi_worker"
    return "mirrored" if devices > 1 else "single"


def is_chief(tf_config: str | None = None) -> bool:
    """Whether this process writes the run's results: always, except on the non-chief workers of TF_CONFIG."""
    tf_config = os.environ.get("TF_CONFIG") if tf_config is None else tf_config
    if not tf_config:
        return True
    config = json.loads(tf_config)
    task, cluster = config.get("task") or {}, config.get("cluster") or {}
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def configure(train: TrainConfig, devices: Sequence[str] | None = None) -> Accelerator:
    """Apply params.yaml `train.mixed_precision` and `train.xla`, and pick the distribution strategy.

    Call before anything else touches the backend: MultiWorkerMirroredStrategy must exist before TensorFlow's
    runtime starts. `devices` overrides the visible GPUs as the devices to mirror over (tests use two logical
    CPUs); with the TensorFlow backend, more than one device means a MirroredStrategy.
    """
    gpus = gpu_count()
    policy = choose_policy(train.mixed_precision, gpu_compute_capability() if gpus else None)
    xla = resolve(train.xla, gpus)
    # Set every time: the policy is global state that an earlier run in the same process may have changed.
    keras.mixed_precision.set_global_policy(policy)
    strategy = None
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        count = len(devices) if devices is not None else gpus
        kind = choose_distribution(count, os.environ.get("TF_CONFIG"))
        if kind == "multi_worker":
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        elif kind == "mirrored":
            strategy = tf.distribute.MirroredStrategy(devices=list(devices) if devices is not None else None)
    return Accelerator(gpus=gpus, policy=policy, xla=xla, strategy=strategy)


def deterministic_ops(accelerator: Accelerator) -> None:
    """Make TensorFlow's ops deterministic, unless the run uses XLA.

    Keras refuses jit_compile with op determinism on (it silently falls back to no XLA), so an XLA run is
    seeded but not bit-for-bit reproducible: set train.xla to false for that.
    """
    if keras.backend.backend() == "tensorflow" and not accelerator.xla:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
