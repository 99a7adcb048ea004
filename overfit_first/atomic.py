"""Atomic outputs: a stage killed at any point never leaves a file that looks complete.

Everything is written under a temporary name in the same directory and renamed into place only when
complete; os.replace is atomic on POSIX file systems, so readers (and DVC) see the old file or the new.
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
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike[str], data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, sort_keys=False) + "\n")
