"""Stage `download`: `python -m stages.download <dataset>` writes data/raw/<dataset>/ (see overfit_first.data.raw)."""

from __future__ import annotations

import argparse

from overfit_first.config import load_params
from overfit_first.data.download import download
from overfit_first.errors import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.download", description=__doc__)
    parser.add_argument("dataset", help="fashion_mnist, mnist, cifar10, cifar100, or a key of data.image_folders")
    args = parser.parse_args()
    directory = download(args.dataset, load_params().data)
    print(f"wrote {directory}")


if __name__ == "__main__":
    run_stage(main)
