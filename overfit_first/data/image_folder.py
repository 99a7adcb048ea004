"""Image-folder datasets: train/<class>/<image> and test/<class>/<image>, as a directory or an archive
(.tar, .tar.gz, .tar.bz2, .tar.xz, .zip; see overfit_first.data.archives).

The tree may sit under one top-level folder (cifar10/train/...). An optional hierarchy.csv
(columns class,superclass) next to train/ and test/ gives superclass labels. Class ids are the sorted
class-folder names; superclass ids the sorted superclass names. Links are followed, to files and to
folders alike (in a directory: wherever they point; in an archive: inside the archive only). Hidden files
and what operating systems leave beside images (.DS_Store, Thumbs.db, __MACOSX/) are skipped.

Names are Unicode text in any normalization form: macOS writes `café` decomposed (NFD: e + combining acute),
Linux and most editors composed (NFC). Every path and every name in hierarchy.csv is read as its NFC form, so a
class folder and its hierarchy.csv row match however each was written, the class names written are NFC, and a
tree copied between the two gives the same data and checksum; two files whose names differ only in their form
are named in an error (macOS could not hold both).

Pixels (`pixels`): 8-bit images are read as they are; 16-bit ones (PNG, TIFF) are scaled from 0..65535 to
0..255, and floating-point ones from 0..1. Grayscale images (1, L, LA, I;16, I, F, and palette images with
a gray palette) have one channel; a dataset whose images are all grayscale stays single-channel, one that
mixes grayscale and colour images is read as RGB. Transparency is dropped, as Keras' image loader does.
Every file that cannot be used is reported in one error (up to MAX_LISTED of them, with the total).

An image folder has no official order (files are grouped by class), yet `prepare` takes the FIRST
images of the training set as the validation set. So the training set is put in a fixed, seeded random
order (seed 0, after sorting by path): the first N images are then a fair sample of all classes, and the
result depends only on the files, not on the order the archive happens to list them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from overfit_first.data import archives
from overfit_first.data.raw import RawData
from overfit_first.data.splits import Split, file_sha256
from overfit_first.errors import PipelineError
from overfit_first.progress import bar as progress_bar

SPLIT_NAMES = ("train", "test")
HIERARCHY = "hierarchy.csv"
SHUFFLE_SEED = 0
MAX_LISTED = 20  # files named in one error message; the total count is always given
_JUNK_FILES = {"Thumbs.db", "desktop.ini"}  # Windows' thumbnail cache and folder settings
_JUNK_FOLDERS = {"__MACOSX"}  # macOS' resource forks in zip archives
_SIXTEEN_BIT_MAX = 65535


def read(path: Path) -> RawData:
    """Read an image folder: a directory, or an archive of one (read as a stream, never extracted).

    Raises PipelineError naming `path` and the files at fault: unreadable or odd-sized images, images
    outside <split>/<class>/, empty class folders, broken links or link loops.
    """
    folder = _Collector(str(path))
    if path.is_dir():
        files, problems = _walk(path)
        folder.problems.extend(problems)
        for name, file in progress_bar(files, desc=path.name, unit="file", leave=False):
            if file is None:
                folder.add(name, None)
                continue
            try:
                content = file.read_bytes()
            except OSError as error:
                folder.problems.append((name, f"cannot be read ({error.strerror}); fix its permissions or remove it"))
                continue
            folder.add(name, content)
    else:
        for name, content in archives.iter_entries(path):
            folder.add(name, content)
    return folder.finish()


def tree_checksum(path: Path) -> str:
    """A "sha256:" checksum of the source: the archive's bytes, or every folder and (path, content) of a
    directory, links followed (an unreadable file counts by its error, so the checksum never fails)."""
    if path.is_file():
        return f"sha256:{file_sha256(path)}"
    digest = hashlib.sha256()
    files, problems = _walk(path)
    for written, file in files:
        name = _text(written)
        if file is None:
            digest.update(f"{name}/\0".encode())
            continue
        try:
            content = file.read_bytes()
        except OSError as error:
            content = f"unreadable: {error.strerror}".encode()
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    for name, reason in problems:
        digest.update(f"{_text(name)}\0{reason}\0".encode())
    return f"sha256:{digest.hexdigest()}"


def _text(name: str) -> str:
    """`name` as NFC: the one form class names are compared and written in (module docstring)."""
    return unicodedata.normalize("NFC", name)


def _skipped(name: str) -> bool:
    return name.startswith(".") or name in _JUNK_FILES or name in _JUNK_FOLDERS


def _walk(root: Path) -> tuple[list[tuple[str, Path | None]], list[tuple[str, str]]]:
    """Every folder (path None) and file under `root` in path order (of the NFC names), as (POSIX path relative to
    root, path), following links to files and folders; and the problems met: broken links, link loops, special
    files."""
    found: list[tuple[str, Path | None]] = []
    problems: list[tuple[str, str]] = []

    def visit(directory: Path, relative: str, above: frozenset[tuple[int, int]]) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: (_text(entry.name), entry.name))
        except OSError as error:
            problems.append((relative or ".", f"cannot be listed ({error.strerror})"))
            return
        for entry in entries:
            if _skipped(entry.name):
                continue
            name = f"{relative}/{entry.name}" if relative else entry.name
            try:
                info = entry.stat()  # follows links, to folders elsewhere too
            except OSError as error:
                reason = (
                    f"is a broken link to {os.readlink(entry.path)}; fix or remove the link"
                    if entry.is_symlink()
                    else f"cannot be read ({error.strerror}); fix its permissions or remove it"
                )
                problems.append((name, reason))
                continue
            if entry.is_dir():
                key = (info.st_dev, info.st_ino)
                if key in above:
                    problems.append((name, "is a link back to a folder that contains it (a loop); remove the link"))
                    continue
                found.append((name, None))
                visit(Path(entry.path), name, above | {key})
            elif entry.is_file():
                found.append((name, Path(entry.path)))
            else:
                problems.append((name, "is not a file (a device, socket or FIFO); remove it"))

    start = root.stat()
    visit(root, "", frozenset({(start.st_dev, start.st_ino)}))
    return found, problems


def pixels(image: Image.Image) -> np.ndarray:
    """The image as uint8: H x W for grayscale modes, H x W x 3 (RGB) for colour ones.

    Scaling: 16-bit modes (I;16*) and mode I (32-bit integers, as Pillow opens some 16-bit files) from
    0..65535; mode F (32-bit floats) from 0..1. Raises ValueError when the values lie outside that range,
    or the mode has no conversion to RGB.
    """
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > _SIXTEEN_BIT_MAX):
            raise ValueError(
                f"its integer pixels span {values.min()}..{values.max()}, outside the 16-bit range 0..65535; "
                "save it as an 8- or 16-bit image"
            )
        return ((values * 255 + _SIXTEEN_BIT_MAX // 2) // _SIXTEEN_BIT_MAX).astype(np.uint8)  # rounded
    if mode == "F":
        values = np.asarray(image)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise ValueError(
                f"its floating-point pixels span {np.nanmin(values)}..{np.nanmax(values)}, not 0..1; "
                "save it as an 8- or 16-bit image"
            )
        return np.rint(values * 255).astype(np.uint8)
    if mode in ("1", "L"):
        return np.asarray(image if mode == "L" else image.convert("L"))
    if mode in ("LA", "La"):
        return np.asarray(image if mode == "LA" else image.convert("LA"))[..., 0]
    # np.asarray decodes; convert() only when needed (it copies, and JPEGs are RGB already).
    rgb = np.asarray(image if mode == "RGB" else _lab_to_srgb(image) if mode == "LAB" else image.convert("RGB"))
    if mode in ("P", "PA") and (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0]  # a palette of grays: a grayscale image
    return rgb


def _lab_to_srgb(image: Image.Image) -> Image.Image:
    """CIE L*a*b* to sRGB through LittleCMS (Pillow's convert() has no LAB conversion)."""
    return ImageCms.applyTransform(image, _lab_transform())


@cache
def _lab_transform() -> ImageCms.ImageCmsTransform:
    return ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")


@dataclass
class _SplitImages:
    names: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    folders: set[str] = field(default_factory=set)  # class folders seen, with images or without


@dataclass
class _Collector:
    """Accumulates decoded images as the files stream past, then checks them and builds the arrays in `finish`.

    A problem with one file is recorded, not raised, so that one error can name every file at fault.
    """

    origin: str
    splits: dict[str, _SplitImages] = field(default_factory=lambda: {name: _SplitImages() for name in SPLIT_NAMES})
    hierarchy: bytes | None = None
    top: str | None = None  # the single top-level folder, if the tree sits under one
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, what is wrong and the fix)
    folders: list[tuple[str, ...]] = field(default_factory=list)  # every folder's path parts
    files: dict[str, str] = field(default_factory=dict)  # each file's path in NFC -> as the tree wrote it

    def add(self, name: str, content: bytes | None) -> None:
        """One file (`content` its bytes) or folder (`content` None) of the tree, by its POSIX path (any form)."""
        written, name = name, _text(name)
        if content is not None and self.files.setdefault(name, written) != written:
            self.problems.append(
                (name, "is there twice, its name written in two Unicode normalization forms (NFC, NFD); remove one")
            )
            return
        parts = PurePosixPath(name).parts
        if any(_skipped(part) for part in parts):
            return
        if content is None:
            self.folders.append(parts)  # judged in `finish`, once the top-level folder is known
            return
        if len(parts) > 1 and parts[0] not in (*SPLIT_NAMES, HIERARCHY):
            self._set_top(parts[0])
            parts = parts[1:]
        if parts == (HIERARCHY,):
            self.hierarchy = content
        elif parts and parts[0] in SPLIT_NAMES:
            if len(parts) != 3:
                self.problems.append((name, "is not at <split>/<class>/<image> (train/cat/1.png); move or remove it"))
                return
            split = self.splits[parts[0]]
            split.folders.add(parts[1])
            decoded = self._decode(name, content)
            if decoded is not None:
                split.names.append(name)
                split.classes.append(parts[1])
                split.images.append(decoded)

    def _set_top(self, folder: str) -> None:
        if self.top not in (None, folder):
            raise PipelineError(
                f"{self.origin}: two top-level folders ({self.top}, {folder}); expected train/ and test/ "
                "at the top or under a single folder"
            )
        self.top = folder

    def _decode(self, name: str, content: bytes) -> np.ndarray | None:
        try:
            with Image.open(io.BytesIO(content)) as image:
                return pixels(image)
        except UnidentifiedImageError:
            reason = "not a format Pillow reads"
        except (OSError, ValueError, Image.DecompressionBombError, ImageCms.PyCMSError) as error:
            reason = str(error) or type(error).__name__
        self.problems.append((name, f"is not a readable image ({reason}); remove it"))
        return None

    def finish(self) -> RawData:
        self._check_sizes()
        for parts in self.folders:
            inside = parts[1:] if self.top is not None and parts[0] == self.top else parts
            if len(inside) == 2 and inside[0] in SPLIT_NAMES:
                self.splits[inside[0]].folders.add(inside[1])
        top = f"{self.top}/" if self.top else ""
        for split_name, split in self.splits.items():
            self.problems.extend(
                (f"{top}{split_name}/{folder}/", "is a class folder without images; add images or remove it")
                for folder in sorted(split.folders - set(split.classes))
            )
        if self.problems:
            raise PipelineError(self._report())
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

    def _check_sizes(self) -> None:
        """Every image must have the size most of them have; the others are named."""
        sizes = Counter(image.shape[:2] for split in self.splits.values() for image in split.images)
        if len(sizes) < 2:
            return
        (height, width), _ = sizes.most_common(1)[0]
        for split in self.splits.values():
            for name, image in zip(split.names, split.images, strict=True):
                if image.shape[:2] != (height, width):
                    size = f"{image.shape[1]}x{image.shape[0]}"
                    reason = f"is {size} but most images are {width}x{height}; resize all images to one size"
                    self.problems.append((name, reason))

    def _report(self) -> str:
        problems = sorted(self.problems)
        if len(problems) == 1:
            return f"{self.origin}: {problems[0][0]} {problems[0][1]}"
        listed = "\n".join(f"  {name} {reason}" for name, reason in problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        return f"{self.origin}: {len(problems)} files cannot be used:\n{listed}{more}"


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
        name, superclass = _text((row["class"] or "").strip()), _text((row["superclass"] or "").strip())
        if not superclass or name in mapping:
            raise PipelineError(f"{where}: class {name!r} is listed twice or has no superclass")
        mapping[name] = superclass
    if set(mapping) != set(class_names):
        missing, extra = sorted(set(class_names) - set(mapping)), sorted(set(mapping) - set(class_names))
        raise PipelineError(f"{where} does not match the class folders: missing {missing}, unknown {extra}")
    return mapping
