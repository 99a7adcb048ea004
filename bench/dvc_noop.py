"""`dvc repro` with nothing to do, against `dvc --version` (DVC's own start-up) as the baseline.

    python -m bench.dvc_noop --scratch DIR [--rounds 3] [--out FILE]

Builds a git + DVC repository in DIR with the project's code, dvc.yaml and params.yaml, but a tiny
image-folder dataset and two one-epoch runs (mlp and cnn_simplified), reproduces the whole pipeline once
(download, prepare, train, evaluate, plot, report), commits, then times `dvc repro` (nothing to do) and
`dvc --version`, alternately; the median of each counts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from bench.common import REPO, stage_env, write_result
from overfit_first.config import read_yaml

CODE = ("dvc.yaml", "stages", "overfit_first", ".gitignore", ".dvcignore")
DATASET = "tiny"
TARGET_SECONDS = 5.0


def tiny_image_folder(archive: Path, classes: int = 3, per_class: int = 8) -> None:
    """train/<class>/*.png and test/<class>/*.png, 32x32 RGB, as a .tar.gz."""
    rng = np.random.default_rng(0)
    with tarfile.open(archive, "w:gz") as tar:
        for split, count in (("train", per_class), ("test", 2)):
            for label in range(classes):
                for index in range(count):
                    path = archive.parent / "images" / split / f"class{label}" / f"{index}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
                    tar.add(path, arcname=f"{split}/class{label}/{index}.png")


def build_repo(repo: Path, env: dict[str, str]) -> float:
    """The scratch repository, fully reproduced and committed; returns the seconds of the full `dvc repro`."""
    repo.mkdir(parents=True)
    for name in CODE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, repo / name)
    archive = repo.parent / "tiny.tar.gz"
    tiny_image_folder(archive)
    params = read_yaml(REPO / "params.yaml")
    params["data"].update(datasets=[DATASET], mirror=None, image_folders={DATASET: str(archive)})
    params["prepare"].update(valid_size=4, sample_size=None, pad_to=32)
    params["train"].update(subset_size=None)
    params["runs"] = {
        f"{DATASET}-mlp": {"dataset": DATASET, "model": "mlp", "tuned_by": "train", "epochs": 1},
        f"{DATASET}-cnn_simplified": {
            "dataset": DATASET,
            "model": "cnn_simplified",
            "tuned_by": "model.dropout",
            "epochs": 1,
        },
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    dvc(repo, env, "init", "-q")
    dvc(repo, env, "config", "core.analytics", "false")
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "pipeline"], cwd=repo, check=True)
    started = time.perf_counter()
    dvc(repo, env, "repro")
    seconds = time.perf_counter() - started
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "reproduced"], cwd=repo, check=True)
    return seconds


def dvc(repo: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def timed(repo: Path, env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    output = dvc(repo, env, *args)
    return time.perf_counter() - started, output


def measure(scratch: Path, rounds: int) -> dict[str, Any]:
    repo = scratch / "repo"
    # The stages run `python`: the interpreter running this benchmark, with its packages.
    env = stage_env(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    full = build_repo(repo, env)
    stages = len(yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"])
    noop, version = [], []
    for _ in range(rounds):
        seconds, output = timed(repo, env, "repro")
        if "Running stage" in output:
            raise RuntimeError(f"`dvc repro` was expected to have nothing to do:\n{output}")
        noop.append(seconds)
        version.append(timed(repo, env, "--version")[0])
    result = {
        "stages": stages,
        "full_repro_seconds": full,
        "noop_seconds": noop,
        "version_seconds": version,
        "noop_median": statistics.median(noop),
        "version_median": statistics.median(version),
    }
    result["ratio"] = result["noop_median"] / result["version_median"]
    print(f"full `dvc repro` of {stages} stages on tiny data: {full:.1f} s")
    print(
        f"`dvc repro` with nothing to do: {result['noop_median']:.2f} s (median of {rounds}); "
        f"`dvc --version`: {result['version_median']:.2f} s"
    )
    print(
        f"RATIO no-op repro / dvc --version = {result['ratio']:.2f} (target: no-op <= {TARGET_SECONDS} s)", flush=True
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dvc_noop", description=__doc__.split("\n")[0])
    parser.add_argument("--scratch", type=Path, required=True, help="an empty scratch directory (created)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    write_result(args.out, measure(args.scratch.resolve(), args.rounds))


if __name__ == "__main__":
    main()
