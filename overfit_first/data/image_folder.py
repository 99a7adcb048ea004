"""Image-folder datasets: train/<class>/<image> and test/<class>/<image>, as a directory or a tar archive.

The tree may sit under one top-level folder (cifar10/train/...). An optional hierarchy.csv
(columns class,superclass) next to train/ and test/ gives superclass labels. Class ids are the sorted
class-folder names; superclass ids the sorted superclass names.

An image folder has no official order (files are grouped by class), yet `prepare` takes the FIRST
images of the training set as the validation set. So the training set is put in a fixed, seeded random
order (seed 0, after sorting by path): the first N images are then a fair sample of all classes, and the
result depends only on the files, not on the order the archive happens to list them.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from overfit_first.data import archives
from overfit_first.data.prepared import Split, file_sha256
from overfit_first.data.raw import RawData
from overfit_first.errors import PipelineError
from overfit_first.progress import bar as progress_bar

SPLIT_NAMES = ("train", "test")
HIERARCHY = "hierarchy.csv"
SHUFFLE_SEED = 0
_GRAYSCALE_MODES = {"1", "L", "LA"}


def read(path: Path) -> RawData:
    """Read an image folder: a directory, or a tar archive of one (read as a stream, never extracted)."""
    folder = _Collector(str(path))
    for name, content in _files(path):
        folder.add(name, content)
    return folder.finish()


def tree_checksum(path: Path) -> str:
    """A "sha256:" checksum of the source: the archive's bytes, or every (path, content) of a directory."""
    if path.is_file():
        return f"sha256:{file_sha256(path)}"
    digest = hashlib.sha256()
    for name, content in _directory_files(path, progress=False):
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return f"sha256:{digest.hexdigest()}"


def _files(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
        return _directory_files(path, progress=True)
    return archives.iter_files(path)


def _directory_files(root: Path, progress: bool) -> Iterator[tuple[str, bytes]]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for file in progress_bar(files, desc=root.name, unit="file", leave=False, disable=not progress):
        yield file.relative_to(root).as_posix(), file.read_bytes()


@dataclass
class _SplitImages:
    names: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)


@dataclass
class _Collector:
    """Accumulates decoded images as the files stream past, then builds the arrays in `finish`."""

    origin: str
    splits: dict[str, _SplitImages] = field(default_factory=lambda: {name: _SplitImages() for name in SPLIT_NAMES})
    hierarchy: bytes | None = None
    top: str | None = None  # the single top-level folder, if the tree sits under one
    size: tuple[int, int] | None = None  # (width, height) of the first image; all must match

    def add(self, name: str, content: bytes) -> None:
        parts = PurePosixPath(name).parts
        if any(part.startswith(".") for part in parts):
            return  # hidden files: .DS_Store, macOS "._" resource forks
        if len(parts) > 1 and parts[0] not in (*SPLIT_NAMES, HIERARCHY):
            self._set_top(parts[0])
            parts = parts[1:]
        if parts == (HIERARCHY,):
            self.hierarchy = content
        elif parts and parts[0] in SPLIT_NAMES:
            if len(parts) != 3:
                raise PipelineError(f"{self.origin}: {name} is not at <split>/<class>/<image> (train/cat/1.png)")
            split = self.splits[parts[0]]
            split.names.append(name)
            split.classes.append(parts[1])
            split.images.append(self._decode(name, content))

    def _set_top(self, folder: str) -> None:
        if self.top not in (None, folder):
            raise PipelineError(
                f"{self.origin}: two top-level folders ({self.top}, {folder}); expected train/ and test/ "
                "at the top or under a single folder"
            )
        self.top = folder

    def _decode(self, name: str, content: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(content)) as image:
                mode = "L" if image.mode in _GRAYSCALE_MODES else "RGB"
                # np.asarray decodes; convert() only when needed (it copies, and JPEGs are RGB already).
                pixels = np.asarray(image if image.mode == mode else image.convert(mode), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            reason = "not a format Pillow reads" if isinstance(error, UnidentifiedImageError) else str(error)
            raise PipelineError(f"{self.origin}: {name} is not a readable image ({reason}); remove it") from error
        height, width = pixels.shape[:2]
        if self.size is None:
            self.size = (width, height)
        elif (width, height) != self.size:
            raise PipelineError(
                f"{self.origin}: {name} is {width}x{height} but the first image is "
                f"{self.size[0]}x{self.size[1]}; resize all images to one size"
            )
        return pixels

    def finish(self) -> RawData:
        train_classes = sorted(set(self.splits["train"].classes))
        if not train_classes or not self.splits["test"].names:
            raise PipelineError(f"{self.origin}: no images under train/<class>/ and test/<class>/")
        unknown = sorted(set(self.splits["test"].classes) - set(train_classes))
        if unknown:
            raise PipelineError(f"{self.origin}: test/ has classes with no training images: {unknown}")
        grayscale = all(image.ndim == 2 for split in self.splits.values() for image in split.images)
        superclasses = _read_hierarchy(self.origin, self.hierarchy, train_classes) if self.hierarchy else None
        superclass_names = sorted(set(superclasses.values())) if superclasses else None
        built = {
            name: _build_split(split, train_classes, superclasses, superclass_names, grayscale, shuffle=name == "train")
            for name, split in self.splits.items()
        }
        return RawData(built["train"], built["test"], train_classes, superclass_names)


def _build_split(
    split: _SplitImages,
    class_names: list[str],
    superclasses: dict[str, str] | None,
    superclass_names: list[str] | None,
    grayscale: bool,
    shuffle: bool,
) -> Split:
    order = np.argsort(np.array(split.names), kind="stable")  # by path: independent of archive order
    if shuffle:
        order = order[np.random.default_rng(SHUFFLE_SEED).permutation(len(order))]
    height, width = split.images[0].shape[:2]
    x = np.empty((len(order), height, width, 1 if grayscale else 3), dtype=np.uint8)
    for row, index in enumerate(order):
        image = split.images[index]
        x[row] = image[..., np.newaxis] if image.ndim == 2 else image  # broadcasts gray into RGB too
    class_ids = {name: index for index, name in enumerate(class_names)}
    classes = [split.classes[index] for index in order]
    y = np.array([class_ids[name] for name in classes], dtype=np.int64)
    y_coarse = None
    if superclasses is not None and superclass_names is not None:
        coarse_ids = {name: index for index, name in enumerate(superclass_names)}
        y_coarse = np.array([coarse_ids[superclasses[name]] for name in classes], dtype=np.int64)
    return Split(x=x, y=y, y_coarse=y_coarse)


def _read_hierarchy(origin: str, content: bytes, class_names: list[str]) -> dict[str, str]:
    """hierarchy.csv: one row class,superclass for every class folder."""
    where = f"{origin}: {HIERARCHY}"
    try:
        rows = list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as error:
        raise PipelineError(f"{where} is not a UTF-8 CSV file ({error})") from error
    if not rows or not {"class", "superclass"} <= set(rows[0]):
        raise PipelineError(f"{where} needs a header row 'class,superclass' and one row per class")
    mapping: dict[str, str] = {}
    for row in rows:
        name, superclass = (row["class"] or "").strip(), (row["superclass"] or "").strip()
        if not superclass or name in mapping:
            raise PipelineError(f"{where}: class {name!r} is listed twice or has no superclass")
        mapping[name] = superclass
    if set(mapping) != set(class_names):
        missing, extra = sorted(set(class_names) - set(mapping)), sorted(set(mapping) - set(class_names))
        raise PipelineError(f"{where} does not match the class folders: missing {missing}, unknown {extra}")
    return mapping
