"""Builders of tiny datasets in the exact official formats, a real HTTP server, and stage runners.

Used by the data-layer tests (test_parsers, test_download, test_image_folder, test_prepare).
Nothing here touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import pickle
import struct
import subprocess
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO, run_stage, stage_env

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- idx and npz (MNIST family)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An idx file as published: magic 0x0000 08 <ndim>, big-endian sizes, bytes; gzip-compressed."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
    return path


def idx_dataset(directory: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """The four official Fashion-MNIST/MNIST files with random 28x28 images; every class present."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8)[rng.permutation(n_train)],
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, key in zip(FASHION_FILES, ("x_train", "y_train", "x_test", "y_test"), strict=True):
        write_idx(directory / name, arrays[key])
    return arrays


def mnist_npz(path: Path, n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Keras' mnist.npz layout: x_train, y_train, x_test, y_test (uint8)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    np.savez(path, **arrays)
    return arrays


# ---------------------------------------------------------------- CIFAR python archives


def _add_bytes(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    tar.addfile(info, io.BytesIO(content))


class _Py2Array:
    """Pickles as Python 2 numpy wrote arrays: the raw bytes as a str (read back with encoding="latin1")."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __reduce__(self) -> tuple:
        reconstruct = np.ndarray((0,)).__reduce__()[0]
        state = (1, self.array.shape, self.array.dtype, False, self.array.tobytes().decode("latin1"))
        return (reconstruct, (np.ndarray, (0,), "b"), state)


def py2_pickle(batch: dict) -> bytes:
    """A pickle like the official CIFAR files: protocol 2, Python 2 strings, numpy 1 module names."""
    wrapped = {key: _Py2Array(value) if isinstance(value, np.ndarray) else value for key, value in batch.items()}
    return pickle.dumps(wrapped, protocol=2).replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def _batch(rng: np.random.Generator, count: int, **labels: list[int]) -> dict:
    # Rows of 3072 bytes, channel-major (1024 R, 1024 G, 1024 B), as the official batches.
    return {"batch_label": "tiny", "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8), **labels}


def cifar10_archive(path: Path, per_batch: int = 4, n_test: int = 5, seed: int = 0) -> dict:
    """cifar-10-python.tar.gz: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}."""
    rng = np.random.default_rng(seed)
    batches = [_batch(rng, per_batch, labels=rng.integers(0, 10, per_batch).tolist()) for _ in range(5)]
    test = _batch(rng, n_test, labels=rng.integers(0, 10, n_test).tolist())
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with tarfile.open(path, "w:gz") as tar:
        for index, batch in enumerate(batches, start=1):
            _add_bytes(tar, f"cifar-10-batches-py/data_batch_{index}", py2_pickle(batch))
        _add_bytes(tar, "cifar-10-batches-py/test_batch", py2_pickle(test))
        meta = {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}
        _add_bytes(tar, "cifar-10-batches-py/batches.meta", py2_pickle(meta))
    return {"train": batches, "test": test, "names": names}


def cifar100_archive(path: Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> dict:
    """cifar-100-python.tar.gz: cifar-100-python/{train, test, meta} with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    fine_names = [f"fine{index}" for index in range(100)]
    coarse_names = [f"coarse{index}" for index in range(20)]

    def split(count: int) -> dict:
        fine = rng.integers(0, 100, count)
        return _batch(rng, count, fine_labels=fine.tolist(), coarse_labels=(fine // 5).tolist())

    train, test = split(n_train), split(n_test)
    with tarfile.open(path, "w:gz") as tar:
        _add_bytes(tar, "cifar-100-python/train", py2_pickle(train))
        _add_bytes(tar, "cifar-100-python/test", py2_pickle(test))
        meta = {"fine_label_names": fine_names, "coarse_label_names": coarse_names}
        _add_bytes(tar, "cifar-100-python/meta", py2_pickle(meta))
    return {"train": train, "test": test, "fine_names": fine_names, "coarse_names": coarse_names}


def to_nhwc(rows: np.ndarray) -> np.ndarray:
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


# ---------------------------------------------------------------- image folders


def image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "frog"),
    n_train: int = 4,
    n_test: int = 2,
    size: tuple[int, int] = (6, 5),
    mode: str = "RGB",
    top: str | None = "tiny",
    hierarchy: dict[str, str] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """train/<class>/NNN.png and test/<class>/NNN.png (PNG: lossless, so pixels can be compared).

    Returns the pixels by relative path (split/class/file).
    """
    rng = np.random.default_rng(seed)
    base = root / top if top else root
    pixels: dict[str, np.ndarray] = {}
    channels = (3,) if mode == "RGB" else ()
    for split, count in (("train", n_train), ("test", n_test)):
        for name in classes:
            (base / split / name).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                array = rng.integers(0, 256, (size[1], size[0], *channels), dtype=np.uint8)
                Image.fromarray(array, mode=mode).save(base / split / name / f"{index:03d}.png")
                pixels[f"{split}/{name}/{index:03d}.png"] = array
    if hierarchy is not None:
        rows = "".join(f"{name},{superclass}\n" for name, superclass in hierarchy.items())
        (base / "hierarchy.csv").write_text("class,superclass\n" + rows, encoding="utf-8")
    return pixels


def tar_gz(source: Path, archive: Path, compression: str = "gz") -> Path:
    """A tar archive ("gz", "bz2", "xz", or "" for none) of the directory's contents (names relative to it),
    in sorted order; links are stored as links."""
    with tarfile.open(archive, f"w:{compression}") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
    return archive


def zip_archive(source: Path, archive: Path) -> Path:
    """A .zip of the directory's contents (names relative to it), as `zip -r` writes it: folder entries too."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(source.rglob("*")):
            zipped.write(path, arcname=path.relative_to(source).as_posix())
    return archive


def zip_with_member(archive: Path, name: str, content: bytes = b"x", link: bool = False) -> None:
    """Append one member to a zip; `link` makes it a Unix symbolic link whose target is `content`."""
    info = zipfile.ZipInfo(name)
    if link:
        info.create_system = 3  # Unix, so that external_attr carries the file type
        info.external_attr = 0o120777 << 16
    with zipfile.ZipFile(archive, "a") as zipped:
        zipped.writestr(info, content)


def add_tar_link(archive: Path, name: str, target: str, hard: bool = False, compression: str = "gz") -> None:
    """Rewrite a tar archive with one more member: a symbolic (or hard) link `name` -> `target`."""
    with tarfile.open(archive, f"r:{compression}") as tar:
        members = [(info, tar.extractfile(info).read() if info.isfile() else None) for info in tar.getmembers()]
    link = tarfile.TarInfo(name)
    link.type, link.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), target
    with tarfile.open(archive, f"w:{compression}") as tar:
        for info, content in [*members, (link, None)]:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)


def tar_with_bad_member(archive: Path, kind: str, folder: str = "cifar-10-batches-py") -> str:
    """A .tar.gz with one harmless file, then one hostile member; returns the hostile member's name."""
    member = {
        "dotdot": tarfile.TarInfo(f"{folder}/../../evil.txt"),
        "absolute": tarfile.TarInfo("/tmp/overfit-first-evil.txt"),
        "symlink": tarfile.TarInfo(f"{folder}/escape"),
        "hardlink": tarfile.TarInfo(f"{folder}/hard"),
        "device": tarfile.TarInfo(f"{folder}/null"),
    }[kind]
    if kind == "symlink":
        member.type, member.linkname = tarfile.SYMTYPE, "../" * (folder.count("/") + 2) + "etc/passwd"
    elif kind == "hardlink":
        member.type, member.linkname = tarfile.LNKTYPE, "/etc/passwd"
    elif kind == "device":
        member.type, member.devmajor, member.devminor = tarfile.CHRTYPE, 1, 3
    content = b"evil" if member.isfile() else b""
    member.size = len(content)
    with tarfile.open(archive, "w:gz") as tar:
        _add_bytes(tar, "readme.txt", b"harmless")
        tar.addfile(member, io.BytesIO(content) if content else None)
    return member.name


# ---------------------------------------------------------------- a real HTTP server on 127.0.0.1


@dataclass
class Serve:
    body: bytes


@dataclass
class Truncated:
    """Announces the full length, sends half, closes: a dropped connection."""

    body: bytes


@dataclass
class Slow:
    """Sends the headers, then stalls before the body: a read timeout."""

    body: bytes
    delay_s: float = 5.0


@dataclass
class Flaky:
    """Answers 503 `failures` times, then serves the body: a transient outage."""

    body: bytes
    failures: int = 1


@dataclass
class FileServer:
    base_url: str
    routes: dict[str, object] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def serve_files(self, directory: Path, prefix: str = "") -> None:
        for path in directory.iterdir():
            self.routes[f"{prefix}/{path.name}"] = Serve(path.read_bytes())


def _handler(server: FileServer, stop: threading.Event) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            server.hits.append(path)
            route = server.routes.get(path)
            if isinstance(route, Flaky) and route.failures > 0:
                route.failures -= 1
                self.send_error(503)
                return
            if route is None:
                self.send_error(404)
                return
            body = route.body  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if isinstance(route, Slow):
                self.wfile.flush()
                stop.wait(route.delay_s)
            self.wfile.write(body[: len(body) // 2] if isinstance(route, Truncated) else body)
            if isinstance(route, Truncated):
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serve() -> Iterator[FileServer]:
    """A real HTTP server on 127.0.0.1 (a free port) answering from `FileServer.routes`."""
    stop = threading.Event()
    server = FileServer(base_url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server, stop))
    httpd.daemon_threads = True
    server.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()


# ---------------------------------------------------------------- isolation and stage runs

ISOLATED = ("OVERFIT_FIRST_MIRROR", "OVERFIT_FIRST_OFFLINE")


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Variables that keep a run away from the user's caches, Debian's copies and any real network."""
    return {
        "HOME": str(tmp_path / "home"),
        "KERAS_HOME": str(tmp_path / "keras"),
        "OVERFIT_FIRST_CACHE": str(tmp_path / "cache"),
        "OVERFIT_FIRST_SYSTEM_DATASETS": str(tmp_path / "system"),
        "NO_PROXY": "127.0.0.1,localhost",
        **extra,
    }


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """In-process isolation: the same variables as a stage subprocess gets; returns tmp_path."""
    for name in ISOLATED:
        monkeypatch.delenv(name, raising=False)
    for name, value in isolated_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    return tmp_path


def project(tmp_path: Path, data: dict | None = None, prepare: dict | None = None) -> Path:
    """A scratch project: the repository's params.yaml with sections `data`/`prepare` updated."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(data or {})
    params["prepare"].update(prepare or {})
    directory = tmp_path / "project"
    directory.mkdir(exist_ok=True)
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return directory


def run_data_stage(
    directory: Path, stage: str, dataset: str, tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m stages.<stage> <dataset>` in `directory`, as DVC runs it, isolated like `isolated_env`
    (`dataset` "" for a stage without one, such as `sources`)."""
    environ = {key: value for key, value in stage_env().items() if key not in ISOLATED and key != "DVC_ROOT"}
    environ.update(isolated_env(tmp_path, **env))
    return run_stage(f"stages.{stage}", *filter(None, [dataset]), cwd=directory, env=environ, timeout=120)


def files_under(directory: Path) -> list[str]:
    """Every file below `directory` (relative names), to prove nothing partial was left behind."""
    if not directory.exists():
        return []
    return sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file())
