"""Stage `download`: `python -m stages.download <dataset>` writes data/raw/<dataset>/ (see overfit_first.data.raw)."""

from __future__ import annotations

import argparse

from overfit_first import config, layout
from overfit_first.data.download import download
from overfit_first.errors import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", help="fashion_mnist, mnist, cifar10, cifar100, or a key of data.image_folders")
    args = parser.parse_args()
    layout.require_repo_root()
    directory = download(args.dataset, config.section(config.load_params(), "data"))
    print(f"wrote {directory}")


if __name__ == "__main__":
    run_stage(main)
