"""One error type for problems a user can fix, and the wrapper every entry point runs its main() in."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

from overfit_first import atomic

# What stops a program from outside: Ctrl-C (SIGINT); `timeout`, `kill` and CI cancellation (SIGTERM); a closed
# terminal or SSH session (SIGHUP). All three take the same way out (see run_stage).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class PipelineError(Exception):
    """A problem with the user's input or environment: the message names the file or key and the fix."""


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised wherever the program was, exactly as Ctrl-C raises KeyboardInterrupt.

    A KeyboardInterrupt, so that every `finally` and context manager on the way out runs (temporary files
    are removed, an MLflow run is ended as KILLED: overfit_first.tracking) and no `except Exception` of a
    best-effort step swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Further stop signals are ignored from here on: the cleanup on the way out (ending the MLflow run, which
    # MLflow's HTTP timeout bounds) must not itself be cut short, or the run would stay RUNNING. CI sends
    # SIGINT, then SIGTERM a few seconds later; SIGKILL still ends the process at once.
    for stop in STOP_SIGNALS:
        if signal.getsignal(stop) is _interrupt:
            signal.signal(stop, signal.SIG_IGN)
    raise Interrupted(signum)


def handle_stop_signals() -> None:
    """Make SIGINT, SIGTERM and SIGHUP raise Interrupted; one ignored at start (`nohup`, `trap '' HUP`) stays so."""
    for stop in STOP_SIGNALS:
        if signal.getsignal(stop) is not signal.SIG_IGN:
            signal.signal(stop, _interrupt)


def interruption_message(signum: int) -> str:
    """What an interrupted process wrote, truthfully: each output is replaced whole or not at all (atomic)."""
    written = atomic.written_outputs()
    name = signal.Signals(signum).name
    if not written:
        return f"interrupted by {name}: no output was written"
    return (
        f"interrupted by {name}: wrote {', '.join(str(path) for path in written)} (each complete); "
        "no other output was written"
    )


def run_stage(main: Callable[[], None]) -> None:
    """Run an entry point's main(): a PipelineError becomes one readable line on stderr and exit status 1;
    Ctrl-C, SIGTERM or SIGHUP a line saying what was written and exit status 128 + the signal's number."""
    handle_stop_signals()
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as interruption:
        signum = interruption.signum if isinstance(interruption, Interrupted) else signal.SIGINT
        print(interruption_message(signum), file=sys.stderr, flush=True)
        # Every `finally` and context manager on the way here has run (temporary files removed, MLflow runs ended):
        # leave without the interpreter's finalization, which tears TensorFlow down while its own threads (tf.data's
        # prefetching, its thread pools) may still run after a stop in mid-training: glibc then aborts ("free():
        # invalid next size") instead of the exit status a stopped process owes (tests/test_tracking.py).
        sys.stdout.flush()
        os._exit(128 + signum)
