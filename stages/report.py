"""Stage `report`: write reports/README.md, every dataset's results, comparison and charts (overfit_first.report).

python -m stages.report
"""

from __future__ import annotations

import argparse

from overfit_first import atomic, layout, report
from overfit_first.config import load_params
from overfit_first.errors import run_stage


def main() -> None:
    argparse.ArgumentParser(prog="python -m stages.report", description="Write reports/README.md.").parse_args()
    atomic.write_text(layout.REPORT_FILE, report.build(load_params()))
    print(f"wrote {layout.REPORT_FILE}", flush=True)


if __name__ == "__main__":
    run_stage(main)
