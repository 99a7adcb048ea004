"""The input pipeline: the one place with TensorFlow-specific code.

Images stay uint8 until a batch is drawn, then become float32 in 0..1 (`SCALE`): four times less memory
than scaling the whole array up front, and the article measured it as fast as float32 NumPy. Training
batches are shuffled with a seed, and optionally augmented with Keras preprocessing layers (training
only: validation images are never augmented). Without TensorFlow (e.g. KERAS_BACKEND=jax on a machine
without it) a keras.utils.PyDataset over NumPy does the same.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from overfit_first.data.splits import SCALE


def _tensorflow() -> Any | None:
    """TensorFlow if installed, else None (the PyDataset fallback below needs only NumPy and Keras).

    Imported on first use, not with this module: a JAX-only program that imports it for its augmentation
    layers (overfit_first.article_gpu) never loads TensorFlow, even where it is installed.
    """
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf


def augmentation_layers(settings: dict[str, Any] | None, seed: int) -> list[keras.layers.Layer]:
    """The model's `augmentation` block as Keras layers, mirroring the article's ImageDataGenerator.

    A list, not a keras.Sequential: each preprocessing layer switches to TensorFlow inside tf.data by
    itself whatever the Keras backend, while a Sequential around them would not.
    """
    if not settings:
        return []
    fill = settings.get("fill_mode", "nearest")
    layers: list[keras.layers.Layer] = []
    if settings.get("rotation_degrees"):
        # RandomRotation's factor is a fraction of a full turn.
        layers.append(keras.layers.RandomRotation(settings["rotation_degrees"] / 360, fill_mode=fill, seed=seed))
    if settings.get("width_shift") or settings.get("height_shift"):
        layers.append(
            keras.layers.RandomTranslation(
                settings.get("height_shift", 0.0), settings.get("width_shift", 0.0), fill_mode=fill, seed=seed + 1
            )
        )
    if settings.get("shear"):
        shear = settings["shear"]
        layers.append(keras.layers.RandomShear(x_factor=shear, y_factor=shear, fill_mode=fill, seed=seed + 2))
    if settings.get("zoom"):
        # Both factors: ImageDataGenerator zooms each axis independently.
        zoom = settings["zoom"]
        layers.append(keras.layers.RandomZoom(zoom, zoom, fill_mode=fill, seed=seed + 3))
    flips = [name for name in ("horizontal", "vertical") if settings.get(f"{name}_flip")]
    if flips:
        layers.append(keras.layers.RandomFlip("_and_".join(flips), seed=seed + 4))
    return layers


def _augment(images: Any, layers: list[keras.layers.Layer]) -> Any:
    for layer in layers:
        images = layer(images, training=True)
    return images


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    training: bool,
    seed: int = 0,
    augmentation: dict[str, Any] | None = None,
) -> Any:
    """Batches of (float32 images in 0..1, labels): shuffled and augmented when `training`."""
    augment = augmentation_layers(augmentation, seed) if training else []
    tf = _tensorflow()
    if tf is None:
        return NumpyBatches(x, y, batch_size, shuffle=training, seed=seed, augment=augment)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(
        lambda images, labels: (tf.cast(images, tf.float32) * SCALE, labels),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if augment:
        dataset = dataset.map(
            lambda images, labels: (_augment(images, augment), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


class NumpyBatches(keras.utils.PyDataset):
    """The same batches as the tf.data pipeline, for backends without TensorFlow."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        augment: list[keras.layers.Layer],
    ) -> None:
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.augment = shuffle, augment
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x)) if shuffle else np.arange(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images = self.x[rows].astype(np.float32) * np.float32(SCALE)
        if self.augment:
            images = keras.ops.convert_to_numpy(_augment(images, self.augment))
        return images, self.y[rows]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.x))
