"""Stage `sources`: `python -m stages.sources` writes data/sources/<dataset>.json for every dataset in params
`data.datasets`, with the checksum of each image folder's content (overfit_first.data.download.write_sources).

dvc.yaml marks it always_changed: it runs on every `dvc repro` (a second or so: an archive's bytes, or a
directory's files, are hashed), and `download@<dataset>` reruns exactly when its file changed.
"""

from __future__ import annotations

import argparse

from overfit_first.config import load_params
from overfit_first.data.download import write_sources
from overfit_first.errors import run_stage


def main() -> None:
    argparse.ArgumentParser(prog="python -m stages.sources", description=__doc__).parse_args()
    data = load_params().data
    directory = write_sources(data)
    print(f"wrote {directory}: {', '.join(data.datasets)}")


if __name__ == "__main__":
    run_stage(main)
