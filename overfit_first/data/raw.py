"""The raw-data contract between `download` and `prepare`.

`data/raw/<dataset>/` holds `train.npz` and `test.npz` (the official splits, same array layout as the
prepared files: x uint8 N x H x W x C, y int64, optional y_coarse int64) and `meta.json`
{dataset, source, class_names, superclass_names, files: [{name, checksum, origin}]}.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from overfit_first import atomic
from overfit_first.data.splits import Split, save_split
from overfit_first.errors import PipelineError

RAW_ROOT = Path("data/raw")
RAW_SPLITS = ("train", "test")


@dataclass(frozen=True)
class RawData:
    train: Split
    test: Split
    class_names: list[str]
    superclass_names: list[str] | None = None


def check(data: RawData, origin: str) -> None:
    """Reject data a parser got wrong before anything is written (labels in range, matching shapes), and
    data no classifier can learn from: fewer than two classes in the training split."""
    present = np.unique(data.train.y)
    if len(data.class_names) < 2 or present.size < 2:
        names = [data.class_names[label] for label in present if 0 <= label < len(data.class_names)]
        raise PipelineError(
            f"{origin}: the training split holds {present.size} class(es) {names}; a classifier needs at least "
            "two. Check that the source holds every class (for an image folder: one folder per class under "
            "train/, links to folders count)"
        )
    image_shape = data.train.x.shape[1:]
    for name, split in (("train", data.train), ("test", data.test)):
        where = f"{origin} ({name} split)"
        if split.x.dtype != np.uint8 or split.x.ndim != 4 or split.x.shape[1:] != image_shape:
            raise PipelineError(f"{where}: images must be uint8 N x H x W x C like train, got {split.x.shape}")
        if split.y.shape != (len(split.x),):
            raise PipelineError(f"{where}: {len(split.x)} images but {len(split.y)} labels")
        _check_labels(where, "labels", split.y, len(data.class_names))
        if (split.y_coarse is None) != (data.superclass_names is None):
            raise PipelineError(f"{where}: superclass labels and superclass names must come together")
        if split.y_coarse is not None and data.superclass_names is not None:
            _check_labels(where, "superclass labels", split.y_coarse, len(data.superclass_names))


def _check_labels(where: str, what: str, labels: np.ndarray, count: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= count):
        raise PipelineError(f"{where}: {what} outside 0..{count - 1} ({count} names)")


def write(directory: Path, data: RawData, meta: dict[str, Any]) -> None:
    """Write the directory atomically: a crash leaves the previous version or nothing, never a mix."""
    with atomic.atomic_path(directory) as tmp:
        tmp.mkdir()
        save_split(tmp / "train.npz", data.train)
        save_split(tmp / "test.npz", data.test)
        atomic.write_json(tmp / "meta.json", meta)


def load(directory: Path) -> tuple[RawData, dict[str, Any]]:
    rebuild = f"rebuild it with `dvc repro --force download@{directory.name}`"
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise PipelineError(f"{meta_path} is missing: run `dvc repro download@{directory.name}` first")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        train, test = (_load_split(directory / f"{name}.npz") for name in RAW_SPLITS)
        data = RawData(train, test, list(meta["class_names"]), meta.get("superclass_names"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise PipelineError(f"{directory} is incomplete or corrupt ({error!r}): {rebuild}") from error
    check(data, str(directory))
    return data, meta


def _load_split(path: Path) -> Split:
    with np.load(path) as arrays:
        y_coarse = arrays["y_coarse"] if "y_coarse" in arrays.files else None
        return Split(x=arrays["x"], y=arrays["y"], y_coarse=y_coarse)
