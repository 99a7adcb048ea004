"""Stage `prepare`: `python -m stages.prepare <dataset>` writes data/prepared/<dataset>/.

The files are described in overfit_first.data.splits; the splitting rules in overfit_first.data.prepare.
"""

from __future__ import annotations

import argparse

from overfit_first.config import load_params
from overfit_first.data.prepare import prepare
from overfit_first.errors import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.prepare", description=__doc__)
    parser.add_argument("dataset", help="a dataset already written to data/raw/ by the download stage")
    args = parser.parse_args()
    summary = prepare(args.dataset, load_params().prepare)
    counts = ", ".join(f"{name} {split['count']}" for name, split in summary["splits"].items())
    print(f"prepared {args.dataset}: {counts}; images {'x'.join(map(str, summary['image_shape']))}")


if __name__ == "__main__":
    run_stage(main)
