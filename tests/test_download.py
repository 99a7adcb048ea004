"""Locating, downloading and verifying dataset files through a real HTTP server on 127.0.0.1.

Stage behaviour is tested by running `python -m stages.download` in a scratch project; download
mechanics (retries, timeouts, lookup order) in-process with short timeouts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from overfit_first.config import DataConfig
from overfit_first.data import download, fetch, raw, sources
from overfit_first.data import image_folder as image_folder_reader
from overfit_first.data.sources import RemoteFile
from overfit_first.data.splits import Split
from overfit_first.errors import PipelineError

from data_fixtures import (
    DEBIAN_FASHION,
    FASHION_FILES,
    FileServer,
    Flaky,
    Serve,
    Slow,
    Truncated,
    cifar10_archive,
    files_under,
    idx_dataset,
    image_folder,
    isolate,
    mnist_npz,
    project,
    run_data_stage,
    serve,
    tar_gz,
    tar_with_bad_member,
    to_nhwc,
    write_idx,
    zip_archive,
)

QUICK = fetch.Downloader(retries=1, backoff_s=0.0, timeout_s=(2.0, 2.0))


@pytest.fixture
def http_server() -> Iterator[FileServer]:
    with serve() as server:
        yield server


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate(tmp_path, monkeypatch)


def _remote(name: str, content: bytes, urls: tuple[str, ...] = (), **local: object) -> RemoteFile:
    return RemoteFile(name=name, urls=urls, checksums=(f"sha256:{hashlib.sha256(content).hexdigest()}",), **local)


# ---------------------------------------------------------------- the stage, end to end


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist in /usr/share/datasets")
@pytest.mark.slow  # three download stages, 3.4 s
def test_stage_downloads_from_the_mirror_url_with_progress_then_reuses_the_cache(tmp_path: Path, http_server) -> None:
    http_server.serve_files(DEBIAN_FASHION, prefix="/mirror")
    directory = project(tmp_path, data={"mirror": http_server.url("mirror")})
    result = run_data_stage(directory, "download", "fashion_mnist", tmp_path, OVERFIT_FIRST_OFFLINE="1")
    assert result.returncode == 0, result.stderr
    assert "train-images-idx3-ubyte.gz" in result.stderr and "100%" in result.stderr  # the progress bar
    raw = directory / "data" / "raw" / "fashion_mnist"
    assert files_under(raw) == ["meta.json", "test.npz", "train.npz"]
    meta = json.loads((raw / "meta.json").read_text(encoding="utf-8"))
    assert [entry["origin"] for entry in meta["files"]] == [http_server.url(f"mirror/{name}") for name in FASHION_FILES]
    assert meta["class_names"][0] == "T-shirt/top" and meta["superclass_names"] is None
    with np.load(raw / "train.npz") as train:
        assert train["x"].shape == (60000, 28, 28, 1) and train["y"].dtype == np.int64
    assert files_under(tmp_path / "cache") == sorted(f"fashion_mnist/{name}" for name in FASHION_FILES)

    hits = len(http_server.hits)
    again = run_data_stage(directory, "download", "fashion_mnist", tmp_path, OVERFIT_FIRST_OFFLINE="1")
    assert again.returncode == 0, again.stderr
    assert len(http_server.hits) == hits  # verified cache copies, no new request


def test_checksum_mismatch_lists_every_location_tried_and_leaves_nothing(tmp_path: Path, http_server) -> None:
    for name in FASHION_FILES:
        http_server.routes[f"/{name}"] = Serve(b"not the official file")
    directory = project(tmp_path, data={"mirror": http_server.base_url})
    result = run_data_stage(directory, "download", "fashion_mnist", tmp_path, OVERFIT_FIRST_OFFLINE="1")
    assert result.returncode == 1
    error = result.stderr
    assert "error: cannot obtain train-images-idx3-ubyte.gz for dataset fashion_mnist; tried:" in error
    for location in (
        tmp_path / "cache" / "fashion_mnist" / "train-images-idx3-ubyte.gz",
        tmp_path / "system" / "fashion-mnist" / "train-images-idx3-ubyte.gz",
        tmp_path / "keras" / "datasets" / "fashion-mnist" / "train-images-idx3-ubyte.gz",
    ):
        assert f"{location}: not found" in error
    assert f"{http_server.url('train-images-idx3-ubyte.gz')}: checksum mismatch" in error
    assert "official URLs: not tried (OVERFIT_FIRST_OFFLINE is set)" in error
    assert "set data.mirror in params.yaml (or env OVERFIT_FIRST_MIRROR)" in error
    assert not (directory / "data").exists()
    assert files_under(tmp_path / "cache") == []


def test_404_from_a_mirror_with_credentials_never_prints_them(tmp_path: Path, http_server) -> None:
    directory = project(tmp_path)
    host = http_server.base_url.removeprefix("http://")
    mirror = f"http://user:s3cret@{host}/files?token=abc123"
    result = run_data_stage(
        directory, "download", "mnist", tmp_path, OVERFIT_FIRST_OFFLINE="1", OVERFIT_FIRST_MIRROR=mirror
    )
    assert result.returncode == 1
    assert f"http://{host}/files/mnist.npz: HTTP 404" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout and "abc123" not in result.stderr + result.stdout
    # Both published formats of MNIST were asked for, each stopping at its first missing file.
    assert http_server.hits == [
        "/files/mnist.npz",
        "/files/train-images-idx3-ubyte.gz",
        "/files/MNIST/raw/train-images-idx3-ubyte.gz",
    ]
    assert not (directory / "data").exists() and files_under(tmp_path / "cache") == []


def test_unknown_dataset_lists_the_known_ones(tmp_path: Path) -> None:
    result = run_data_stage(project(tmp_path), "download", "imagenet", tmp_path)
    assert result.returncode == 1
    assert "unknown dataset 'imagenet': known datasets are fashion_mnist, mnist, cifar10, cifar100" in result.stderr


def test_stage_reads_an_image_folder_archive_with_superclasses(tmp_path: Path) -> None:
    image_folder(tmp_path / "tree", hierarchy={"cat": "mammal", "dog": "mammal", "frog": "amphibian"})
    archive = tar_gz(tmp_path / "tree", tmp_path / "tiny.tar.gz")
    directory = project(tmp_path, data={"image_folders": {"tiny": str(archive)}})
    result = run_data_stage(directory, "download", "tiny", tmp_path)
    assert result.returncode == 0, result.stderr
    raw = directory / "data" / "raw" / "tiny"
    meta = json.loads((raw / "meta.json").read_text(encoding="utf-8"))
    assert meta["class_names"] == ["cat", "dog", "frog"] and meta["superclass_names"] == ["amphibian", "mammal"]
    checksum = f"sha256:{hashlib.sha256(archive.read_bytes()).hexdigest()}"
    assert meta["files"] == [{"name": "tiny.tar.gz", "checksum": checksum, "origin": str(archive)}]
    with np.load(raw / "train.npz") as train:
        assert train["x"].shape == (12, 5, 6, 3) and train["y_coarse"].dtype == np.int64


@pytest.mark.slow  # two download stages, 1.9 s
def test_stage_reads_a_zip_like_kaggle_serves_and_names_the_formats_it_reads(tmp_path: Path) -> None:
    image_folder(tmp_path / "tree", classes=("cat", "dog"))
    zip_archive(tmp_path / "tree", tmp_path / "pets.zip")
    (tmp_path / "pets.rar").write_bytes(b"Rar!\x1a\x07\x01\x00" + bytes(64))
    directory = project(tmp_path, data={"image_folders": {"pets": "../pets.zip", "other": "../pets.rar"}})
    result = run_data_stage(directory, "download", "pets", tmp_path)
    assert result.returncode == 0, result.stderr
    meta = json.loads((directory / "data" / "raw" / "pets" / "meta.json").read_text(encoding="utf-8"))
    assert meta["class_names"] == ["cat", "dog"] and meta["files"][0]["name"] == "pets.zip"
    refused = run_data_stage(directory, "download", "other", tmp_path)
    assert refused.returncode == 1
    supported = ".tar, .tar.gz (.tgz), .tar.bz2 (.tbz2), .tar.xz (.txz) or .zip"
    assert f"is not an archive format this pipeline reads (its content is not {supported})" in refused.stderr


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_stage_refuses_a_hostile_image_folder_archive(tmp_path: Path, kind: str) -> None:
    archive = tmp_path / "hostile.tar.gz"
    member = tar_with_bad_member(archive, kind, folder="tiny/train/cat")
    directory = project(tmp_path, data={"image_folders": {"hostile": str(archive)}})
    result = run_data_stage(directory, "download", "hostile", tmp_path)
    assert result.returncode == 1
    assert f"error: {archive}: unsafe member {member!r}" in result.stderr
    assert files_under(directory / "data") == []
    assert not Path("/tmp/overfit-first-evil.txt").exists()


# ---------------------------------------------------------------- download mechanics, in-process


def test_download_verifies_then_renames_into_the_cache_with_progress(isolated: Path, http_server, capsys) -> None:
    content = b"x" * 300_000
    http_server.routes["/data.bin"] = Serve(content)
    remote = _remote("data.bin", content, urls=(http_server.url("data.bin"),))
    found = fetch.Locator("demo", downloader=QUICK).fetch(remote)
    assert found.path == isolated / "cache" / "demo" / "data.bin" and found.path.read_bytes() == content
    assert found.origin == http_server.url("data.bin") and found.sha256 == hashlib.sha256(content).hexdigest()
    assert "data.bin" in capsys.readouterr().err  # tqdm's bar
    assert files_under(isolated / "cache") == ["demo/data.bin"]


def test_truncated_body_is_retried_then_reported_and_nothing_kept(isolated: Path, http_server) -> None:
    content = b"y" * 100_000
    http_server.routes["/data.bin"] = Truncated(content)
    remote = _remote("data.bin", content, urls=(http_server.url("data.bin"),))
    with pytest.raises(PipelineError, match=r"data.bin: connection broken before the end of the file \(truncated\)"):
        fetch.Locator("demo", downloader=QUICK).fetch(remote)
    assert http_server.hits == ["/data.bin", "/data.bin"]  # one retry
    assert files_under(isolated / "cache") == []


def test_a_stalled_server_times_out(isolated: Path, http_server) -> None:
    http_server.routes["/data.bin"] = Slow(b"z" * 10, delay_s=5.0)
    remote = _remote("data.bin", b"z" * 10, urls=(http_server.url("data.bin"),))
    downloader = fetch.Downloader(retries=0, timeout_s=(2.0, 0.3))
    with pytest.raises(PipelineError, match=r"data.bin: timed out"):
        fetch.Locator("demo", downloader=downloader).fetch(remote)
    assert files_under(isolated / "cache") == []


def test_a_transient_503_is_retried_with_backoff(isolated: Path, http_server) -> None:
    http_server.routes["/data.bin"] = Flaky(b"ok", failures=1)
    remote = _remote("data.bin", b"ok", urls=(http_server.url("data.bin"),))
    assert fetch.Locator("demo", downloader=QUICK).fetch(remote).path.read_bytes() == b"ok"
    assert http_server.hits == ["/data.bin", "/data.bin"]


def test_local_copies_come_first_and_corrupt_ones_are_skipped(isolated: Path, http_server) -> None:
    content = b"official bytes"
    remote = _remote("f.gz", content, urls=(http_server.url("f.gz"),), system_path="pkg/f.gz", keras_paths=("k/f.gz",))
    cached = isolated / "cache" / "demo" / "f.gz"
    for path, data in ((cached, b"corrupt"), (isolated / "system" / "pkg" / "f.gz", b"recompressed?")):
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    keras_copy = isolated / "keras" / "datasets" / "k" / "f.gz"
    keras_copy.parent.mkdir(parents=True)
    keras_copy.write_bytes(content)
    locator = fetch.Locator("demo", downloader=QUICK)
    found = locator.fetch(remote)
    assert found.path == keras_copy and found.origin == str(keras_copy)
    assert [line.split(": ")[1][:17] for line in locator.tried] == ["checksum mismatch"] * 2
    assert not cached.exists()  # a corrupt file in our own cache is removed; others' files are left alone
    assert http_server.hits == []


def test_a_mirror_directory_is_searched_by_official_file_name(isolated: Path) -> None:
    mirror = isolated / "mirror"
    mirror.mkdir()
    (mirror / "f.gz").write_bytes(b"content")
    found = fetch.Locator("demo", mirror=str(mirror), downloader=QUICK).fetch(_remote("f.gz", b"content"))
    assert found.path == mirror / "f.gz"


def test_the_environment_mirror_wins_over_params(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERFIT_FIRST_MIRROR", "http://mirror.example/datasets")
    assert fetch.mirror_setting("/srv/params-mirror") == "http://mirror.example/datasets"
    monkeypatch.delenv("OVERFIT_FIRST_MIRROR")
    assert fetch.mirror_setting("/srv/params-mirror") == "/srv/params-mirror"
    assert fetch.mirror_setting(None) is None


# ---------------------------------------------------------------- archives through HTTP, in-process


def _cifar10_served(http_server, archive: Path, monkeypatch: pytest.MonkeyPatch, **changes: object) -> None:
    """Point the built-in cifar10 at the local server, pinned to this archive's checksum."""
    content = archive.read_bytes()
    http_server.routes["/cifar-10-python.tar.gz"] = Serve(content)
    remote = _remote("cifar-10-python.tar.gz", content, urls=(http_server.url("cifar-10-python.tar.gz"),))
    served = dataclasses.replace(sources.CIFAR10, files=(remote,), **changes)
    monkeypatch.setitem(sources.BUILTIN, "cifar10", served)


def test_cifar10_download_end_to_end(isolated: Path, http_server, monkeypatch: pytest.MonkeyPatch) -> None:
    made = cifar10_archive(isolated / "served.tar.gz")
    _cifar10_served(http_server, isolated / "served.tar.gz", monkeypatch)
    directory = download.download("cifar10", DataConfig(datasets=["cifar10"]), root=isolated / "raw")
    with np.load(directory / "train.npz") as train:
        np.testing.assert_array_equal(train["x"], to_nhwc(np.concatenate([b["data"] for b in made["train"]])))
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    assert meta["class_names"] == made["names"]
    assert meta["files"][0]["origin"] == http_server.url("cifar-10-python.tar.gz")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_hostile_cifar_archive_from_http_writes_nothing(isolated: Path, http_server, monkeypatch, kind: str) -> None:
    member = tar_with_bad_member(isolated / "served.tar.gz", kind)
    _cifar10_served(http_server, isolated / "served.tar.gz", monkeypatch)
    with pytest.raises(PipelineError, match=f"unsafe member {member!r}"):
        download.download("cifar10", DataConfig(datasets=["cifar10"]), root=isolated / "raw")
    assert files_under(isolated / "raw") == []
    assert files_under(isolated / "cache") == ["cifar10/cifar-10-python.tar.gz"]  # verified, so kept
    assert not Path("/tmp/overfit-first-evil.txt").exists()


def test_parsers_only_see_verified_files(isolated: Path, http_server, monkeypatch) -> None:
    cifar10_archive(isolated / "served.tar.gz")
    opened: list[object] = []
    _cifar10_served(http_server, isolated / "served.tar.gz", monkeypatch, parse=opened.append)
    http_server.routes["/cifar-10-python.tar.gz"] = Serve(b"tampered")
    with pytest.raises(PipelineError, match="checksum mismatch"):
        download.download("cifar10", DataConfig(datasets=["cifar10"]), root=isolated / "raw")
    assert opened == []


# ---------------------------------------------------------------- MNIST in either published format (issue #11 row 7)


def _mnist_pinned(
    monkeypatch: pytest.MonkeyPatch, idx_dir: Path, npz: Path | None = None, official: FileServer | None = None
) -> None:
    """Pin the built-in mnist to this test's files: its checksums substituted, the official URLs of both
    formats on the local server (or none)."""

    def pinned(name: str, content: bytes, **local: object) -> RemoteFile:
        return _remote(name, content, urls=(official.url(f"official/{name}"),) if official else (), **local)

    idx = tuple(
        pinned(name, (idx_dir / name).read_bytes(), mirror_paths=(f"MNIST/raw/{name}",)) for name in FASHION_FILES
    )
    npz_file = pinned("mnist.npz", npz.read_bytes() if npz else b"no such file", keras_paths=("mnist.npz",))
    published = dataclasses.replace(sources.MNIST.alternatives[0], files=idx)
    monkeypatch.setitem(
        sources.BUILTIN, "mnist", dataclasses.replace(sources.MNIST, files=(npz_file,), alternatives=(published,))
    )


def _assert_mnist(directory: Path, arrays: dict[str, np.ndarray]) -> dict:
    for split in ("train", "test"):
        with np.load(directory / f"{split}.npz") as saved:
            np.testing.assert_array_equal(saved["x"], arrays[f"x_{split}"][..., np.newaxis])
            np.testing.assert_array_equal(saved["y"], arrays[f"y_{split}"])
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    assert meta["class_names"] == [str(digit) for digit in range(10)]
    return meta


def test_mnist_registry_holds_the_official_idx_files_as_torchvision_publishes_them() -> None:
    npz, idx = sources.MNIST.formats()
    assert [file.name for file in npz.files] == ["mnist.npz"]
    assert [(file.name, file.checksums) for file in idx.files] == [
        ("train-images-idx3-ubyte.gz", ("md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",)),
        ("train-labels-idx1-ubyte.gz", ("md5:d53e105ee54ea40749a09fcbcd1e9432",)),
        ("t10k-images-idx3-ubyte.gz", ("md5:9fb629c4189551a2d022fa330f9573f3",)),
        ("t10k-labels-idx1-ubyte.gz", ("md5:ec29112dd5afa0611ce80d1b7f02629c",)),
    ]
    assert idx.files[0].urls == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz",
    )


def test_mnist_idx_files_in_a_mirror_directory_with_torchvision_layout(isolated: Path, monkeypatch) -> None:
    raw_dir = isolated / "torchvision-data" / "MNIST" / "raw"
    arrays = idx_dataset(raw_dir)
    _mnist_pinned(monkeypatch, raw_dir)
    directory = download.download(
        "mnist", DataConfig(datasets=["mnist"], mirror=str(isolated / "torchvision-data")), root=isolated / "raw"
    )
    meta = _assert_mnist(directory, arrays)
    assert meta["source"] == "MNIST, official idx files"
    assert [entry["origin"] for entry in meta["files"]] == [str(raw_dir / name) for name in FASHION_FILES]


def test_mnist_idx_files_from_an_http_mirror_then_from_the_cache(isolated: Path, http_server, monkeypatch) -> None:
    arrays = idx_dataset(isolated / "served")
    http_server.serve_files(isolated / "served", prefix="/mirror")
    _mnist_pinned(monkeypatch, isolated / "served")
    directory = download.download(
        "mnist", DataConfig(datasets=["mnist"], mirror=http_server.url("mirror")), root=isolated / "raw"
    )
    meta = _assert_mnist(directory, arrays)
    assert [entry["origin"] for entry in meta["files"]] == [http_server.url(f"mirror/{name}") for name in FASHION_FILES]
    assert http_server.hits[0] == "/mirror/mnist.npz"  # Keras' format first: not there (404), so the idx files
    hits = len(http_server.hits)
    download.download("mnist", DataConfig(datasets=["mnist"], mirror=http_server.url("mirror")), root=isolated / "raw")
    assert len(http_server.hits) == hits  # the verified idx files in the cache are a complete local copy


@pytest.mark.parametrize("local", ["npz", "idx"])
def test_a_local_copy_in_either_format_comes_before_any_download(
    isolated: Path, http_server, monkeypatch, local: str
) -> None:
    arrays = idx_dataset(isolated / "idx")
    mnist_npz(isolated / "mnist.npz", seed=1)
    for path in (isolated / "mnist.npz", *(isolated / "idx").iterdir()):
        http_server.routes[f"/official/{path.name}"] = Serve(path.read_bytes())
    _mnist_pinned(monkeypatch, isolated / "idx", isolated / "mnist.npz", official=http_server)
    if local == "npz":  # Keras' cache
        (isolated / "keras" / "datasets").mkdir(parents=True)
        shutil.copy(isolated / "mnist.npz", isolated / "keras" / "datasets" / "mnist.npz")
    else:  # this project's cache, as a download of the idx files left it
        shutil.copytree(isolated / "idx", isolated / "cache" / "mnist")
    directory = download.download("mnist", DataConfig(datasets=["mnist"], mirror=None), root=isolated / "raw")
    assert http_server.hits == []
    names = [entry["name"] for entry in json.loads((directory / "meta.json").read_text(encoding="utf-8"))["files"]]
    assert names == (["mnist.npz"] if local == "npz" else list(FASHION_FILES))
    if local == "idx":
        _assert_mnist(directory, arrays)


def test_mnist_nowhere_lists_both_formats_and_what_was_tried(isolated: Path, monkeypatch) -> None:
    idx_dataset(isolated / "idx")
    _mnist_pinned(monkeypatch, isolated / "idx")
    monkeypatch.setenv("OVERFIT_FIRST_OFFLINE", "1")
    with pytest.raises(PipelineError) as raised:
        download.download(
            "mnist", DataConfig(datasets=["mnist"], mirror=str(isolated / "empty")), root=isolated / "raw"
        )
    message = str(raised.value)
    assert message.startswith("cannot obtain dataset mnist in any of its 2 formats:\n")
    assert "MNIST, Keras' mnist.npz: cannot obtain mnist.npz for dataset mnist; tried:" in message
    assert "MNIST, official idx files: cannot obtain train-images-idx3-ubyte.gz for dataset mnist; tried:" in message
    assert f"{isolated / 'empty' / 'MNIST' / 'raw' / 'train-images-idx3-ubyte.gz'}: not found" in message
    assert files_under(isolated / "raw") == []


# ---------------------------------------------------------------- fewer than two classes (issue #11 row 13)


def test_a_one_class_image_folder_is_refused_by_the_stage(tmp_path: Path) -> None:
    image_folder(tmp_path / "tree", classes=("cat",))
    directory = project(tmp_path, data={"image_folders": {"cats": str(tmp_path / "tree")}})
    result = run_data_stage(directory, "download", "cats", tmp_path)
    assert result.returncode == 1
    assert "the training split holds 1 class(es) ['cat']; a classifier needs at least two" in result.stderr
    assert files_under(directory / "data") == []


def test_labels_of_one_class_are_refused_for_builtin_formats_too(isolated: Path, monkeypatch) -> None:
    arrays = idx_dataset(isolated / "idx")
    arrays["y_train"][:] = 3
    write_idx(isolated / "idx" / "train-labels-idx1-ubyte.gz", arrays["y_train"])
    _mnist_pinned(monkeypatch, isolated / "idx")
    with pytest.raises(PipelineError, match=r"holds 1 class\(es\) \['3'\]; a classifier needs at least two"):
        download.download("mnist", DataConfig(datasets=["mnist"], mirror=str(isolated / "idx")), root=isolated / "raw")
    assert files_under(isolated / "raw") == []


def test_prepare_refuses_a_one_class_raw_dataset_written_before(tmp_path: Path) -> None:
    one_class = Split(x=np.zeros((4, 2, 2, 1), np.uint8), y=np.zeros(4, np.int64))
    meta = {"dataset": "old", "class_names": ["cat"], "superclass_names": None}
    raw.write(tmp_path / "old", raw.RawData(one_class, one_class, ["cat"]), meta)
    with pytest.raises(PipelineError, match=r"old: the training split holds 1 class\(es\) \['cat'\]"):
        raw.load(tmp_path / "old")


# ---------------------------------------------------------------- paths as users write them (issue #11 rows 6, 15)


@pytest.mark.slow  # four download stages, 3.6 s
def test_tilde_and_environment_variables_are_expanded(tmp_path: Path) -> None:
    image_folder(tmp_path / "home" / "pets")  # HOME is tmp_path/home in the stage (isolated_env)
    (tmp_path / "datasets").mkdir()
    tar_gz(tmp_path / "home" / "pets", tmp_path / "datasets" / "pets.tgz")
    folders = {"home_pets": "~/pets", "env_pets": "$PETS_DIR/pets.tgz", "braced": "${PETS_DIR}/pets.tgz"}
    directory = project(tmp_path, data={"image_folders": folders})
    for name in folders:
        result = run_data_stage(directory, "download", name, tmp_path, PETS_DIR=str(tmp_path / "datasets"))
        assert result.returncode == 0, result.stderr
    unset = run_data_stage(directory, "download", "env_pets", tmp_path)
    assert unset.returncode == 1
    assert (
        "params.yaml: data.image_folders.env_pets = '$PETS_DIR/pets.tgz': environment variable $PETS_DIR is not set"
    ) in unset.stderr


def test_quoted_tilde_in_the_directory_variables_is_expanded(isolated: Path, monkeypatch) -> None:
    for name in ("OVERFIT_FIRST_CACHE", "KERAS_HOME", "OVERFIT_FIRST_SYSTEM_DATASETS"):
        monkeypatch.setenv(name, "~/somewhere")
    home = isolated / "home"
    assert (fetch.cache_dir(), fetch.keras_datasets_dir(), fetch.system_datasets_dir()) == (
        home / "somewhere",
        home / "somewhere" / "datasets",
        home / "somewhere",
    )


def test_a_missing_folder_names_the_path_it_looked_at(tmp_path: Path) -> None:
    directory = project(tmp_path, data={"image_folders": {"pets": "../nowhere/pets"}})
    result = run_data_stage(directory, "download", "pets", tmp_path)
    assert result.returncode == 1
    assert (
        f"data.image_folders.pets = '../nowhere/pets': {directory / '..' / 'nowhere' / 'pets'} does not exist "
        "(~ and $VARIABLES are expanded; a relative path is read from the repository root"
    ) in result.stderr


def _dvc_copy(directory: Path) -> Path:
    """Where `dvc exp run --queue`/`--temp` runs the stages: a copy of the repository deep inside it."""
    copy = directory / ".dvc" / "tmp" / "exps" / "standalone" / "tmp1234"
    copy.mkdir(parents=True)
    shutil.copy(directory / "params.yaml", copy / "params.yaml")
    return copy


@pytest.mark.slow  # two download stages, 1.9 s
def test_relative_paths_are_read_from_the_original_repository_in_a_dvc_copy(tmp_path: Path) -> None:
    image_folder(tmp_path / "shared" / "pets")
    directory = project(tmp_path, data={"image_folders": {"pets": "../shared/pets"}})
    copy = _dvc_copy(directory)
    for env in ({"DVC_ROOT": str(directory)}, {}):  # DVC sets DVC_ROOT; run by hand, the copy's path tells
        result = run_data_stage(copy, "download", "pets", tmp_path, **env)
        assert result.returncode == 0, result.stderr
        meta = json.loads((copy / "data" / "raw" / "pets" / "meta.json").read_text(encoding="utf-8"))
        assert meta["files"][0]["origin"] == str(directory / ".." / "shared" / "pets")


def test_a_relative_mirror_directory_is_read_from_the_original_repository(isolated: Path, monkeypatch) -> None:
    directory = project(isolated)
    (directory / "mirror" / "Demo" / "raw").mkdir(parents=True)
    (directory / "mirror" / "Demo" / "raw" / "f.gz").write_bytes(b"content")
    monkeypatch.chdir(_dvc_copy(directory))
    monkeypatch.setenv("DVC_ROOT", str(directory))
    found = fetch.Locator("demo", mirror="mirror", downloader=QUICK).fetch(
        _remote("f.gz", b"content", mirror_paths=("Demo/raw/f.gz",))
    )
    assert found.path == directory / "mirror" / "Demo" / "raw" / "f.gz"


# ---------------------------------------------------------------- the sources stage (issue #11 row 12)


@pytest.mark.slow  # two sources stages, 1.7 s
def test_sources_checksum_each_used_image_folder_and_skip_unused_ones(tmp_path: Path) -> None:
    image_folder(tmp_path / "pets")
    data = {"image_folders": {"pets": str(tmp_path / "pets"), "unused": str(tmp_path / "not-there")}}
    directory = project(tmp_path, data={**data, "datasets": ["fashion_mnist", "pets", "mnist"]})
    result = run_data_stage(directory, "sources", "", tmp_path)
    assert result.returncode == 0, result.stderr
    written = directory / "data" / "sources"
    assert files_under(written) == ["fashion_mnist.json", "mnist.json", "pets.json"]
    first = json.loads((written / "pets.json").read_text(encoding="utf-8"))
    assert first["checksum"] == image_folder_reader.tree_checksum(tmp_path / "pets")
    mnist = json.loads((written / "mnist.json").read_text(encoding="utf-8"))
    assert [file["name"] for file in mnist["files"]] == ["mnist.npz", *FASHION_FILES]

    Image.new("RGB", (6, 5), "red").save(tmp_path / "pets" / "tiny" / "train" / "cat" / "new.png")
    assert run_data_stage(directory, "sources", "", tmp_path).returncode == 0
    assert json.loads((written / "pets.json").read_text(encoding="utf-8"))["checksum"] != first["checksum"]
