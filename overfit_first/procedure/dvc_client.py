"""The one way the procedure and the repository tools run `dvc`, and the one reader of the metrics it prints.

`run` runs `dvc <args>` in the current directory, its output either captured (returned, and quoted when it fails)
or passed through to the terminal (a training's progress, where a page was written). Captured output goes through
temporary files, never pipes: `dvc queue start` leaves workers in the background that inherit its stdout and stderr
and live until the queue is empty, and reading a pipe to its end would wait for them (a whole sweep without a line
of progress). A failure is a PipelineError that names the command, its exit status and, where the caller knows it,
the fix; a `dvc` that cannot start, the virtualenv.

`experiment_metrics` reads experiments' metrics from `dvc exp show --json`, `workspace_metrics` the workspace's from
`dvc metrics show --json`, both as {metrics file: {metric: value}}.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from overfit_first.errors import PipelineError

Metrics = dict[str, dict[str, Any]]  # metrics file -> metric -> value


class Output(NamedTuple):
    """What a `dvc` command printed (empty when it went to the terminal) and its exit status."""

    stdout: str
    stderr: str
    returncode: int


def run(
    *args: str,
    capture: bool = True,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    fix: str = "",
) -> Output:
    """`dvc <args>`; with `capture` its output is returned, else it goes to the terminal as it comes.

    With `check`, a non-zero exit is a PipelineError naming the command and its exit status, then its captured
    output (or that it is above) and `fix`, what to do about it. A `dvc` that cannot start (or runs past `timeout`
    seconds) is a PipelineError whatever `check` says."""
    command = ["dvc", *args]
    shown = " ".join(command)
    stdout = stderr = ""
    try:
        if capture:
            with _scratch() as out, _scratch() as err:
                result = subprocess.run(command, stdout=out, stderr=err, env=env, timeout=timeout)
                stdout, stderr = _read(out), _read(err)
        else:
            result = subprocess.run(command, env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PipelineError(f"`{shown}` could not run ({error}): is the virtualenv active?") from error
    if check and result.returncode != 0:
        said = "\n".join(text.strip() for text in (stdout, stderr) if text.strip()) or "(no output)"
        message = f"`{shown}` failed (exit {result.returncode})"
        message += f":\n{said}" if capture else "; its output is above"
        raise PipelineError(message + (f"\n{fix}" if fix else ""))
    return Output(stdout, stderr, result.returncode)


def _scratch() -> Any:
    return tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")


def _read(stream: Any) -> str:
    stream.seek(0)
    return stream.read()


def _by_file(shown: dict[str, Any] | None) -> Metrics:
    """DVC's {path: {"data": {metric: value}}} as {metrics file: {metric: value}}; a file it could not read: {}."""
    return {Path(path).as_posix(): (result or {}).get("data") or {} for path, result in (shown or {}).items()}


def experiment_metrics(names: Sequence[str], all_commits: bool = False) -> dict[str, Metrics]:
    """{name: {metrics file: {metric: value}}} of those of `names` that `dvc exp show --json` lists as succeeded: a
    failed or queued one is left out (DVC would show the metrics it started from).

    The current commit's experiments; with `all_commits`, when some name is not among them, every commit's too
    (`--all-commits`, slower: an experiment run on an earlier commit)."""
    found: dict[str, Metrics] = {}
    for scope in ((), ("--all-commits",)) if all_commits else ((),):
        shown = json.loads(run("exp", "show", "--json", "--hide-failed", "--hide-queued", *scope).stdout or "[]")
        for baseline in shown:
            for experiment in baseline.get("experiments") or []:
                if (experiment.get("executor") or {}).get("state", "success") != "success":
                    continue
                for rev in experiment.get("revs") or []:
                    if rev.get("name") in names:
                        found[rev["name"]] = _by_file((rev.get("data") or {}).get("metrics"))
        if all(name in found for name in names):
            break
    return found


def workspace_metrics() -> Metrics:
    """The workspace's metrics, {metrics file: {metric: value}}, from `dvc metrics show --json`."""
    shown = json.loads(run("metrics", "show", "--json").stdout or "{}")
    return _by_file(next(iter(shown.values()), {}).get("data"))
