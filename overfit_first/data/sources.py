"""The datasets `download` can build: the official files, their published checksums, and their parsers.

A built-in dataset is a list of `RemoteFile`s plus a parser, and possibly other published formats of the
same data (`Source.alternatives`: MNIST is published as idx files and as Keras' mnist.npz); an image-folder
dataset (params `data.image_folders`) is a local directory or archive, read in place.
Checksums are written "algorithm:hex"; a file is accepted when it matches ANY of its checksums
(several publishers, and re-compressed distribution copies, each have their own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from overfit_first.data import image_folder, parsers
from overfit_first.data.raw import RawData
from overfit_first.errors import PipelineError
from overfit_first.layout import user_path

KERAS_BASE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
# Zalando's S3 *website* endpoint serves plain HTTP only; the checksums make that safe.
FASHION_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CIFAR_BASE = "https://www.cs.toronto.edu/~kriz/"
# torchvision's MNIST.resources mirrors (torchvision/datasets/mnist.py): the idx files, as published.
MNIST_BASES = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(digit) for digit in range(10))

Parser = Callable[[Mapping[str, Path]], RawData]


@dataclass(frozen=True)
class RemoteFile:
    name: str  # the official file name; a mirror is searched for this name
    urls: tuple[str, ...]  # where it is published, tried in order
    checksums: tuple[str, ...]  # "md5:..." / "sha256:...": matching any one is enough
    system_path: str | None = None  # relative to /usr/share/datasets (Debian's dataset-* packages)
    keras_paths: tuple[str, ...] = ()  # relative to ~/.keras/datasets, where Keras' loaders cache it
    # Other places under a mirror (directory or URL) besides its top: torchvision's root/<Dataset>/raw/<name>.
    mirror_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Format:
    """One published form of a dataset: its files and the parser that reads them."""

    description: str
    files: tuple[RemoteFile, ...]
    parse: Parser


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    files: tuple[RemoteFile, ...]
    parse: Parser
    local_path: Path | None = None  # an image folder read in place (no download, no checksum)
    alternatives: tuple[Format, ...] = ()  # the same data published in other formats, tried after `files`

    def formats(self) -> tuple[Format, ...]:
        """Every published form, the preferred (`files`, `parse`) first."""
        return (Format(self.description, self.files, self.parse), *self.alternatives)


def _fashion(name: str, md5: str, sha256: str, debian_sha256: str) -> RemoteFile:
    return RemoteFile(
        name=name,
        urls=(KERAS_BASE + name, FASHION_BASE + name),
        checksums=(f"md5:{md5}", f"sha256:{sha256}", f"sha256:{debian_sha256}"),
        system_path=f"fashion-mnist/{name}",
        keras_paths=(f"fashion-mnist/{name}",),
        mirror_paths=(f"FashionMNIST/raw/{name}",),
    )


# md5: the official ones (github.com/zalandoresearch/fashion-mnist README; torchvision
# torchvision/datasets/mnist.py FashionMNIST.resources). sha256: the same official files
# (chainer chainer/datasets/fashion_mnist.py; keras-team/keras keras/src/datasets/fashion_mnist.py FILE_HASHES).
# Third sha256: Debian's package dataset-fashion-mnist 0.0~git20200523.55506a9-1 re-compressed the official
# files (same decompressed bytes, different .gz), so its copies in /usr/share/datasets/fashion-mnist/ are
# pinned by their own hashes, computed from that package.
FASHION_MNIST = Source(
    name="fashion_mnist",
    description="Fashion-MNIST (Zalando Research), official idx files",
    files=(
        _fashion(
            "train-images-idx3-ubyte.gz",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        ),
        _fashion(
            "train-labels-idx1-ubyte.gz",
            "25c81989df183df01b3e8a0aad5dffbe",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        ),
        _fashion(
            "t10k-images-idx3-ubyte.gz",
            "bef4ecab320f06d8554ea6380940ec79",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        ),
        _fashion(
            "t10k-labels-idx1-ubyte.gz",
            "bb300cfdad3c16e7a12a480ee83cd310",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        ),
    ),
    parse=partial(parsers.read_idx_dataset, class_names=FASHION_CLASSES),
)


def _mnist_idx(name: str, md5: str) -> RemoteFile:
    return RemoteFile(
        name=name,
        urls=tuple(base + name for base in MNIST_BASES),
        checksums=(f"md5:{md5}",),
        mirror_paths=(f"MNIST/raw/{name}",),
    )


# sha256 of mnist.npz: keras-team/keras keras/src/datasets/mnist.py (the file keras.datasets.mnist.load_data
# reads). md5 of the official idx files: torchvision torchvision/datasets/mnist.py (MNIST.resources).
MNIST = Source(
    name="mnist",
    description="MNIST, Keras' mnist.npz",
    files=(
        RemoteFile(
            name="mnist.npz",
            urls=(KERAS_BASE + "mnist.npz",),
            checksums=("sha256:731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",),
            keras_paths=("mnist.npz",),
        ),
    ),
    parse=partial(parsers.read_mnist_npz, class_names=MNIST_CLASSES),
    alternatives=(
        Format(
            "MNIST, official idx files",
            (
                _mnist_idx("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                _mnist_idx("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
                _mnist_idx("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
                _mnist_idx("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
            ),
            partial(parsers.read_idx_dataset, class_names=MNIST_CLASSES),
        ),
    ),
)

# md5: torchvision torchvision/datasets/cifar.py (tgz_md5; also www.cs.toronto.edu/~kriz/cifar.html).
# sha256: keras-team/keras keras/src/datasets/cifar10.py and cifar100.py (file_hash).
# Keras 3 caches the archive as "<fname>_archive", tf.keras 2 as "<fname>.tar.gz".
CIFAR10 = Source(
    name="cifar10",
    description="CIFAR-10, official python version",
    files=(
        RemoteFile(
            name="cifar-10-python.tar.gz",
            urls=(CIFAR_BASE + "cifar-10-python.tar.gz",),
            checksums=(
                "md5:c58f30108f718f92721af3b95e74349a",
                "sha256:6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            ),
            keras_paths=("cifar-10-batches-py-target_archive", "cifar-10-batches-py.tar.gz"),
        ),
    ),
    parse=parsers.read_cifar10,
)

CIFAR100 = Source(
    name="cifar100",
    description="CIFAR-100, official python version (fine labels; coarse labels as superclasses)",
    files=(
        RemoteFile(
            name="cifar-100-python.tar.gz",
            urls=(CIFAR_BASE + "cifar-100-python.tar.gz",),
            checksums=(
                "md5:eb9058c3a382ffc7106e4002c42a8d85",
                "sha256:85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
            ),
            keras_paths=("cifar-100-python-target_archive", "cifar-100-python.tar.gz"),
        ),
    ),
    parse=parsers.read_cifar100,
)

BUILTIN = {source.name: source for source in (FASHION_MNIST, MNIST, CIFAR10, CIFAR100)}


def resolve(dataset: str, image_folders: Mapping[str, str]) -> Source:
    """The source of `dataset`: a built-in name or a key of params `data.image_folders` (config.DataConfig)."""
    if dataset in BUILTIN:
        return BUILTIN[dataset]
    if dataset in image_folders:
        return _image_folder_source(dataset, image_folders[dataset])
    known = ", ".join([*BUILTIN, *image_folders])
    raise PipelineError(
        f"unknown dataset {dataset!r}: known datasets are {known} "
        "(add an image folder under data.image_folders in params.yaml)"
    )


def _image_folder_source(dataset: str, spec: str) -> Source:
    key = f"params.yaml: data.image_folders.{dataset}"
    path = user_path(spec, key)
    if not path.exists():
        raise PipelineError(
            f"{key} = {spec!r}: {path} does not exist (~ and $VARIABLES are expanded; a relative path is read "
            "from the repository root, where dvc.yaml is)"
        )
    return Source(dataset, f"image folder {spec}", (), lambda _: image_folder.read(path), local_path=path)
