"""Reading tar archives safely, member by member, without extracting them to disk.

Streaming (mode "r|*") reads a 60,000-image archive in one pass with little memory and never writes a
file, so a hostile member cannot land anywhere. Members are still checked as if they were to be
extracted (absolute paths, "..", links leaving the archive, devices), so a malformed archive fails
with an error naming the archive and the member instead of being half-read.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from overfit_first import progress
from overfit_first.errors import PipelineError

# tarfile's "data" filter (Python >= 3.11.4) is applied as a second line of defence; its checks need a
# destination, so members are judged against this never-created directory.
_VIRTUAL_ROOT = "/overfit-first-archive-root"
_DATA_FILTER: Callable[[tarfile.TarInfo, str], tarfile.TarInfo] | None = getattr(tarfile, "data_filter", None)


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why extracting `member` could write outside the archive's directory, or None when it is safe."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith("\\"):
        return "absolute path"
    if ".." in path.parts:
        return "'..' in its path"
    if member.isdev():
        return "device or FIFO"
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        # A symlink is resolved from its own directory, a hard link from the archive root.
        target = (path.parent / link) if member.issym() else link
        if link.is_absolute() or _escapes(target):
            return f"link to {member.linkname!r} outside the archive"
    if _DATA_FILTER is not None:
        try:
            _DATA_FILTER(member, _VIRTUAL_ROOT)
        except tarfile.FilterError as error:
            return str(error)
    return None


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            return True
    return False


def iter_files(archive: Path, wanted: Callable[[str], bool] = lambda _: True) -> Iterator[tuple[str, bytes]]:
    """Yield (member name, content) for each regular file `wanted` accepts, in archive order.

    Every member is checked, wanted or not; a progress bar (stderr) follows the compressed bytes read.
    """
    try:
        with archive.open("rb") as raw, progress.wrapattr(
            raw, "read", total=archive.stat().st_size, desc=archive.name, leave=False
        ) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                yield from _read_member(archive, tar, member, wanted)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise PipelineError(
            f"{archive} is not a readable tar archive or is truncated ({error}); download or rebuild it"
        ) from error


def _read_member(
    archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, wanted: Callable[[str], bool]
) -> Iterator[tuple[str, bytes]]:
    reason = unsafe_reason(member)
    if reason is not None:
        raise PipelineError(f"{archive}: unsafe member {member.name!r} ({reason}); refusing to read this archive")
    if member.isdir() or not wanted(member.name):
        return
    if not member.isfile():
        raise PipelineError(
            f"{archive}: member {member.name!r} is a link or special file; the archive must hold regular files"
        )
    content = tar.extractfile(member)
    assert content is not None  # a regular file always has content
    yield member.name, content.read()
