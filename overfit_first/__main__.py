"""The index of overfit-first's commands: `python -m overfit_first` lists them, `python -m overfit_first NAME` runs one.

    python -m overfit_first                                   # every command with its one-line purpose
    python -m overfit_first ladder dropout --seeds 0 1        # the ladder's own main() with those arguments
    python -m overfit_first ladder --help                     # its options, as the ladder itself prints them

The list lives here and nowhere else (tests/test_entry_points.py reads it): GROUPS, the commands by short name (the
module's file name) under their role, then what is listed but run otherwise, the stages (RUN_BY_DVC: `dvc repro`
runs them as dvc.yaml says) and the benchmarks (BENCHMARKS: `python -m bench`). A command runs as `python -m
<module>` would run it (runpy, sys.argv set), so its --help, exit status and root check are its own.

Listing imports nothing but the standard library: each purpose is the first sentence of its module's docstring,
read with ast, so the list comes at once whatever a command imports (TensorFlow, MLflow, scipy).
"""

from __future__ import annotations

import ast
import re
import runpy
import sys
import textwrap
from pathlib import Path

PROG = "python -m overfit_first"
ROOT = Path(__file__).resolve().parents[1]  # the repository: stages/ and bench/ lie beside overfit_first/
WIDTH = 120

# The commands by role: heading -> {short name: module}. A new `python -m` module joins one of them.
GROUPS: dict[str, dict[str, str]] = {
    "Checks and MLflow (overfit_first/: observers of the stages)": {
        "sanity": "overfit_first.sanity",
        "tracking": "overfit_first.tracking",
    },
    "The procedure (overfit_first/procedure/)": {
        "ladder": "overfit_first.procedure.ladder",
        "data_curve": "overfit_first.procedure.data_curve",
        "seed_spread": "overfit_first.procedure.seed_spread",
        "noise": "overfit_first.procedure.noise",
        "claims": "overfit_first.procedure.claims",
    },
    "Repository tools (overfit_first/tools/)": {
        "profiles": "overfit_first.tools.profiles",
        "pipelines": "overfit_first.tools.pipelines",
        "preview": "overfit_first.tools.preview",
        "pr_comment": "overfit_first.tools.pr_comment",
        "plots_html": "overfit_first.tools.plots_html",
        "article_gpu": "overfit_first.tools.article_gpu",
    },
}
COMMANDS: dict[str, str] = {name: module for group in GROUPS.values() for name, module in group.items()}
# Listed, not run from here: the stages (dvc.yaml's `python -m stages.<name>`), in the pipeline's order ...
RUN_BY_DVC = (
    "stages.sources",
    "stages.download",
    "stages.prepare",
    "stages.train",
    "stages.evaluate",
    "stages.plot",
    "stages.report",
)
# ... and the benchmarks, one command that runs its parts (`--only`).
BENCHMARKS = ("bench",)


def entry_points() -> dict[str, str]:
    """Every `python -m` entry point of the repository: a command by its short name, a stage or a benchmark by its
    module (the name it is run by) -> the module."""
    return {**COMMANDS, **{module: module for module in (*RUN_BY_DVC, *BENCHMARKS)}}


def source(module: str) -> Path | None:
    """The file whose docstring describes `module`: module.py, or a package's __init__.py; None when absent."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def purpose(module: str) -> str:
    """The first line of the module's docstring, read without importing the module; its first sentence where that
    line ends mid-sentence."""
    path = source(module)
    if path is None:
        return "(not in this checkout)"
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = docstring.split("\n")[0].strip()
    if first.endswith((".", "!", "?")):
        return first
    paragraph = " ".join(docstring.split("\n\n")[0].split())
    sentence = re.match(r"(.+?[.!?])(?:\s|$)", paragraph)
    return sentence[1] if sentence else paragraph


def row(name: str, text: str, width: int) -> str:
    """`name` in a column of `width`, then `text` wrapped below WIDTH with a hanging indent."""
    indent = " " * (2 + width + 2)
    return textwrap.fill(
        text,
        WIDTH,
        initial_indent=f"  {name:<{width}}  ",
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def listing() -> str:
    """What `python -m overfit_first` prints."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} NAME [ARGS ...]        (`{PROG} NAME --help`: its options)", ""]
    for heading, commands in GROUPS.items():
        lines += [f"{heading}:", *(row(name, purpose(module), width) for name, module in commands.items()), ""]
    others = {
        "Run by DVC (`dvc repro` runs them as dvc.yaml says, not this index)": RUN_BY_DVC,
        "Benchmarks (BENCHMARKS.md)": BENCHMARKS,
    }
    width = max(len(f"python -m {module}") for module in (*RUN_BY_DVC, *BENCHMARKS))
    for heading, modules in others.items():
        lines += [f"{heading}:", *(row(f"python -m {module}", purpose(module), width) for module in modules), ""]
    return "\n".join(lines[:-1]) + "\n"


def run(name: str, args: list[str]) -> None:
    """Run the command `name` as `python -m <its module> <args>` would (its SystemExit passes through); a stop
    signal while it imports its libraries ends it with the clean way out's line (errors.run_stage takes over)."""
    from overfit_first import errors

    errors.exit_on_stop_while_starting()
    sys.argv = [f"{PROG} {name}", *args]
    runpy.run_module(COMMANDS[name], run_name="__main__", alter_sys=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(listing())
        return 0
    name, *args = argv
    if name in COMMANDS:
        run(name, args)
        return 0
    runs_otherwise = {module: module for module in (*RUN_BY_DVC, *BENCHMARKS)}
    runs_otherwise.update({module.removeprefix("stages."): module for module in RUN_BY_DVC})
    hint = f" (run `python -m {runs_otherwise[name]}`, not through this index)" if name in runs_otherwise else ""
    sys.stderr.write(f"{PROG}: unknown command {name!r}{hint}\n\n{listing()}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
