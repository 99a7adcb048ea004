"""Atomic outputs: a stage killed at any point never leaves a file that looks complete.

Everything is written under a temporary name in the same directory and renamed into place only when
complete; os.replace is atomic on POSIX file systems, so readers (and DVC) see the old file or the new.
Each process also records what it replaced, so that an interrupted stage can say which outputs it wrote
(overfit_first.errors.run_stage).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Every target this process replaced, with the inode of each content it moved there (os.replace keeps it).
# Recorded before the rename, checked against the file later: so a signal between the rename and the record
# cannot hide an output that was written, nor can a write that never got renamed be claimed.
_replaced: dict[Path, set[int]] = {}


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`, on error delete it.

    Works for files and directories alike: whatever the body creates at the yielded path is moved.
    A temporary directory that a killed writer of the same target left behind is deleted first: each
    output has one writer (its stage), so any such leftover is stale.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp = tmp_dir / target.name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            # Moved aside in one rename (deleted with tmp_dir below), not deleted in place: a signal during a
            # long delete would leave neither the old directory nor the new one.
            os.replace(target, tmp_dir / f"{target.name}.old")
        _replaced.setdefault(target, set()).add(tmp.lstat().st_ino)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def written_outputs() -> list[Path]:
    """The targets this process replaced that still hold what it wrote, in the order first written.

    Files in a hidden directory (.cache/train/<run>/: the resume state of training) are the stage's working
    state, not outputs, and are left out.
    """
    return [target for target, inodes in _replaced.items() if _inode(target) in inodes and not _hidden(target.parent)]


def _hidden(directory: Path) -> bool:
    return any(part.startswith(".") and part != ".." for part in directory.parts)


def _inode(path: Path) -> int | None:
    try:
        return path.lstat().st_ino
    except OSError:
        return None


def write_text(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike[str], data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, sort_keys=False) + "\n")
