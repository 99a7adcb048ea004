"""Peak memory of the data stages on CIFAR-10: `download` and `prepare` of the cifar10_jpeg image folder.

    python -m bench.prepare_memory --archive ../shared/datasets/cifar10-jpeg.tar.gz --project DIR [--out FILE]

Runs the two stages as DVC would (`python -m stages.download cifar10_jpeg`, then `stages.prepare`) in a
scratch project DIR whose params.yaml maps data.image_folders.cifar10_jpeg to the archive, read in place.
The peak RSS of each process is the kernel's (wait4). The baseline is the raw dataset's bytes: the
decoded arrays of data/raw/cifar10_jpeg (60,000 x 32 x 32 x 3 uint8 images and their labels), what
`prepare` reads; the ratio is peak RSS / those bytes. The interpreter with the stage's imports and no
data is measured too, to show what of the peak is fixed cost.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.common import REPO, python_module, run_measured, stage_env, write_result
from overfit_first.config import read_yaml

DATASET = "cifar10_jpeg"
TARGET = 2.0


def npz_array_bytes(path: Path) -> int:
    """The bytes of the arrays in an .npz, read from their headers (nothing is loaded)."""
    total = 0
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                major, _ = np.lib.format.read_magic(member)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(member)
                total += int(np.prod(shape)) * np.dtype(dtype).itemsize
    return total


def scratch_project(project: Path, archive: Path) -> None:
    params = read_yaml(REPO / "params.yaml")
    params["data"].update(datasets=[DATASET], mirror=None, image_folders={DATASET: str(archive.resolve())})
    params["prepare"].update(valid_size=5000, sample_size=None)  # the article's split
    params["runs"] = {
        f"{DATASET}-cnn_simplified": {"dataset": DATASET, "model": "cnn_simplified", "tuned_by": "model.dropout"}
    }
    project.mkdir(parents=True, exist_ok=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def measure(archive: Path, project: Path) -> dict[str, Any]:
    scratch_project(project, archive)
    env = stage_env()
    result: dict[str, Any] = {"archive_bytes": archive.stat().st_size}
    idle = run_measured([*python_module("stages.prepare", "--help")], cwd=project, env=env)
    result["imports_only_peak_rss_bytes"] = idle.peak_rss_bytes
    for stage in ("download", "prepare"):
        measured = run_measured(python_module(f"stages.{stage}", DATASET), cwd=project, env=env)
        if measured.returncode != 0:
            raise RuntimeError(f"stages.{stage} failed:\n{measured.output}")
        result[stage] = {"seconds": measured.seconds, "peak_rss_bytes": measured.peak_rss_bytes}
    raw_bytes = sum(npz_array_bytes(path) for path in sorted((project / "data" / "raw" / DATASET).glob("*.npz")))
    result["raw_bytes"] = raw_bytes
    for stage in ("download", "prepare"):
        result[stage]["ratio"] = result[stage]["peak_rss_bytes"] / raw_bytes
    mib = 2**20
    print(
        f"raw dataset: {raw_bytes / mib:.1f} MiB decoded (archive {result['archive_bytes'] / mib:.1f} MiB); "
        f"interpreter with the stage's imports: {idle.peak_rss_bytes / mib:.0f} MiB"
    )
    for stage in ("download", "prepare"):
        print(f"{stage}: peak RSS {result[stage]['peak_rss_bytes'] / mib:.0f} MiB in {result[stage]['seconds']:.1f} s")
    print(
        f"RATIO prepare peak RSS / raw bytes = {result['prepare']['ratio']:.2f} (target <= {TARGET}); "
        f"download: {result['download']['ratio']:.2f}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.prepare_memory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archive", type=Path, default=REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz")
    parser.add_argument("--project", type=Path, required=True, help="a scratch directory (created)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    write_result(args.out, measure(args.archive, args.project))


if __name__ == "__main__":
    main()
