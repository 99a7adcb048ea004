"""Where the stages write, in one place: train, evaluate, plot, report and the pull-request comment read
each other's files through these paths (relative to the repository root, where DVC runs every stage).

    models/<dataset>/<model>.keras                     train
    models/<dataset>/<model>.metrics.json, .history.csv train: best-epoch numbers and the per-epoch log
    metrics/<dataset>/train/<model>.json, .history.csv evaluate: a copy of those two, published
    metrics/<dataset>/<model>.json                     evaluate: the train numbers + test, gap, verdict
    metrics/<dataset>/<model>.per_class.json           evaluate: per-class and per-superclass accuracy
    metrics/<dataset>/<model>.predictions.csv          evaluate: actual,predicted class names, test order
    metrics/<dataset>.comparison.json                  plot: overfitting vs simplified (and augmented)
    reports/<dataset>/*.png, validation_curves.csv     plot
    reports/README.md                                  report
    metrics/seed_spread.json                           python -m overfit_first seed_spread (not a stage)

Every output of train@ is in DVC's cache, none in git: DVC's run-cache then restores a training it has seen
(`dvc exp run -S model.dropout=0.3`, then back to 0.4; a teammate's pushed run in the pull-request check), which it
cannot for a stage with an uncached output. Git keeps evaluate's copies of the training log (`metrics/<dataset>/
train/`), which the plot stage, `dvc plots` and bench/parity.py read.

The comparison sits beside metrics/<dataset>/, not inside it: the plot stage depends on that whole
directory, and DVC rejects a stage whose output lies inside one of its own dependencies (a cycle).
The seed spread is in .dvcignore: the report stage depends on the whole metrics/ directory, and refreshing
the measurement of noise must not make the pipeline look changed.

Every entry point (`python -m stages.*`, `overfit_first.tools.pr_comment`, ...) starts with require_repo_root(): run
from a subdirectory, these relative paths would name files that do not exist, or the wrong ones.
Paths a user writes in params.yaml (an image folder, a mirror directory) are read with `user_path`: relative
to the repository root, also when DVC runs the stage in a temporary copy of the repository (`repo_root`).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from overfit_first.errors import PipelineError

ROOT_MARKER = "dvc.yaml"
RUN_FROM_ROOT = f"run from the repository root (where {ROOT_MARKER} is)"

MODELS = Path("models")
METRICS = Path("metrics")
REPORTS = Path("reports")
REPORT_FILE = REPORTS / "README.md"
SEED_SPREAD = METRICS / "seed_spread.json"


def model_file(dataset: str, model: str) -> Path:
    return MODELS / dataset / f"{model}.keras"


def train_metrics_file(dataset: str, model: str) -> Path:
    return MODELS / dataset / f"{model}.metrics.json"


def history_file(dataset: str, model: str) -> Path:
    return MODELS / dataset / f"{model}.history.csv"


def published_train_metrics_file(dataset: str, model: str) -> Path:
    return METRICS / dataset / "train" / f"{model}.json"


def published_history_file(dataset: str, model: str) -> Path:
    return METRICS / dataset / "train" / f"{model}.history.csv"


def eval_metrics_file(dataset: str, model: str) -> Path:
    return METRICS / dataset / f"{model}.json"


def per_class_file(dataset: str, model: str) -> Path:
    return METRICS / dataset / f"{model}.per_class.json"


def predictions_file(dataset: str, model: str) -> Path:
    return METRICS / dataset / f"{model}.predictions.csv"


def comparison_file(dataset: str) -> Path:
    return METRICS / f"{dataset}.comparison.json"


def report_dir(dataset: str) -> Path:
    return REPORTS / dataset


def require_repo_root(directory: Path | None = None) -> None:
    """Stop with one shared error when `directory` (default: the working directory) lies inside a project
    but is not its root: an ancestor holds dvc.yaml and the directory does not.

    A directory outside any project passes (a scratch project with only params.yaml, as the tests build):
    what it lacks is then reported by whatever needs it, e.g. "params.yaml not found".
    """
    here = (directory or Path.cwd()).resolve()
    if (here / ROOT_MARKER).is_file():
        return
    root = next((parent for parent in here.parents if (parent / ROOT_MARKER).is_file()), None)
    if root is not None:
        raise PipelineError(f"{RUN_FROM_ROOT}: {here} is inside the repository; cd {shlex.quote(str(root))} first")


def repo_root() -> Path:
    """The repository the run belongs to, also when DVC runs the stage in a temporary copy.

    DVC sets DVC_ROOT for every stage it runs, and for `dvc exp run --queue` / `--temp` it points at the
    original repository, not at the copy in <repo>/.dvc/tmp/exps/<tmpdir>/ where the stage runs. Run by
    hand inside such a copy, the path itself tells; elsewhere, the nearest directory holding .dvc/ (a
    pipeline folder's stages run one level below it), else the working directory.
    """
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    cwd = Path.cwd().resolve()
    parts = cwd.parts
    for index in range(len(parts) - 2):
        if parts[index : index + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:index])
    # A pipeline folder (overfit_first.tools.pipelines) lies inside the repository: its root holds .dvc/.
    return next((directory for directory in (cwd, *cwd.parents) if (directory / ".dvc").is_dir()), cwd)


_VARIABLE = re.compile(r"\$(\w+|\{([^}]*)\})")


def user_path(text: str, key: str) -> Path:
    """`text` from params.yaml `key` as an absolute path: `~` and $VARIABLES expanded, relative to `repo_root()`.

    A copy of the repository made by `dvc exp run --queue` or `--temp` lies elsewhere, so a relative path
    such as ../shared/datasets/x.tar.gz must be read against the original repository, not the working
    directory. Raises PipelineError naming `key` when a variable is not set.
    """
    unset = [
        match.group(2) or match.group(1)
        for match in _VARIABLE.finditer(text)
        if (match.group(2) or match.group(1)) not in os.environ
    ]
    if unset:
        raise PipelineError(
            f"{key} = {text!r}: environment variable {', '.join(f'${name}' for name in unset)} is not set; "
            "set it, or write the path without it"
        )
    return repo_root() / Path(os.path.expandvars(text)).expanduser()
