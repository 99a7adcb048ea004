"""The format parsers and the archive member checks, on tiny files in the official formats."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from overfit_first.data import archives, parsers
from overfit_first.errors import PipelineError

from data_fixtures import (
    FASHION_FILES,
    cifar10_archive,
    cifar100_archive,
    idx_dataset,
    mnist_npz,
    tar_with_bad_member,
    to_nhwc,
    write_idx,
)

NAMES = [str(index) for index in range(10)]


def test_idx_dataset_reads_images_with_a_channel_axis_and_int64_labels(tmp_path: Path) -> None:
    arrays = idx_dataset(tmp_path)
    data = parsers.read_idx_dataset({name: tmp_path / name for name in FASHION_FILES}, NAMES)
    assert data.train.x.shape == (40, 28, 28, 1) and data.train.x.dtype == np.uint8
    assert data.train.y.dtype == np.int64
    np.testing.assert_array_equal(data.train.x[..., 0], arrays["x_train"])
    np.testing.assert_array_equal(data.test.y, arrays["y_test"])
    assert data.class_names == NAMES and data.superclass_names is None


def test_idx_with_a_wrong_magic_number_names_the_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels.gz", np.zeros((3, 2, 2), np.uint8))  # 3-D where 1-D is expected
    with pytest.raises(PipelineError, match=r"labels\.gz is not an idx file of 1-D"):
        parsers.read_idx(path, ndim=1)


def test_idx_shorter_than_its_header_announces_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "images.gz"
    write_idx(path, np.zeros((5, 28, 28), np.uint8))
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(PipelineError, match=r"images\.gz is truncated"):
        parsers.read_idx(path, ndim=3)


def test_truncated_gzip_stream_names_the_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "images.gz", np.arange(5 * 28 * 28).reshape(5, 28, 28).astype(np.uint8))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(PipelineError, match=r"images\.gz is not a valid gzip file or is truncated"):
        parsers.read_idx(path, ndim=3)


def test_idx_images_and_labels_must_agree_in_count(tmp_path: Path) -> None:
    images = write_idx(tmp_path / "i.gz", np.zeros((4, 28, 28), np.uint8))
    labels = write_idx(tmp_path / "l.gz", np.zeros(3, np.uint8))
    with pytest.raises(PipelineError, match=r"holds 4 images but .* holds 3 labels"):
        parsers.read_idx_pair(images, labels)


def test_keras_mnist_npz(tmp_path: Path) -> None:
    arrays = mnist_npz(tmp_path / "mnist.npz")
    data = parsers.read_mnist_npz({"mnist.npz": tmp_path / "mnist.npz"}, NAMES)
    np.testing.assert_array_equal(data.train.x[..., 0], arrays["x_train"])
    np.testing.assert_array_equal(data.test.y, arrays["y_test"].astype(np.int64))


def test_npz_without_the_keras_keys_is_rejected(tmp_path: Path) -> None:
    np.savez(tmp_path / "mnist.npz", images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(PipelineError, match=r"is not Keras' mnist\.npz"):
        parsers.read_mnist_npz({"mnist.npz": tmp_path / "mnist.npz"}, NAMES)


def test_cifar10_batches_in_order_and_channels_last(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    made = cifar10_archive(archive)
    data = parsers.read_cifar10({"cifar-10-python.tar.gz": archive})
    expected = to_nhwc(np.concatenate([batch["data"] for batch in made["train"]]))
    np.testing.assert_array_equal(data.train.x, expected)
    assert data.train.x.shape == (20, 32, 32, 3) and data.train.x.flags.c_contiguous
    assert data.train.y.tolist() == [label for batch in made["train"] for label in batch["labels"]]
    np.testing.assert_array_equal(data.test.x, to_nhwc(made["test"]["data"]))
    assert data.class_names == made["names"] and data.train.y_coarse is None


def test_cifar100_fine_and_coarse_labels_and_names(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-100-python.tar.gz"
    made = cifar100_archive(archive)
    data = parsers.read_cifar100({"cifar-100-python.tar.gz": archive})
    np.testing.assert_array_equal(data.train.x, to_nhwc(made["train"]["data"]))
    assert data.train.y.tolist() == made["train"]["fine_labels"]
    assert data.test.y_coarse is not None and data.test.y_coarse.tolist() == made["test"]["coarse_labels"]
    assert data.class_names == made["fine_names"] and data.superclass_names == made["coarse_names"]


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.marker,))


def test_a_cifar_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-100-python.tar.gz"
    marker = tmp_path / "pwned"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("train", "test", "meta"):
            content = pickle.dumps({"data": _RunsCode(str(marker))})
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    refused = r"cifar-100-python/\w+ is not a CIFAR batch .*refusing to unpickle posix\.mkdir"
    with pytest.raises(PipelineError, match=refused):
        parsers.read_cifar100({"cifar-100-python.tar.gz": archive})
    assert not marker.exists()


def test_cifar_archive_missing_a_batch_is_not_official(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        content = pickle.dumps({"label_names": NAMES})
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    with pytest.raises(PipelineError, match="lacks cifar-10-batches-py/data_batch_1"):
        parsers.read_cifar10({"cifar-10-python.tar.gz": archive})


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("dotdot", "'..' in its path"),
        ("absolute", "absolute path"),
        ("symlink", "link to '../../etc/passwd' outside the archive"),
        ("hardlink", "link to '/etc/passwd' outside the archive"),
        ("device", "device or FIFO"),
    ],
)
def test_hostile_tar_members_are_refused_naming_archive_and_member(tmp_path: Path, kind: str, reason: str) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    member = tar_with_bad_member(archive, kind)
    with pytest.raises(PipelineError) as raised:
        parsers.read_cifar10({"cifar-10-python.tar.gz": archive})
    assert str(archive) in str(raised.value) and repr(member) in str(raised.value) and reason in str(raised.value)


def test_links_that_stay_inside_the_archive_are_safe() -> None:
    inside = tarfile.TarInfo("data/train/cat/link.png")
    inside.type, inside.linkname = tarfile.SYMTYPE, "../dog/1.png"
    assert archives.unsafe_reason(inside) is None
    hard = tarfile.TarInfo("data/b")
    hard.type, hard.linkname = tarfile.LNKTYPE, "data/a"
    assert archives.unsafe_reason(hard) is None


def test_a_truncated_archive_is_reported_not_half_read(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    cifar10_archive(archive)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(PipelineError, match="is not a readable tar archive or is truncated"):
        parsers.read_cifar10({"cifar-10-python.tar.gz": archive})
