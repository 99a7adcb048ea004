"""One error type for problems a user can fix, and the wrapper every entry point runs its main() in."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
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
    if _inside_native_library(frame):
        _raise_on_next_safe_call(signum, frame)
        return
    raise Interrupted(signum)


# Python code that native code calls back while it builds an operation (TensorFlow's C++ fast path converts shapes
# and attributes by calling its own Python): an exception raised there leaves the native side half-done, and glibc
# then aborts the process ("free(): invalid next size", a SIGABRT instead of the stop's exit status) when a stop
# signal lands in that window. There, the stop waits for the next Python call with no such code on the stack: in
# training, the next line of Keras' loop between two batches, milliseconds later (tests/test_interruption.py).
NATIVE_PACKAGES = ("tensorflow", "jax", "jaxlib")


@functools.cache
def _native_package_dirs() -> tuple[str, ...]:
    """The folders of NATIVE_PACKAGES that are installed, found without importing them."""
    found = []
    for name in NATIVE_PACKAGES:
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(name)
            if spec is not None:
                found += [os.path.join(folder, "") for folder in spec.submodule_search_locations or []]
    return tuple(found)


def _inside_native_library(frame: FrameType | None) -> bool:
    """Whether any frame of the stack is code of NATIVE_PACKAGES."""
    folders = _native_package_dirs()
    while frame is not None:
        if frame.f_code.co_filename.startswith(folders):
            return True
        frame = frame.f_back
    return False


def _raise_on_next_safe_call(signum: int, frame: FrameType | None) -> None:
    """Raise Interrupted(signum) at the first Python call or line of this thread run with no NATIVE_PACKAGES frame
    on the stack: a new call, or the next line of a frame below the native code once it has returned (a trace
    function: it watches only from the stop on)."""

    def trace(frame: FrameType, event: str, arg: object) -> Callable[..., object] | None:
        if event in ("call", "line") and not _inside_native_library(frame):
            sys.settrace(None)
            raise Interrupted(signum)
        return trace if event == "line" else None

    while frame is not None:
        if not frame.f_code.co_filename.startswith(_native_package_dirs()):
            frame.f_trace, frame.f_trace_lines = trace, True
        frame = frame.f_back
    sys.settrace(trace)


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
    Ctrl-C, SIGTERM or SIGHUP a line saying what was written and exit status 128 + the signal's number; a reader
    that stopped reading (`... | head -1`) ends it quietly with exit status 1, as the Python docs advise (their
    "Note on SIGPIPE")."""
    handle_stop_signals()
    try:
        main()
        sys.stdout.flush()  # here, not at exit: a closed pipe is met inside this `try`
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
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


def exit_on_stop_while_starting() -> None:
    """Until run_stage takes over: a stop signal while the entry point imports its libraries (TensorFlow takes
    seconds) ends it at once with the clean way out's line and exit status, instead of a KeyboardInterrupt
    traceback through the import machinery. Nothing is written before main() runs."""

    def stop(signum: int, frame: FrameType | None) -> None:
        print(interruption_message(signum), file=sys.stderr, flush=True)
        os._exit(128 + signum)

    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, stop)
