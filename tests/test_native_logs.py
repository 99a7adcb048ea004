"""overfit_first.native_logs, as every stage starts it (stages/__init__.py): TensorFlow's native INFO and WARNING
lines are dropped from stderr, everything else passes in order, a crashing process's last line included; with
TF_CPP_MIN_LOG_LEVEL=0 nothing is dropped. The lines are written to file descriptor 2 as TensorFlow's C++ writes
them; tests/scratch_repo.py's tiny_pipeline checks that a real `dvc repro` prints none of TensorFlow's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO

NATIVE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796449040.523507   17347 port.cc:153] oneDNN custom operations are on.",
    "I1205 06:01:02.123456   17347 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use ...",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
    "compiler flags.",
    "W0000 00:00:1796449040.6   17347 some/file.cc:12] a native warning",
    "E0000 00:00:1796449041.1   17347 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool which "
    "is not in the op definition: Op<name=MapDataset; ...> This may be expected if your graph generating binary is "
    "newer than this binary. Unknown attributes will be ignored.",
]
KEPT = [
    "E0000 00:00:1796449040.7   17347 kernel.cc:9] a native error",
    "fashion_mnist-mlp: best epoch 27 of 37",
    "Traceback (most recent call last):",
]
STAGE = """
import os, sys
import stages  # what `python -m stages.<name>` runs first
lines = sys.argv[1:]
for line in lines:
    os.write(2, (line + "\\n").encode())
print("stdout stays stdout")
if lines and lines[-1] == "free(): invalid next size (fast)":
    os.abort()
"""


def run(lines: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-c", STAGE, *lines],
        cwd=REPO,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_native_lines_are_dropped_and_the_rest_kept_in_order() -> None:
    result = run([NATIVE[0], KEPT[0], *NATIVE[1:3], KEPT[1], *NATIVE[3:], KEPT[2]])
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == KEPT
    assert result.stdout == "stdout stays stdout\n"


@pytest.mark.parametrize("level", ["2", "3"])
def test_a_level_the_user_set_still_filters(level: str) -> None:
    assert run([*NATIVE, KEPT[1]], TF_CPP_MIN_LOG_LEVEL=level).stderr.splitlines() == [KEPT[1]]


def test_level_0_shows_everything() -> None:
    assert run([*NATIVE, KEPT[1]], TF_CPP_MIN_LOG_LEVEL="0").stderr.splitlines() == [*NATIVE, KEPT[1]]


def test_a_native_crash_keeps_its_last_words() -> None:
    result = run([NATIVE[1], "free(): invalid next size (fast)"])
    assert result.returncode == -signal.SIGABRT
    assert result.stderr.splitlines() == ["free(): invalid next size (fast)"]
