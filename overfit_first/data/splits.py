"""The prepared-data contract between `prepare` and the stages that read it (train, evaluate, plot).

`data/prepared/<dataset>/` holds `train.npz`, `valid.npz`, `test.npz` and `summary.json`.
Each npz holds `x` (uint8, N x H x W x C), `y` (int64 class ids) and, when the dataset has
superclasses, `y_coarse` (int64). Pixels stay uint8 on disk (4x smaller than float32); the
scaling to 0..1 is applied on load by the input pipeline (`SCALE`).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from overfit_first import atomic
from overfit_first.errors import PipelineError

SPLITS = ("train", "valid", "test")
SCALE = 1.0 / 255.0
PREPARED_ROOT = Path("data/prepared")


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # uint8, N x H x W x C
    y: np.ndarray  # int64, N
    y_coarse: np.ndarray | None = None  # int64, N, when superclasses are known


def dataset_dir(dataset: str, root: Path = PREPARED_ROOT) -> Path:
    return root / dataset


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_split(path: Path, split: Split) -> None:
    """Write one split atomically (np.savez would otherwise leave a half-written file when killed)."""
    arrays: dict[str, np.ndarray] = {"x": split.x.astype(np.uint8, copy=False), "y": split.y.astype(np.int64)}
    if split.y_coarse is not None:
        arrays["y_coarse"] = split.y_coarse.astype(np.int64)
    with atomic.atomic_path(path) as tmp:
        with tmp.open("wb") as stream:
            np.savez(stream, **arrays)


def load_summary(directory: Path) -> dict[str, Any]:
    path = directory / "summary.json"
    if not path.is_file():
        raise PipelineError(f"{path} is missing: rebuild it with `dvc repro prepare@{directory.name}`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PipelineError(
            f"{path} is corrupt ({error}): rebuild it with `dvc repro --force prepare@{directory.name}`"
        ) from error


def load_split(directory: Path, split: str) -> Split:
    """Load one split and check it against summary.json, so stale or corrupt files fail loudly."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    summary = load_summary(directory)
    path = directory / f"{split}.npz"
    rebuild = f"rebuild it with `dvc repro --force prepare@{directory.name}`"
    if not path.is_file():
        raise PipelineError(f"{path} is missing: {rebuild}")
    try:
        with np.load(path) as data:
            x, y = data["x"], data["y"]
            y_coarse = data["y_coarse"] if "y_coarse" in data.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise PipelineError(f"{path} is corrupt or truncated ({error}): {rebuild}") from error
    expected = summary["splits"][split]
    expected_shape = (expected["count"], *summary["image_shape"])
    if x.dtype != np.uint8 or tuple(x.shape) != expected_shape or y.shape != (expected["count"],):
        raise PipelineError(
            f"{path} does not match {directory / 'summary.json'} (x {x.dtype} {tuple(x.shape)}, "
            f"expected uint8 {expected_shape}): the data is stale; {rebuild}"
        )
    if y.size and (y.min() < 0 or y.max() >= summary["num_classes"]):
        raise PipelineError(f"{path} has labels outside 0..{summary['num_classes'] - 1}: {rebuild}")
    return Split(x=x, y=y, y_coarse=y_coarse)


def stratified_subset(y: np.ndarray, size: int | None) -> np.ndarray:
    """Indices of the first `size` images (params `train.subset_size`), taken from every class in proportion.

    Deterministic and seed-free: each class contributes its first images, in dataset order, so a larger
    size only adds images. A plain first-N cut would be skewed on class-sorted data (image folders).
    """
    if size is None or size >= len(y):
        return np.arange(len(y))
    position = np.empty(len(y))
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        position[members] = np.arange(len(members)) / len(members)
    return np.sort(np.argsort(position, kind="stable")[:size])
