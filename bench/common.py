"""What the benchmarks share: the machine's description, timing, peak memory of a subprocess, result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEED = 0
PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "jax", "dvc", "mlflow", "numpy")
# The instruction sets that decide which kernels oneDNN picks, hence every speed figure (as /proc/cpuinfo names them).
RELEVANT_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def project_precision() -> str:
    """The train.mixed_precision the benchmarks' *project* side uses: bf16 where this CPU computes it natively
    (what a user of such a CPU would set: `auto` keeps float32 on CPUs, bench/precision_parity.md), else auto."""
    from overfit_first import accelerate  # imports Keras: only when asked

    return "bf16" if accelerate.native_bf16_cpu(accelerate.cpu_flags()) else "auto"


def isa_flags() -> list[str]:
    """RELEVANT_FLAGS that this CPU has, in that order (empty off Linux)."""
    from overfit_first.accelerate import cpu_flags  # imports Keras: only when asked

    flags = cpu_flags()
    return [flag for flag in RELEVANT_FLAGS if flag in flags]


def machine() -> dict[str, Any]:
    """nproc, CPU model and instruction sets, RAM, load average and library versions: what a reader needs to
    compare numbers."""
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8") if Path("/proc/cpuinfo").is_file() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text(encoding="utf-8") if Path("/proc/meminfo").is_file() else ""
    kib = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "isa_flags": isa_flags(),
        "ram_gib": round(kib / 2**20, 1),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "packages": versions,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


@dataclass
class Measured:
    """One subprocess's peak memory and duration."""

    returncode: int
    seconds: float
    peak_rss_bytes: int
    output: str = field(repr=False, default="")


def run_measured(command: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> Measured:
    """Run `command`, returning its exit status, wall-clock time and exact peak RSS (the kernel's, via wait4)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    output = process.stdout.read()  # until EOF; the child still exists (a zombie) until wait4 reaps it
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measured(process.returncode, time.perf_counter() - started, usage.ru_maxrss * 1024, output)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def stage_env(**extra: str) -> dict[str, str]:
    """The environment a DVC stage gets, offline, without inherited DVC or MLflow settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DVC_", "OVERFIT_FIRST_")) and key != "MLFLOW_TRACKING_URI"
    }
    env.update(PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", OVERFIT_FIRST_OFFLINE="1", **extra)
    return env


def write_result(path: Path | None, result: dict[str, Any]) -> None:
    """Save a benchmark's figures as JSON for `python -m bench` (each script prints them as it goes)."""
    if path is not None:
        path.write_text(json.dumps(result, indent=2), encoding="utf-8")
