"""Where and how a run trains: devices, distribution, mixed precision and XLA (params.yaml `train`).

The one module that knows about devices. Models and training use only the backend-neutral Keras API;
the TensorFlow distribution strategies are made here, and only under the TensorFlow backend, so
KERAS_BACKEND=jax (or torch) trains on its single default device with the same code.

    train.mixed_precision  auto | true | false   keras "mixed_float16" policy (each model's output layer says
                                                 `dtype: float32` in params.yaml, as Keras' guide advises)
    train.xla              auto | true | false   model.compile(jit_compile=...)

`auto` means on when a GPU is visible and off on a CPU, where both were measured slower (the article's
notes: XLA 410 vs 87 ms/step on 2 CPU cores; float16 has no fast CPU kernels). Devices, TensorFlow backend:

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
from typing import Any, Literal

import keras

from overfit_first.config import TrainConfig

Setting = Literal["auto"] | bool
Distribution = Literal["multi_worker", "mirrored", "single"]


@dataclass(frozen=True)
class Accelerator:
    """What `configure` decided for one run; `scope()` wraps building and compiling the model."""

    gpus: int
    mixed_precision: bool
    xla: bool
    strategy: Any | None = None  # a tf.distribute.Strategy; None: the backend's default device

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
        return {"mixed_precision": self.mixed_precision, "xla": self.xla, "replicas": self.replicas}

    def describe(self) -> str:
        where = f"{self.gpus} GPU(s)" if self.gpus else "CPU"
        return (
            f"{keras.backend.backend()} on {where}, {self.replicas} replica(s), "
            f"mixed precision {'on' if self.mixed_precision else 'off'}, XLA {'on' if self.xla else 'off'}"
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
    """`auto` -> on when a GPU is present; true/false as given."""
    return gpus > 0 if setting == "auto" else bool(setting)


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
    mixed_precision = resolve(train.mixed_precision, gpus)
    xla = resolve(train.xla, gpus)
    # Set both ways: the policy is global state that an earlier run in the same process may have changed.
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    strategy = None
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        count = len(devices) if devices is not None else gpus
        kind = choose_distribution(count, os.environ.get("TF_CONFIG"))
        if kind == "multi_worker":
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        elif kind == "mirrored":
            strategy = tf.distribute.MirroredStrategy(devices=list(devices) if devices is not None else None)
    return Accelerator(gpus=gpus, mixed_precision=mixed_precision, xla=xla, strategy=strategy)


def deterministic_ops(accelerator: Accelerator) -> None:
    """Make TensorFlow's ops deterministic, unless the run uses XLA.

    Keras refuses jit_compile with op determinism on (it silently falls back to no XLA), so an XLA run is
    seeded but not bit-for-bit reproducible: set train.xla to false for that.
    """
    if keras.backend.backend() == "tensorflow" and not accelerator.xla:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
