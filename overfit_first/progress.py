"""Progress bars that suit where they are shown: live on a terminal, a few whole lines in a log.

On a terminal tqdm redraws its bar in place up to ten times a second. Sent to a file or a CI log (`dvc repro
> log`, GitHub Actions), each redraw is one more carriage-return fragment: hundreds for a download. There a
bar prints a whole line at most every `OVERFIT_FIRST_PROGRESS_INTERVAL` seconds (default 30), plus its first
and its last state, so a log still shows how far a long download or decoding got.

Keras's training log needs nothing of this: `model.fit(verbose=2)` (overfit_first.training) prints one line
per epoch on a terminal and in a log alike, and prediction runs with verbose=0.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm
from tqdm.utils import CallbackIOWrapper

LOG_INTERVAL_S = 30.0


def is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def log_interval() -> float:
    """Seconds between two lines of a bar in a log: env OVERFIT_FIRST_PROGRESS_INTERVAL, default 30."""
    value = os.environ.get("OVERFIT_FIRST_PROGRESS_INTERVAL", "")
    try:
        return max(float(value), 0.0) if value.strip() else LOG_INTERVAL_S
    except ValueError:
        return LOG_INTERVAL_S


class _Lines:
    """A stream for tqdm that turns each in-place redraw ("\\r" + bar + padding) into one whole line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:  # the "\n" tqdm ends a bar with, and the blank redraw that clears one, add nothing
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable: Iterable[Any] | None = None, file: TextIO | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar (same arguments) on `file`, by default stderr, live on a terminal and log-friendly elsewhere."""
    stream = file if file is not None else sys.stderr
    if is_terminal(stream):
        return tqdm(iterable, file=stream, **kwargs)
    interval = log_interval()
    # leave=True: clearing the bar at the end is for terminals; in a log the last line is the result.
    # maxinterval: tqdm's monitor thread would otherwise force a redraw every 10 s.
    log_settings = {"mininterval": interval, "maxinterval": max(interval, 1.0), "leave": True, "ascii": True}
    return tqdm(iterable, file=_Lines(stream), **{**kwargs, **log_settings})


@contextlib.contextmanager
def wrapattr(stream: Any, method: str, **kwargs: Any) -> Iterator[CallbackIOWrapper]:
    """tqdm.wrapattr through bar(): `stream` whose `method` (read or write) advances the bar by the bytes passed."""
    with bar(**kwargs) as progress:
        yield CallbackIOWrapper(progress.update, stream, method)
