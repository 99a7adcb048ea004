"""Reading archives safely, member by member, without extracting them to disk: tar (plain, gzip, bzip2,
xz) and zip, recognised by their content rather than their file name.

A tar archive is streamed (mode "r|*"): a 60,000-image archive is read in one pass with little memory and
no file is ever written, so a hostile member cannot land anywhere. Members are still checked as if they
were to be extracted (absolute paths, "..", links leaving the archive, devices), so a malformed archive
fails with an error naming the archive and the member instead of being half-read. A zip archive is read
through its central directory (zipfile), with the same checks.

Links inside the archive (tar symbolic and hard links, zip symbolic links) are followed as an extraction
would follow them: to a file, or to a directory whose files then appear under the link's name. They are
resolved after a first pass has listed every member, and their targets read in a second pass.
"""

from __future__ import annotations

import lzma
import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from overfit_first import progress
from overfit_first.errors import PipelineError

SUPPORTED = ".tar, .tar.gz (.tgz), .tar.bz2 (.tbz2), .tar.xz (.txz) or .zip"
_COMPRESSED_TAR_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; the end record of an empty zip
_MAX_LINK_HOPS = 40  # Linux's limit on symbolic links followed in one path lookup

# tarfile's "data" filter (Python >= 3.11.4) is applied as a second line of defence; its checks need a
# destination, so members are judged against this never-created directory.
_VIRTUAL_ROOT = "/overfit-first-archive-root"
_DATA_FILTER: Callable[[tarfile.TarInfo, str], tarfile.TarInfo] | None = getattr(tarfile, "data_filter", None)


@dataclass(frozen=True)
class Member:
    """One archive entry. `link` is the archive path a link points at (normalised, inside the archive)."""

    name: str
    kind: Literal["file", "dir", "link"]
    link: str | None = None


# A member and a function that reads its content; call it before asking for the next member (tar streams).
Entry = tuple[Member, Callable[[], bytes]]


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why extracting tar `member` could write outside the archive's directory, or None when it is safe."""
    reason = _unsafe_path(member.name)
    if reason is not None:
        return reason
    if member.isdev():
        return "device or FIFO"
    if member.issym() or member.islnk():
        reason = _unsafe_link(member.name, member.linkname, symbolic=member.issym())
        if reason is not None:
            return reason
    if _DATA_FILTER is not None:
        try:
            _DATA_FILTER(member, _VIRTUAL_ROOT)
        except tarfile.FilterError as error:
            return str(error)
    return None


def _unsafe_path(name: str) -> str | None:
    # Backslashes count as separators: Windows tools write them, and "..\\" must not slip through.
    posix = name.replace("\\", "/")
    if PurePosixPath(posix).is_absolute() or re.match(r"[A-Za-z]:", posix):
        return "absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "'..' in its path"
    return None


def _unsafe_link(name: str, target: str, symbolic: bool) -> str | None:
    link = PurePosixPath(target.replace("\\", "/"))
    # A symbolic link is resolved from its own directory, a tar hard link from the archive root.
    resolved = PurePosixPath(name).parent / link if symbolic else link
    if link.is_absolute() or _escapes(resolved):
        return f"link to {target!r} outside the archive"
    return None


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            return True
    return False


def _normalised(path: str) -> str:
    """An archive path without "./", "x/..", or a trailing "/"; the archive root is ""."""
    normal = posixpath.normpath(path.replace("\\", "/"))
    return "" if normal == "." else normal


def iter_files(archive: Path, wanted: Callable[[str], bool] = lambda _: True) -> Iterator[tuple[str, bytes]]:
    """Yield (path, content) for every file `wanted` accepts: regular files in archive order, then the files
    reached through links, under the link's path.

    Every member is checked, wanted or not. Raises PipelineError naming the archive (and the member) when it
    is not a supported archive, is truncated or corrupt, or holds an unsafe member or a dangling link.
    """
    for name, content in iter_entries(archive, wanted):
        if content is not None:
            yield name, content


def iter_entries(archive: Path, wanted: Callable[[str], bool] = lambda _: True) -> Iterator[tuple[str, bytes | None]]:
    """`iter_files`, plus (path, None) for each directory member, so that empty directories can be seen."""
    members = _reader(archive)
    files: set[str] = set()
    dirs: set[str] = set()
    links: dict[str, str] = {}
    for member, read in members(archive):
        if member.kind == "file":
            files.add(member.name)
            if wanted(member.name):
                yield member.name, read()
        elif member.kind == "dir":
            dirs.add(member.name)
            yield member.name, None
        else:
            links[member.name] = member.link or ""
    if not links:
        return
    aliases = {
        target: [alias for alias in names if wanted(alias)]
        for target, names in _LinkResolver(archive, files, dirs, links).aliases().items()
    }
    aliases = {target: names for target, names in aliases.items() if names}
    if not aliases:
        return
    for member, read in members(archive):  # second pass: the targets' contents
        if member.kind == "file" and member.name in aliases:
            content = read()
            for alias in aliases[member.name]:
                yield alias, content


def _reader(archive: Path) -> Callable[[Path], Iterator[Entry]]:
    """The member reader for `archive`'s format, recognised by its first bytes (not its name)."""
    try:
        with archive.open("rb") as stream:
            head = stream.read(512)
    except OSError as error:
        raise PipelineError(f"{archive} cannot be read ({error})") from error
    if head.startswith(_ZIP_MAGIC) or zipfile.is_zipfile(archive):
        return _zip_members
    if head.startswith(_COMPRESSED_TAR_MAGIC) or head[257:262] == b"ustar" or tarfile.is_tarfile(archive):
        return _tar_members
    raise PipelineError(
        f"{archive} is not an archive format this pipeline reads (its content is not {SUPPORTED}); "
        f"give a directory or an archive in one of those formats"
    )


_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError)


def _tar_members(archive: Path) -> Iterator[Entry]:
    try:
        with (
            archive.open("rb") as raw,
            progress.wrapattr(raw, "read", total=archive.stat().st_size, desc=archive.name, leave=False) as stream,
            tarfile.open(fileobj=stream, mode="r|*") as tar,
        ):
            for info in tar:
                reason = unsafe_reason(info)
                if reason is not None:
                    raise PipelineError(
                        f"{archive}: unsafe member {info.name!r} ({reason}); refusing to read this archive"
                    )
                yield _tar_member(archive, info), lambda info=info: _tar_read(archive, tar, info)
    except _TAR_ERRORS as error:
        raise _unreadable(archive, "tar", error) from error


def _unreadable(archive: Path, kind: str, error: BaseException) -> PipelineError:
    return PipelineError(
        f"{archive} is not a readable {kind} archive or is truncated ({error}); download or rebuild it"
    )


def _tar_member(archive: Path, info: tarfile.TarInfo) -> Member:
    name = _normalised(info.name)
    if info.isfile():
        return Member(name, "file")
    if info.isdir():
        return Member(name, "dir")
    if info.issym():
        return Member(name, "link", _normalised(posixpath.join(posixpath.dirname(name), info.linkname)))
    if info.islnk():
        return Member(name, "link", _normalised(info.linkname))
    raise PipelineError(f"{archive}: member {info.name!r} is a special file; the archive must hold files and links")


def _tar_read(archive: Path, tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    try:
        content = tar.extractfile(info)
        assert content is not None  # a regular file always has content
        return content.read()
    except _TAR_ERRORS as error:
        raise _unreadable(archive, "tar", error) from error


def _zip_members(archive: Path) -> Iterator[Entry]:
    try:
        with zipfile.ZipFile(archive) as zipped:
            for info in progress.bar(zipped.infolist(), desc=archive.name, unit="file", leave=False):
                yield _zip_member(archive, zipped, info), lambda info=info: _zip_read(archive, zipped, info)
    except NotImplementedError as error:
        raise _unsupported_compression(archive, error) from error
    except _ZIP_ERRORS as error:
        raise _unreadable(archive, "zip", error) from error


def _zip_read(archive: Path, zipped: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return zipped.read(info)
    except NotImplementedError as error:
        raise _unsupported_compression(archive, error) from error
    except _ZIP_ERRORS as error:
        raise _unreadable(archive, "zip", error) from error


def _unsupported_compression(archive: Path, error: NotImplementedError) -> PipelineError:
    # e.g. deflate64, which Windows' "compressed folder" writes for large files
    return PipelineError(
        f"{archive} uses a compression method Python's zipfile cannot read ({error}); re-create it with "
        "standard (deflate) compression, or give the folder or a .tar.gz instead"
    )


def _zip_member(archive: Path, zipped: zipfile.ZipFile, info: zipfile.ZipInfo) -> Member:
    reason = _unsafe_path(info.filename)
    if reason is None and info.flag_bits & 0x1:
        reason = "encrypted"
    mode = info.external_attr >> 16  # the Unix mode, when a Unix tool wrote the archive
    link = None
    if reason is None and stat.S_ISLNK(mode):
        link = zipped.read(info).decode("utf-8", errors="replace")  # a zip symbolic link stores its target
        reason = _unsafe_link(info.filename, link, symbolic=True)
    if reason is not None:
        raise PipelineError(f"{archive}: unsafe member {info.filename!r} ({reason}); refusing to read this archive")
    name = _normalised(info.filename)
    if link is not None:
        return Member(name, "link", _normalised(posixpath.join(posixpath.dirname(name), link)))
    if info.is_dir() or stat.S_ISDIR(mode):
        return Member(name, "dir")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # many tools (Python's zipfile too) write no file type
        raise PipelineError(f"{archive}: member {info.filename!r} is a special file; the archive must hold files")
    return Member(name, "file")


@dataclass
class _LinkResolver:
    """Which regular files each link makes visible, and under which paths (after a first pass listed them)."""

    archive: Path
    files: set[str]
    dirs: set[str]
    links: dict[str, str]

    def __post_init__(self) -> None:
        self.children: dict[str, set[str]] = defaultdict(set)  # directory ("" = root) -> entry names
        for path in (*self.files, *self.dirs, *self.links):
            parts = path.split("/")
            for depth in range(len(parts)):
                self.children["/".join(parts[:depth])].add(parts[depth])

    def aliases(self) -> dict[str, list[str]]:
        """Regular file -> the paths under which links show it."""
        found: dict[str, list[str]] = defaultdict(list)
        for link in sorted(self.links):
            self._visit(link, link, found, frozenset())
        return found

    def _visit(self, alias: str, path: str, found: dict[str, list[str]], above: frozenset[str]) -> None:
        target = self._through_links(alias, path)
        if target in self.files:
            found[target].append(alias)
        elif target in self.children or target in self.dirs:
            if target in above:
                raise PipelineError(f"{self.archive}: link {alias!r} leads back into {target!r} (a link loop)")
            for child in sorted(self.children.get(target, ())):
                self._visit(f"{alias}/{child}", f"{target}/{child}" if target else child, found, above | {target})
        else:
            raise PipelineError(
                f"{self.archive}: link {alias!r} points to {target!r}, which is not in the archive; "
                "add the target or remove the link"
            )

    def _through_links(self, alias: str, path: str) -> str:
        """`path` with every link among its leading components replaced by its target."""
        parts, index, hops = path.split("/"), 0, 0
        while index < len(parts):
            prefix = "/".join(parts[: index + 1])
            if prefix in self.links:
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise PipelineError(f"{self.archive}: link {alias!r}: too many levels of links (a link loop)")
                target = self.links[prefix]
                parts, index = [*(target.split("/") if target else []), *parts[index + 1 :]], 0
            else:
                index += 1
        return "/".join(parts)
