"""Parsers of the official file formats into `RawData` (uint8 N x H x W x C images, int64 labels).

Pure functions of the files they are given: no download, no writing. Malformed input raises a
PipelineError naming the file, so a corrupt cache or a wrong mirror is obvious.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from overfit_first.data import archives
from overfit_first.data.raw import RawData
from overfit_first.data.splits import Split
from overfit_first.errors import PipelineError

_IDX_UBYTE = 0x08  # the only idx element type the MNIST family uses

# ---------------------------------------------------------------- idx (MNIST, Fashion-MNIST)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """One gzip-compressed idx file: magic 0x0000 08 <ndim>, ndim big-endian uint32 sizes, then the bytes."""
    try:
        with gzip.open(path, "rb") as stream:
            content = stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise PipelineError(f"{path} is not a valid gzip file or is truncated ({error}); delete it") from error
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise PipelineError(f"{path} is truncated: {len(content)} bytes, shorter than the idx header")
    zero, element_type, dims = struct.unpack(">HBB", content[:4])
    if zero != 0 or element_type != _IDX_UBYTE or dims != ndim:
        raise PipelineError(
            f"{path} is not an idx file of {ndim}-D unsigned bytes (magic {content[:4].hex()}, "
            f"expected 0000080{ndim}); is it the right file?"
        )
    shape = struct.unpack(f">{ndim}I", content[4:header_size])
    expected = int(np.prod(shape))
    if len(content) - header_size != expected:
        raise PipelineError(
            f"{path} is truncated or padded: {len(content) - header_size} data bytes, "
            f"the header announces {'x'.join(map(str, shape))} = {expected}"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


def read_idx_pair(images: Path, labels: Path) -> Split:
    x = read_idx(images, ndim=3)
    y = read_idx(labels, ndim=1)
    if len(x) != len(y):
        raise PipelineError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels")
    return Split(x=x[..., np.newaxis], y=y.astype(np.int64))


def read_idx_dataset(paths: Mapping[str, Path], class_names: Sequence[str]) -> RawData:
    """The four files of MNIST-style datasets, by their official names."""
    train = read_idx_pair(paths["train-images-idx3-ubyte.gz"], paths["train-labels-idx1-ubyte.gz"])
    test = read_idx_pair(paths["t10k-images-idx3-ubyte.gz"], paths["t10k-labels-idx1-ubyte.gz"])
    return RawData(train=train, test=test, class_names=list(class_names))


# ---------------------------------------------------------------- Keras' mnist.npz


def read_mnist_npz(paths: Mapping[str, Path], class_names: Sequence[str]) -> RawData:
    path = paths["mnist.npz"]
    try:
        with np.load(path, allow_pickle=False) as arrays:
            splits = [
                Split(x=arrays[f"x_{name}"][..., np.newaxis], y=arrays[f"y_{name}"].astype(np.int64))
                for name in ("train", "test")
            ]
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise PipelineError(
            f"{path} is not Keras' mnist.npz (x_train, y_train, x_test, y_test) or is corrupt ({error!r})"
        ) from error
    for split in splits:
        if split.x.dtype != np.uint8 or split.x.ndim != 4:
            raise PipelineError(f"{path}: expected uint8 N x 28 x 28 images, got {split.x.dtype} {split.x.shape}")
    return RawData(train=splits[0], test=splits[1], class_names=list(class_names))


# ---------------------------------------------------------------- CIFAR python archives


# The only globals a pickled numpy array needs; the array-rebuilding function under its numpy 1 and 2 names.
_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a tampered pickle cannot run code.

    Defence in depth: the archives are unpickled only after their published checksum has verified.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}") from None


def _unpickle(archive: Path, member: str, content: bytes) -> dict[str, Any]:
    try:
        # latin1: the CIFAR pickles were written by Python 2 (numpy's documented setting for those).
        batch = _NumpyOnlyUnpickler(io.BytesIO(content), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise PipelineError(f"{archive}: member {member} is not a CIFAR batch ({error})") from error
    if not isinstance(batch, dict):
        raise PipelineError(f"{archive}: member {member} is not a CIFAR batch (a dict)")
    return batch


def _read_cifar_members(archive: Path, folder: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Unpickle the members `folder/<name>` of a CIFAR archive, streamed (no extraction to disk).

    The caller must have verified the archive's checksum: these members are pickles.
    """
    wanted = {f"{folder}/{name}" for name in names}
    batches = {
        PurePosixPath(member).name: _unpickle(archive, member, content)
        for member, content in archives.iter_files(archive, wanted=wanted.__contains__)
    }
    missing = sorted(set(names) - set(batches))
    if missing:
        raise PipelineError(f"{archive} lacks {folder}/{missing[0]}: not the official CIFAR python archive")
    return batches


def _cifar_split(archive: Path, batches: Sequence[dict[str, Any]], label_key: str, coarse: bool) -> Split:
    try:
        data = np.concatenate([np.asarray(batch["data"], dtype=np.uint8) for batch in batches])
        y = np.concatenate([np.asarray(batch[label_key], dtype=np.int64) for batch in batches])
        y_coarse = np.concatenate([np.asarray(b["coarse_labels"], dtype=np.int64) for b in batches]) if coarse else None
    except KeyError as error:
        raise PipelineError(f"{archive}: a batch lacks the key {error}: not the official CIFAR archive") from error
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(y) != len(data):
        raise PipelineError(f"{archive}: batches hold {data.shape} pixels for {len(y)} labels, expected N x 3072")
    # Rows are 1024 red, 1024 green, 1024 blue values: N,3,32,32 -> channels-last N,32,32,3.
    x = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return Split(x=x, y=y, y_coarse=y_coarse)


def read_cifar10(paths: Mapping[str, Path]) -> RawData:
    """CIFAR-10 python archive: data_batch_1..5 (training, in order), test_batch, batches.meta.

    Unpickles members: call it only on an archive whose checksum has verified.
    """
    archive = paths["cifar-10-python.tar.gz"]
    train_names = [f"data_batch_{index}" for index in range(1, 6)]
    batches = _read_cifar_members(archive, "cifar-10-batches-py", [*train_names, "test_batch", "batches.meta"])
    train = _cifar_split(archive, [batches[name] for name in train_names], "labels", coarse=False)
    test = _cifar_split(archive, [batches["test_batch"]], "labels", coarse=False)
    return RawData(train=train, test=test, class_names=_names(archive, batches["batches.meta"], "label_names"))


def read_cifar100(paths: Mapping[str, Path]) -> RawData:
    """CIFAR-100 python archive: train, test (fine_labels and coarse_labels), meta (their names).

    Unpickles members: call it only on an archive whose checksum has verified.
    """
    archive = paths["cifar-100-python.tar.gz"]
    batches = _read_cifar_members(archive, "cifar-100-python", ["train", "test", "meta"])
    return RawData(
        train=_cifar_split(archive, [batches["train"]], "fine_labels", coarse=True),
        test=_cifar_split(archive, [batches["test"]], "fine_labels", coarse=True),
        class_names=_names(archive, batches["meta"], "fine_label_names"),
        superclass_names=_names(archive, batches["meta"], "coarse_label_names"),
    )


def _names(archive: Path, meta: dict[str, Any], key: str) -> list[str]:
    names = meta.get(key)
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise PipelineError(f"{archive}: its meta file lacks the list {key!r}: not the official CIFAR archive")
    return names
