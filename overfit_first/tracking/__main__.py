"""`python -m overfit_first tracking relog <run>` and `... links`: its --help is the package's docstring."""

from __future__ import annotations

import argparse

from overfit_first import layout, tracking
from overfit_first.errors import run_stage
from overfit_first.layout import repo_root
from overfit_first.tracking.relog import relog
from overfit_first.tracking.store import tracking_uri
from overfit_first.tracking.ui import UI_URL, links


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m overfit_first tracking",
        description=tracking.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("relog", help="log a trained run to MLflow from its output files").add_argument("run")
    show = commands.add_parser("links", help="each experiment's runs in the UI's model-training view")
    show.add_argument("--store", help="tracking URI (default: MLFLOW_TRACKING_URI, else the repository's mlflow.db)")
    show.add_argument("--url", default=UI_URL, help=f"the UI's address (default {UI_URL}, `make mlflow-ui`)")
    args = parser.parse_args()
    layout.require_repo_root()
    if args.command == "relog":
        relog(args.run)
    else:
        links(args.store or tracking_uri(repo_root()), args.url)


if __name__ == "__main__":
    run_stage(main)
