"""The input pipeline: uint8 in, float32 0..1 out; shuffling and augmentation for training batches only."""

from __future__ import annotations

import numpy as np

from overfit_first.inputs import NumpyBatches, augmentation_layers, make_dataset

AUGMENTATION = {
    "rotation_degrees": 30,
    "width_shift": 0.2,
    "height_shift": 0.2,
    "shear": 0.2,
    "zoom": 0.2,
    "horizontal_flip": True,
    "vertical_flip": True,
    "fill_mode": "nearest",
}


def images(count: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(count, 8, 8, 3), dtype=np.uint8), np.arange(count, dtype=np.int64)


def batches(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(x), np.asarray(y)) for x, y in dataset]


def test_validation_batches_are_scaled_and_in_order() -> None:
    x, y = images()
    out = batches(make_dataset(x, y, 8, training=False))
    assert [len(labels) for _, labels in out] == [8, 8, 4]
    assert out[0][0].dtype == np.float32
    np.testing.assert_allclose(np.concatenate([b for b, _ in out]), x / 255.0, rtol=1e-6)
    assert np.concatenate([labels for _, labels in out]).tolist() == y.tolist()


def test_training_batches_are_shuffled_with_the_seed() -> None:
    x, y = images()
    first = np.concatenate([labels for _, labels in batches(make_dataset(x, y, 8, training=True, seed=1))])
    again = np.concatenate([labels for _, labels in batches(make_dataset(x, y, 8, training=True, seed=1))])
    assert sorted(first.tolist()) == y.tolist() and first.tolist() != y.tolist()
    assert first.tolist() == again.tolist()


def test_augmentation_applies_to_training_only() -> None:
    x, y = images()
    assert [type(layer).__name__ for layer in augmentation_layers(AUGMENTATION, seed=0)] == [
        "RandomRotation",
        "RandomTranslation",
        "RandomShear",
        "RandomZoom",
        "RandomFlip",
    ]
    assert augmentation_layers(None, seed=0) == []
    for augmented, label in batches(make_dataset(x, y, 20, training=True, augmentation=AUGMENTATION)):
        assert augmented.shape == (20, 8, 8, 3) and 0.0 <= augmented.min() and augmented.max() <= 1.0
        assert not np.allclose(augmented, x[label] / 255.0)
    plain = batches(make_dataset(x, y, 20, training=False, augmentation=AUGMENTATION))
    np.testing.assert_allclose(plain[0][0], x / 255.0, rtol=1e-6)


def test_numpy_fallback_gives_the_same_batches() -> None:
    """The PyDataset used when TensorFlow is missing (e.g. KERAS_BACKEND=jax without TF installed)."""
    x, y = images()
    fallback = NumpyBatches(x, y, 8, shuffle=False, seed=0, augment=[])
    assert len(fallback) == 3
    reference = batches(make_dataset(x, y, 8, training=False))
    for index, (images_tf, labels_tf) in enumerate(reference):
        images_np, labels_np = fallback[index]
        np.testing.assert_allclose(images_np, images_tf, rtol=1e-6)
        assert labels_np.tolist() == labels_tf.tolist()
    shuffled = NumpyBatches(x, y, 8, shuffle=True, seed=0, augment=augmentation_layers(AUGMENTATION, seed=0))
    epoch = np.concatenate([shuffled[i][1] for i in range(len(shuffled))])
    assert sorted(epoch.tolist()) == y.tolist() and shuffled[0][0].dtype == np.float32
