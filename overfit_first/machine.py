"""The machine a result was computed on: its CPU and the instruction-set flags that decide TensorFlow's kernels.

One implementation for both sides of the pull-request check: overfit_first.procedure.seed_spread records the machine
that measured the seed spread (metrics/seed_spread.json), and overfit_first.tools.pr_comment names it beside the machine
that reproduced the pull request. oneDNN picks its kernels, and so its rounding, by these flags: two machines with
different flags train to different numbers from the same params and seed.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import BaseModel, ConfigDict

# The CPU features that decide which kernels TensorFlow (oneDNN) runs, and so its rounding.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "jax", "numpy", "dvc")


class Machine(BaseModel):
    """A CPU model, its VECTOR_FLAGS (those it has, in VECTOR_FLAGS order), Python and the libraries that train."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: str
    cores: int
    cpu_flags: list[str]
    python: str
    packages: dict[str, str]  # TensorFlow, Keras, ... as installed

    def describe(self) -> str:
        """`Intel(R) Xeon(R) Processor (flags avx2, fma, ...)`."""
        return f"{self.cpu} (flags {', '.join(self.cpu_flags) or 'none of ' + ', '.join(VECTOR_FLAGS)})"


def machine() -> Machine:
    """This machine: the CPU model and flags from /proc/cpuinfo (Linux; elsewhere platform's name and no flags)."""
    cpu, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    packages = {}
    for package in PACKAGES:
        try:
            packages[package] = version(package)
        except PackageNotFoundError:
            continue
    return Machine(
        cpu=cpu,
        cores=os.cpu_count() or 0,
        cpu_flags=[flag for flag in VECTOR_FLAGS if flag in flags],
        python=platform.python_version(),
        packages=packages,
    )
