"""`dvc plots show` and `dvc plots diff`, written as pages that render without internet access.

DVC's page loads vega, vega-lite and vega-embed from cdn.jsdelivr.net: offline, behind a firewall, or
opened later from a CI artifact, its charts stay blank. This runs the same DVC command with
`--html-template`: a page that carries the three libraries inline, taken from the npm packages pinned in
js/package.json (install them once with `npm ci --prefix js`; `scripts/setup.sh --dev` does).

    python -m overfit_first plots_html show                      # = dvc plots show, into dvc_plots/
    python -m overfit_first plots_html diff origin/main -o out   # = dvc plots diff origin/main -o out

Any other arguments go to DVC unchanged. Image plots are copied beside the page, as DVC always does.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from overfit_first import layout
from overfit_first.errors import PipelineError, run_stage
from overfit_first.procedure import dvc_client

NODE_MODULES = Path(__file__).resolve().parents[2] / "js" / "node_modules"
# In the order a page must load them: vega-lite and vega-embed need vega.
LIBRARIES = ("vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js", "vega-embed/build/vega-embed.min.js")


def html_template(node_modules: Path = NODE_MODULES) -> str:
    """DVC's page layout with the libraries inline; {plot_divs} is where DVC puts the charts."""
    scripts = []
    for library in LIBRARIES:
        path = node_modules / library
        if not path.is_file():
            raise PipelineError(f"{path} not found: install the plotting libraries with `npm ci --prefix js`")
        # A literal "</script" inside the code would end the inline script early.
        code = path.read_text(encoding="utf-8").replace("</script", "<\\/script")
        scripts.append(f"<script>/* {library} */\n{code}\n</script>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            "<html>",
            "<head>",
            '<meta charset="utf-8">',
            "<title>DVC Plot</title>",
            *scripts,
            "<style>table { border-spacing: 15px; }</style>",
            "</head>",
            "<body>",
            "{plot_divs}",
            "</body>",
            "</html>",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m overfit_first plots_html",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("show", "diff"), help="the `dvc plots` subcommand")
    parser.add_argument(
        "--node-modules",
        type=Path,
        default=NODE_MODULES,
        help=f"where `npm ci --prefix js` installed the libraries (default: {NODE_MODULES})",
    )
    args, rest = parser.parse_known_args()
    layout.require_repo_root()
    with tempfile.TemporaryDirectory() as scratch:
        template = Path(scratch) / "offline.html"
        template.write_text(html_template(args.node_modules), encoding="utf-8")
        dvc_client.run("plots", args.command, *rest, "--html-template", str(template), capture=False)


if __name__ == "__main__":
    run_stage(main)
