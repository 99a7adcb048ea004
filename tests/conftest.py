"""Fixtures shared by the suite: the repository root, a scratch project, and running stages for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def stage_env(**extra: str) -> dict[str, str]:
    """Environment for a stage subprocess: the repo importable, TensorFlow quiet, no user MLflow store."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def run_stage(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m <module> <args>` as DVC would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd, env=env or stage_env(), capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def default_params() -> dict:
    """A fresh copy of the repository's params.yaml, for tests to modify."""
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def write_params(directory: Path, params: dict) -> Path:
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path
