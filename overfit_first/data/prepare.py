"""The `prepare` stage's work: official splits -> train / valid / test, as the article does it.

Validation = the FIRST `valid_size` images of the official training set, training = the rest (optionally
capped by a seeded, stratified sample that keeps the original order), test = the official test set.
Images smaller than `pad_to` (28x28 Fashion-MNIST) are zero-padded, centred, so the 32x32 architectures
apply unchanged. Pixels stay uint8 throughout: no float copy of a dataset is ever made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from overfit_first import atomic
from overfit_first.config import PrepareConfig
from overfit_first.data import raw
from overfit_first.data.splits import PREPARED_ROOT, SCALE, SPLITS, Split, file_sha256, save_split
from overfit_first.errors import PipelineError

SCALE_NOTE = f"x is uint8 0..255; multiply by {SCALE!r} (overfit_first.data.splits.SCALE) when loading"


def check(settings: PrepareConfig, data: raw.RawData, dataset: str) -> None:
    """The checks that depend on the data: sizes against the training set and the images."""
    train_size, num_classes = len(data.train.y), len(data.class_names)
    height, width = data.train.x.shape[1:3]
    if not 1 <= settings.valid_size < train_size:
        raise PipelineError(
            f"params.yaml: prepare.valid_size = {settings.valid_size}: must be at least 1 and below the "
            f"{train_size} training images of {dataset}"
        )
    if settings.sample_size is not None and settings.sample_size < num_classes:
        raise PipelineError(
            f"params.yaml: prepare.sample_size = {settings.sample_size}: must be null or at least the "
            f"{num_classes} classes of {dataset} (one image per class)"
        )
    if settings.pad_to is not None and settings.pad_to < max(height, width):
        raise PipelineError(
            f"params.yaml: prepare.pad_to = {settings.pad_to}: smaller than the {height}x{width} images of "
            f"{dataset}; use null or at least {max(height, width)}"
        )


def prepare(
    dataset: str, settings: PrepareConfig, raw_root: Path = raw.RAW_ROOT, root: Path = PREPARED_ROOT
) -> dict[str, Any]:
    """Write `root/<dataset>/` (three npz files and summary.json) atomically; return the summary."""
    data, meta = raw.load(raw_root / dataset)
    check(settings, data, dataset)
    num_classes = len(data.class_names)
    valid = _take(data.train, slice(0, settings.valid_size))
    train = _take(data.train, slice(settings.valid_size, None))
    if settings.sample_size is not None and settings.sample_size < len(train.y):
        train = _take(train, stratified_sample(train.y, settings.sample_size, num_classes, settings.sample_seed))
    splits = {name: pad(split, settings.pad_to) for name, split in zip(SPLITS, (train, valid, data.test), strict=True)}
    summary = {
        "dataset": dataset,
        "image_shape": list(splits["train"].x.shape[1:]),
        "num_classes": num_classes,
        "class_names": data.class_names,
        "superclass_names": data.superclass_names,
        "source": meta.get("source"),
        "settings": settings.model_dump(),
        "scale": SCALE_NOTE,
        "splits": {},
    }
    with atomic.atomic_path(root / dataset) as tmp:
        tmp.mkdir()
        for name, split in splits.items():
            save_split(tmp / f"{name}.npz", split)
            summary["splits"][name] = {
                "count": len(split.y),
                "class_counts": np.bincount(split.y, minlength=num_classes).tolist(),
                "sha256": file_sha256(tmp / f"{name}.npz"),
            }
        atomic.write_json(tmp / "summary.json", summary)
    return summary


def _take(split: Split, index: slice | np.ndarray) -> Split:
    """Rows of a split; a slice gives views (no copy of the images)."""
    coarse = None if split.y_coarse is None else split.y_coarse[index]
    return Split(x=split.x[index], y=split.y[index], y_coarse=coarse)


def stratified_sample(y: np.ndarray, size: int, num_classes: int, seed: int) -> np.ndarray:
    """Sorted indices of `size` rows whose class proportions follow `y`'s (every present class kept).

    Quotas: one row per present class, the rest shared in proportion to what each class has left,
    largest remainders first. Rows are drawn at random within each class; sorting keeps the original order.
    """
    counts = np.bincount(y, minlength=num_classes)
    base = (counts > 0).astype(np.int64)
    spare = counts - base
    exact = spare * (size - base.sum()) / spare.sum()
    quotas = base + np.floor(exact).astype(np.int64)
    leftover = size - quotas.sum()
    quotas[np.argsort(-(exact - np.floor(exact)), kind="stable")[:leftover]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(y == label), quota, replace=False) for label, quota in enumerate(quotas)]
    return np.sort(np.concatenate(chosen))


def pad(split: Split, size: int | None) -> Split:
    """Zero-pad images to size x size, centred (28 -> 32 adds 2 pixels on each side)."""
    height, width = split.x.shape[1:3]
    if size is None or (height, width) == (size, size):
        return split
    top, left = (size - height) // 2, (size - width) // 2
    widths = ((0, 0), (top, size - height - top), (left, size - width - left), (0, 0))
    return Split(x=np.pad(split.x, widths), y=split.y, y_coarse=split.y_coarse)
