"""dvc.yaml's code deps follow one rule, checked here: a stage depends on every module it imports (directly or
through others) that can change its outputs, and on no module that only observes.

DVC reruns a stage when a dependency changes. A module missing from the deps lets a change of the numbers
go unnoticed (stale results); an observer listed as a dep retrains models when only the logging changed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO

# Modules that cannot change a stage's outputs, each with the reason (an observer may stop a stage, as a failed
# sanity check does, but never changes what it writes). They are not followed: what they import
# for their own work is theirs. Everything else a stage imports must be among its deps.
OBSERVERS = {
    "overfit_first/errors.py": "error types and the message printed on failure",
    "overfit_first/atomic.py": "how a file is written (temporary name, then rename), not what",
    "overfit_first/layout.py": "the output paths, which dvc.yaml declares itself: a change shows as a new output",
    # A folder: every module of the package (overfit_first/tracking/*.py) is the observer.
    "overfit_first/tracking/": "MLflow logging: a Keras callback that reads each epoch's logs, then what the "
    "stages wrote; the model registry",
    "overfit_first/progress.py": "progress display on a terminal or in a log",
    "stages/__init__.py": "run first by every stage: hides TensorFlow's native start-up lines (native_logs), "
    "skips the libraries Keras imports without using them (unused_imports)",
    "overfit_first/native_logs.py": "which of TensorFlow's native log lines reach stderr",
    "overfit_first/unused_imports.py": "whether scikit-learn and JAX are imported at start-up: Keras and "
    "TensorFlow import them optionally and use them in no stage",
    "overfit_first/sanity.py": "checks before training, in a child process with its own random state: a failed "
    "check stops the train stage before it writes anything, a passed one leaves training untouched (identical "
    "weights: tests/test_sanity.py)",
}


def is_observer(path: str) -> bool:
    """Whether `path` (relative to the repository) is in OBSERVERS, or is a folder of OBSERVERS (ending in /) or
    inside one."""
    return any(path == entry or (entry.endswith("/") and f"{path}/".startswith(entry)) for entry in OBSERVERS)


def module_file(name: str) -> Path | None:
    """`overfit_first.data.fetch` -> its file in the repository, or None for a third-party module."""
    base = REPO / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def has_code(path: Path) -> bool:
    """False for a module that is only a docstring (an empty package __init__)."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return not all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def imported(path: Path) -> set[Path]:
    """The repository's modules that `path` imports, with the package __init__ files Python runs for them."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    found: set[Path] = set()
    for name in names:
        parts = name.split(".")
        for end in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            file = module_file(".".join(parts[:end]))
            if file is not None:
                found.add(file)
    return found


def closure(entry: Path) -> set[str]:
    """Every repository module `entry` runs, observers not followed; paths relative to the repository. Python runs
    the package __init__ files above `entry` first (`python -m stages.train` runs stages/__init__.py)."""
    seen: set[Path] = set()
    packages = [folder for folder in entry.parents if folder != REPO and folder.is_relative_to(REPO)]
    todo = [entry, *(folder / "__init__.py" for folder in packages if (folder / "__init__.py").is_file())]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if not is_observer(path.relative_to(REPO).as_posix()):
            todo.extend(imported(path))
    return {path.relative_to(REPO).as_posix() for path in seen if has_code(path)}


def stages() -> dict[str, dict]:
    """dvc.yaml's stages, but those marked always_changed: they run on every `dvc repro` whatever their deps."""
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: stage for name, stage in declared.items() if not stage.get("always_changed")}


def stage_module(stage: dict) -> Path:
    command = (stage.get("do") or stage)["cmd"]
    module = command.split("python -m ", 1)[1].split()[0]
    path = module_file(module)
    assert path is not None, f"dvc.yaml: {command!r} runs no module of the repository"
    return path


def code_deps(stage: dict) -> set[str]:
    deps = (stage.get("do") or stage).get("deps", [])
    return {dep for dep in deps if dep.endswith(".py")}


@pytest.mark.parametrize("name", list(stages()))
def test_stage_depends_on_every_module_that_can_change_its_outputs(name: str) -> None:
    stage = stages()[name]
    needed = {path for path in closure(stage_module(stage)) if not is_observer(path)}
    missing = sorted(needed - code_deps(stage))
    assert not missing, f"dvc.yaml stage {name} imports {missing} but does not list them under deps"


@pytest.mark.parametrize("name", list(stages()))
def test_stage_lists_no_observer_or_unused_module(name: str) -> None:
    stage = stages()[name]
    deps = code_deps(stage)
    observers = sorted(dep for dep in (stage.get("do") or stage).get("deps", []) if is_observer(dep))
    assert not observers, f"dvc.yaml stage {name} depends on observers {observers}: editing them would rerun it"
    unused = sorted(deps - closure(stage_module(stage)))
    assert not unused, f"dvc.yaml stage {name} lists {unused}, which it never imports"


def test_closure_follows_imports_and_stops_at_observers() -> None:
    """The rule itself on the train stage: training's model builder is in, tracking's own imports are not."""
    train = closure(REPO / "stages" / "train.py")
    assert {
        "overfit_first/training.py",
        "overfit_first/models.py",
        "overfit_first/config.py",
        "overfit_first/__init__.py",
        "overfit_first/tracking/__init__.py",
        "stages/__init__.py",
    } <= train
    assert "overfit_first/native_logs.py" not in train  # imported only by stages/__init__.py, an observer
    assert "overfit_first/evaluation.py" not in train  # imported only by tracking, an observer


# The folders whose code can never change a stage's output (issue 23): the procedure's commands and the repository's
# tools. Nothing a stage runs may import them, observers included: an observer is no dep, but it runs in the stage's
# process, so an import there would make their code part of every run of the stage, unseen by dvc.yaml.
ABOVE_THE_STAGES = ("overfit_first/procedure/", "overfit_first/tools/")


def runs(entry: Path) -> dict[str, str | None]:
    """Every repository module `entry` runs, observers followed too, each with the module that first imports it (None
    for `entry` and the package __init__ files Python runs before it); paths relative to the repository."""
    packages = [folder for folder in entry.parents if folder != REPO and folder.is_relative_to(REPO)]
    todo: list[tuple[Path, Path | None]] = [
        (entry, None),
        *((folder / "__init__.py", None) for folder in packages if (folder / "__init__.py").is_file()),
    ]
    by: dict[Path, Path | None] = {}
    while todo:
        path, importer = todo.pop()
        if path in by:
            continue
        by[path] = importer
        todo.extend((module, path) for module in imported(path))
    relative = {path: path.relative_to(REPO).as_posix() for path in by}
    return {relative[path]: None if importer is None else relative[importer] for path, importer in by.items()}


def chain(modules: dict[str, str | None], path: str) -> str:
    """`stages/x.py -> ... -> path`: how the stage's module comes to run `path`."""
    links = [path]
    while (importer := modules[links[-1]]) is not None:
        links.append(importer)
    return " -> ".join(reversed(links))


def every_stage() -> dict[str, dict]:
    """dvc.yaml's stages, those marked always_changed included."""
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


@pytest.mark.parametrize("name", list(every_stage()))
def test_no_stage_runs_the_procedure_or_the_tools(name: str) -> None:
    modules = runs(stage_module(every_stage()[name]))
    above = sorted(path for path in modules if path.startswith(ABOVE_THE_STAGES))
    assert not above, (
        f"dvc.yaml stage {name} runs {above}: overfit_first/procedure/ and overfit_first/tools/ may only import what "
        "the stages run, never the other way; " + "; ".join(chain(modules, path) for path in above)
    )


def test_runs_follows_observers_where_closure_stops() -> None:
    """The train stage runs tracking (an observer) and, through it, modules that closure does not follow."""
    modules = runs(REPO / "stages" / "train.py")
    assert "overfit_first/native_logs.py" in modules  # through stages/__init__.py, an observer
    assert "overfit_first/native_logs.py" not in closure(REPO / "stages" / "train.py")
    assert chain(modules, "stages/train.py") == "stages/train.py"


# Stages that act beyond their outputs, and must run whenever their inputs change: DVC restores a stage from its
# run-cache without running its command, except a stage with a persistent output (dvc.stage.cache._can_hash).
ACTS_BEYOND_ITS_OUTPUTS = {"plot": "points MLflow's `champion` alias at the recommended run"}


@pytest.mark.parametrize("name", sorted(ACTS_BEYOND_ITS_OUTPUTS))
def test_a_stage_that_acts_beyond_its_outputs_is_never_restored_from_the_run_cache(name: str) -> None:
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"][name]
    body = stage.get("do", stage)
    outputs = [entry for kind in ("outs", "metrics", "plots") for entry in body.get(kind, [])]
    persistent = [
        entry for entry in outputs if isinstance(entry, dict) and any(o.get("persist") for o in entry.values())
    ]
    assert persistent, f"{name}: {ACTS_BEYOND_ITS_OUTPUTS[name]}; give one output `persist: true`"
