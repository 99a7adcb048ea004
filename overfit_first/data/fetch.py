"""Find a dataset file locally or download it, and accept it only when a published checksum matches.

Lookup order for each file: this project's download cache; Debian's /usr/share/datasets; Keras' cache
(~/.keras/datasets); the mirror (params `data.mirror`, overridden by env OVERFIT_FIRST_MIRROR: a
directory or a base URL holding the official file names, at its top or in torchvision's <Dataset>/raw/
layout; a relative directory is read from the repository root); then the official URLs.

Environment: OVERFIT_FIRST_CACHE (download cache, default ~/.cache/overfit-first), KERAS_HOME (as in
Keras), OVERFIT_FIRST_SYSTEM_DATASETS (default /usr/share/datasets), OVERFIT_FIRST_OFFLINE=1 (never
contact the official URLs: local copies and the mirror only).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

import requests

from overfit_first import progress
from overfit_first.data.sources import RemoteFile
from overfit_first.errors import PipelineError
from overfit_first.layout import user_path

_CHUNK = 1 << 20
_RETRIED_CLIENT_ERRORS = {408, 429}  # request timeout, too many requests; other 4xx (404, 403) are final


@dataclass(frozen=True)
class Fetched:
    name: str
    path: Path
    origin: str  # where it was found: a path or a URL without credentials or query
    sha256: str


class FetchError(Exception):
    """One location did not yield a verified file; the message is the reason, shown to the user."""


class _TransientError(FetchError):
    """A failure worth retrying: connection problems, timeouts, 5xx answers."""


# The directories below come from the environment, where a quoted "~/..." reaches us unexpanded.
def cache_dir() -> Path:
    return Path(os.environ.get("OVERFIT_FIRST_CACHE") or Path.home() / ".cache" / "overfit-first").expanduser()


def keras_datasets_dir() -> Path:
    return (Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets").expanduser()


def system_datasets_dir() -> Path:
    return Path(os.environ.get("OVERFIT_FIRST_SYSTEM_DATASETS") or "/usr/share/datasets").expanduser()


def offline() -> bool:
    return os.environ.get("OVERFIT_FIRST_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def mirror_setting(params_mirror: str | None) -> str | None:
    """The mirror to search: env OVERFIT_FIRST_MIRROR wins over params `data.mirror`."""
    return os.environ.get("OVERFIT_FIRST_MIRROR") or params_mirror or None


def public_url(url: str) -> str:
    """The URL without user:password, query or fragment: safe to print and to record."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _is_url(location: str) -> bool:
    return urlsplit(location).scheme in ("http", "https")


def _mirror_url(mirror: str, name: str) -> str:
    parts = urlsplit(mirror)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + name))


class _Digests:
    """md5 and sha256 in one pass: the published checksums use either."""

    def __init__(self) -> None:
        self._md5, self._sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()

    def update(self, block: bytes) -> None:
        self._md5.update(block)
        self._sha256.update(block)

    def hexdigests(self) -> dict[str, str]:
        return {"md5": self._md5.hexdigest(), "sha256": self._sha256.hexdigest()}


def digests(path: Path) -> dict[str, str]:
    found = _Digests()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            found.update(block)
    return found.hexdigests()


def _verify(file: RemoteFile, found: dict[str, str]) -> None:
    if not any(found.get(algorithm) == value for algorithm, _, value in (c.partition(":") for c in file.checksums)):
        raise FetchError(f"checksum mismatch (sha256 {found['sha256'][:16]}..., not a published checksum)")


@dataclass(frozen=True)
class Downloader:
    """HTTP(S) downloads with retries, exponential back-off, a timeout and a progress bar (overfit_first.progress)."""

    retries: int = 3
    backoff_s: float = 1.0
    timeout_s: tuple[float, float] = (10.0, 60.0)  # (connect, read: the longest wait for the next bytes)
    session: requests.Session = field(default_factory=requests.Session, compare=False)

    def download(self, url: str, file: RemoteFile, target: Path) -> dict[str, str]:
        """Download `url` to `target` (renamed into place only once verified); return its digests."""
        for attempt in range(self.retries):
            try:
                return self._download_once(url, file, target)
            except _TransientError:
                time.sleep(self.backoff_s * 2**attempt)
        return self._download_once(url, file, target)

    def _download_once(self, url: str, file: RemoteFile, target: Path) -> dict[str, str]:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, part_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        except OSError as error:
            raise PipelineError(
                f"cannot write to the download cache {target.parent} ({error}); "
                "set OVERFIT_FIRST_CACHE to a writable directory"
            ) from error
        part = Path(part_name)
        try:
            with os.fdopen(fd, "wb") as out:
                found = self._stream(url, file.name, out)
            _verify(file, found)
            os.replace(part, target)
            return found
        finally:
            part.unlink(missing_ok=True)

    def _stream(self, url: str, name: str, out: BinaryIO) -> dict[str, str]:
        found = _Digests()
        try:
            with self.session.get(url, stream=True, timeout=self.timeout_s) as response:
                _check_status(response.status_code)
                total = int(response.headers.get("Content-Length", 0)) or None
                with progress.bar(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024) as bar:
                    for chunk in response.iter_content(_CHUNK):
                        out.write(chunk)
                        found.update(chunk)
                        bar.update(len(chunk))
        except requests.Timeout as error:
            raise _TransientError(f"timed out ({type(error).__name__})") from error
        except requests.exceptions.ChunkedEncodingError as error:
            raise _TransientError("connection broken before the end of the file (truncated)") from error
        except requests.ConnectionError as error:
            raise _connection_failure(error) from error
        except requests.RequestException as error:
            raise FetchError(f"request failed ({type(error).__name__})") from error
        return found.hexdigests()


def _connection_failure(error: requests.ConnectionError) -> FetchError:
    # Only the innermost error's class is shown: requests' messages repeat the URL, query string included.
    reason = error.args[0] if error.args else None
    reason = getattr(reason, "reason", reason)
    cause = type(reason).__name__ if isinstance(reason, BaseException) else type(error).__name__
    if "Timeout" in cause:  # a stall mid-body arrives as a ConnectionError wrapping a ReadTimeoutError
        return _TransientError(f"timed out ({cause})")
    if cause == "NameResolutionError":  # offline, or a mistyped host: retrying only delays the error
        return FetchError(f"connection failed ({cause}: unknown host, or no network)")
    return _TransientError(f"connection failed ({cause})")


def _check_status(status: int) -> None:
    if 400 <= status < 500 and status not in _RETRIED_CLIENT_ERRORS:
        raise FetchError(f"HTTP {status}")
    if status >= 400:
        raise _TransientError(f"HTTP {status}")


@dataclass
class Locator:
    """Finds the files of one dataset; `tried` records each location and why it failed."""

    dataset: str
    mirror: str | None = None
    downloader: Downloader = field(default_factory=Downloader)
    tried: list[str] = field(default_factory=list)

    def fetch(self, file: RemoteFile) -> Fetched:
        """A verified copy of `file`: a local one, else downloaded into the cache. Raises PipelineError listing
        every location tried and why it failed."""
        self.tried = []
        found_local = self.find_local(file)
        if found_local is not None:
            return found_local
        target = cache_dir() / self.dataset / file.name
        for url in self._url_candidates(file):
            try:
                found_digests = self.downloader.download(url, file, target)
            except FetchError as failure:
                self.tried.append(f"{public_url(url)}: {failure}")
                continue
            return Fetched(file.name, target, public_url(url), found_digests["sha256"])
        if offline():
            self.tried.append("official URLs: not tried (OVERFIT_FIRST_OFFLINE is set)")
        raise PipelineError(self._failure_message(file))

    def find_local(self, file: RemoteFile) -> Fetched | None:
        """A verified local copy of `file` (no network), or None; the locations tried are added to `tried`."""
        cached = cache_dir() / self.dataset / file.name
        for path in self._local_candidates(file, cached):
            found = self._check_local(file, path, owned=path == cached)
            if found is not None:
                return found
        return None

    def _local_candidates(self, file: RemoteFile, cached: Path) -> list[Path]:
        paths = [cached]
        if file.system_path:
            paths.append(system_datasets_dir() / file.system_path)
        paths += [keras_datasets_dir() / name for name in file.keras_paths]
        if self.mirror and not _is_url(self.mirror):
            mirror = user_path(self.mirror.removeprefix("file://"), "data.mirror (or OVERFIT_FIRST_MIRROR)")
            paths += [mirror / name for name in (file.name, *file.mirror_paths)]
        return paths

    def _url_candidates(self, file: RemoteFile) -> list[str]:
        urls = []
        if self.mirror and _is_url(self.mirror):
            urls = [_mirror_url(self.mirror, name) for name in (file.name, *file.mirror_paths)]
        return urls if offline() else urls + list(file.urls)

    def _check_local(self, file: RemoteFile, path: Path, owned: bool) -> Fetched | None:
        if not path.is_file():
            self.tried.append(f"{path}: not found")
            return None
        found = digests(path)
        try:
            _verify(file, found)
        except FetchError as failure:
            self.tried.append(f"{path}: {failure}")
            if owned:
                path.unlink()  # a corrupt file in our own cache would shadow every later download
            return None
        return Fetched(file.name, path, str(path), found["sha256"])

    def _failure_message(self, file: RemoteFile) -> str:
        tried = "\n".join(f"  - {line}" for line in self.tried)
        copy_to = keras_datasets_dir() / file.keras_paths[0] if file.keras_paths else cache_dir() / self.dataset
        return (
            f"cannot obtain {file.name} for dataset {self.dataset}; tried:\n{tried}\n"
            f"Fix: set data.mirror in params.yaml (or env OVERFIT_FIRST_MIRROR) to a directory or base URL "
            f"holding {file.name}, or copy the file to {copy_to}"
        )
