"""Every entry point is listed in the index of commands (overfit_first/__main__.py, `python -m overfit_first`), goes
through run_stage and, run from a subdirectory of the repository, stops with the one shared "run from the repository
root" error before doing anything (overfit_first.layout.require_repo_root).

Before, `python -m overfit_first.pr_comment` run from reports/ exited 0 with a wrong comment: paths shown
as ../metrics/..., and "no dataset has a comparison" although the files existed.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from overfit_first import __main__ as index
from overfit_first import layout
from overfit_first.errors import PipelineError

from conftest import REPO, run_stage, stage_env
from data_fixtures import files_under

# The entry points are the index's (index.entry_points(): a command by its short name, a stage or a benchmark by its
# module); here, each one's arguments that would make it work from the repository root.
ARGUMENTS = {
    "stages.download": ["fashion_mnist"],
    "stages.prepare": ["fashion_mnist"],
    "stages.train": ["fashion_mnist-cnn_overfit"],
    "stages.evaluate": ["fashion_mnist-cnn_overfit"],
    "stages.plot": ["fashion_mnist"],
    "stages.report": [],
    "stages.sources": [],
    "pr_comment": ["--base", "HEAD"],
    "plots_html": ["show"],
    "tracking": ["relog", "fashion_mnist-cnn_overfit"],
    "profiles": ["article"],
    "seed_spread": ["--seeds", "0", "1"],
    "noise": [],
    "claims": [],
    "sanity": ["fashion_mnist-cnn_overfit"],
    "ladder": ["dropout"],
    "data_curve": ["size"],
    "pipelines": ["cifar"],
    "preview": ["-S", "model.dropout=0.3"],
    "article_gpu": ["--tiny", "--out", "article-out"],
    "bench": ["--only", "dvc"],
}
ENTRY_POINTS = index.entry_points()  # name -> module


def test_every_entry_point_of_the_index_has_its_arguments_here() -> None:
    assert sorted(ARGUMENTS) == sorted(ENTRY_POINTS)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__main__" else parts)


def main_block(path: Path) -> ast.If | None:
    """The `if __name__ == "__main__":` block of a module, if it has one."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test):
            return node
    return None


def test_every_entry_point_is_listed_and_runs_in_run_stage() -> None:
    """A new `python -m` module is caught here: it must join the index (and so ARGUMENTS and the tests below) and
    run_stage."""
    # bench's other modules are the parts `python -m bench` runs itself, from the repository root; the index itself
    # (overfit_first/__main__.py) lists and dispatches, tested below.
    candidates = [
        *sorted((REPO / "stages").glob("*.py")),
        *sorted(set((REPO / "overfit_first").rglob("*.py")) - {REPO / "overfit_first" / "__main__.py"}),
        REPO / "bench" / "__main__.py",
    ]
    found = {module_name(path): block for path in candidates if (block := main_block(path)) is not None}
    assert sorted(found) == sorted(ENTRY_POINTS.values())
    for module, block in found.items():
        assert [ast.unparse(statement) for statement in block.body] == ["run_stage(main)"], module


@pytest.fixture(scope="module")
def scratch_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's files that mark and configure it, with the results the commands read."""
    root = tmp_path_factory.mktemp("entry") / "repo"
    for name in ("dvc.yaml", "params.yaml", "profiles", "metrics", "reports"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        else:
            root.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


# The entry points whose import starts Keras (TensorFlow, about 11 s of CPU on 2 cores) or MLflow (about 4 s) before
# they can check anything: the slow tier runs them. Every other one imports neither (tested below, in one process).
HEAVY = {
    "stages.train": "keras",
    "stages.evaluate": "keras",
    "stages.plot": "mlflow",
    "tracking": "mlflow",
    "ladder": "mlflow",
    "data_curve": "mlflow",
}


def imported(modules: list[str], heavy: tuple[str, ...]) -> list[str]:
    """Which of `heavy` a fresh interpreter has imported after importing `modules`."""
    code = f"import sys, {', '.join(modules)}; print(' '.join(name for name in {heavy!r} if name in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=stage_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


# Runs each light entry point as `python -m` does (runpy, sys.argv set), one after the other in ONE fresh interpreter
# started in `cwd`: per module its exit status, its stderr and the files it wrote below ROOT; then which heavy
# libraries that interpreter imported. One process instead of one each: the light ones share their imports.
LIGHT_DRIVER = """
import contextlib, io, json, os, runpy, sys

entry_points, root, heavy = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3].split()  # name -> [module, args]

def listing():
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(root) for f in fs}

results = {}
for name, (module, args) in entry_points.items():
    before, stderr, code = listing(), io.StringIO(), 0
    sys.argv = [module, *args]
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    after = listing()
    written = sorted(path for path, stamp in after.items() if before.get(path) != stamp)
    results[name] = {"code": code, "stderr": stderr.getvalue(), "written": written}
print(json.dumps({"runs": results, "heavy": [name for name in heavy if name in sys.modules]}))
"""
LIGHT = [name for name in ENTRY_POINTS if name not in HEAVY]


def as_run(name: str) -> list:
    """[module, arguments] that run entry point `name` as documented: a command through the index
    (`python -m overfit_first <name> ...`), a stage or a benchmark by its module."""
    if name in index.COMMANDS:
        return ["overfit_first", [name, *ARGUMENTS[name]]]
    return [ENTRY_POINTS[name], ARGUMENTS[name]]


@pytest.fixture(scope="module")
def light_runs(scratch_repo: Path) -> dict:
    """Every light entry point run from scratch_repo/reports in one interpreter (LIGHT_DRIVER)."""
    arguments = [json.dumps({name: as_run(name) for name in LIGHT}), str(scratch_repo)]
    result = subprocess.run(
        [sys.executable, "-c", LIGHT_DRIVER, *arguments, "tensorflow keras mlflow"],
        cwd=scratch_repo / "reports",
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_light_entry_points_import_neither_keras_nor_mlflow(light_runs: dict) -> None:
    """Imported and run up to their first check, in one interpreter, none of them imported a heavy library."""
    assert sorted(light_runs["runs"]) == sorted(LIGHT)
    assert light_runs["heavy"] == []


@pytest.mark.slow
def test_entry_points_without_a_model_do_not_import_keras() -> None:
    """Before, overfit_first.tracking imported keras and mlflow.keras at its top: the plot stage and every command
    of the procedure paid for TensorFlow without training or loading a model."""
    without_model = [ENTRY_POINTS[name] for name, weight in HEAVY.items() if weight == "mlflow"]
    assert imported(without_model, ("tensorflow", "keras")) == []


def stops_at_the_root_check(scratch_repo: Path, code: int, stderr: str) -> None:
    assert code == 1, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"error: {layout.RUN_FROM_ROOT}: {(scratch_repo / 'reports').resolve()} is inside the repository; "
        f"cd {scratch_repo.resolve()} first"
    )


@pytest.mark.parametrize("name", LIGHT)
def test_light_entry_point_run_from_a_subdirectory_stops_before_any_work(
    scratch_repo: Path, light_runs: dict, name: str
) -> None:
    run = light_runs["runs"][name]
    stops_at_the_root_check(scratch_repo, run["code"], run["stderr"])
    assert run["written"] == [], "nothing written"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HEAVY))
def test_heavy_entry_point_run_from_a_subdirectory_stops_before_any_work(scratch_repo: Path, name: str) -> None:
    """A command through the index (`python -m overfit_first ladder ...`, as documented), a stage by its module."""
    before = files_under(scratch_repo)
    module, arguments = as_run(name)
    result = run_stage(module, *arguments, cwd=scratch_repo / "reports", timeout=300)
    stops_at_the_root_check(scratch_repo, result.returncode, result.stdout + result.stderr)
    assert files_under(scratch_repo) == before, "nothing written"


# The index itself: its listing imports nothing heavy, a command runs by its short name with its own --help, and an
# unknown name exits 2 with the list. In one interpreter: per item its exit status, stdout and stderr, then the heavy
# libraries imported by the listing alone, then those imported by everything.
INDEX_DRIVER = """
import contextlib, io, json, runpy, sys

def run(module, args):
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = [module, *args]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}

commands, heavy = json.loads(sys.argv[1]), sys.argv[2].split()
results = {"listing": run("overfit_first", []), "unknown": run("overfit_first", ["nope"])}
listing_heavy = [name for name in heavy if name in sys.modules]
for name, module in commands.items():
    results[name] = {"index": run("overfit_first", [name, "--help"]), "module": run(module, ["--help"])}
print(json.dumps({"runs": results, "listing_heavy": listing_heavy}))
"""


@pytest.fixture(scope="module")
def index_runs() -> dict:
    light = {name: module for name, module in index.COMMANDS.items() if name not in HEAVY}
    result = subprocess.run(
        [sys.executable, "-c", INDEX_DRIVER, json.dumps(light), "tensorflow keras mlflow scipy"],
        cwd=REPO,
        env=stage_env(COLUMNS="100"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_index_lists_every_command_with_its_purpose_and_imports_nothing_heavy(index_runs: dict) -> None:
    listing = index_runs["runs"]["listing"]
    assert listing["code"] == 0 and listing["stderr"] == ""
    assert listing["stdout"] == index.listing()
    for name, module in index.COMMANDS.items():
        assert re.search(rf"^  {name} +\S", listing["stdout"], flags=re.MULTILINE), name
        assert index.purpose(module) not in ("", "(not in this checkout)"), module
    for module in (*index.RUN_BY_DVC, *index.BENCHMARKS):
        assert f"  python -m {module} " in listing["stdout"]
    assert index_runs["listing_heavy"] == []  # no TensorFlow, Keras, MLflow or scipy: ast reads the docstrings


def test_an_unknown_name_exits_2_with_the_list(index_runs: dict) -> None:
    unknown = index_runs["runs"]["unknown"]
    assert unknown["code"] == 2 and unknown["stdout"] == ""
    assert unknown["stderr"] == f"python -m overfit_first: unknown command 'nope'\n\n{index.listing()}"


@pytest.mark.parametrize("name", [name for name in index.COMMANDS if name not in HEAVY])
def test_a_command_runs_by_its_short_name_with_its_own_help(index_runs: dict, name: str) -> None:
    """`python -m overfit_first <name> --help` is the command's own --help, which names it so."""
    through_index, direct = index_runs["runs"][name]["index"], index_runs["runs"][name]["module"]
    assert through_index["code"] == 0, through_index["stderr"]
    assert through_index["stdout"].startswith(f"usage: python -m overfit_first {name} ")
    # the same help (stderr aside: a module imported earlier in the driver's interpreter makes runpy warn once)
    assert (through_index["code"], through_index["stdout"]) == (direct["code"], direct["stdout"])


def test_the_index_passes_its_arguments_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m overfit_first ladder dropout --seeds 0 1` runs the ladder's module as __main__ with those
    arguments."""
    seen: list = []
    monkeypatch.setattr(
        index.runpy, "run_module", lambda module, **kwargs: seen.append((module, list(index.sys.argv), kwargs))
    )
    monkeypatch.setattr(index.sys, "argv", list(index.sys.argv))
    assert index.main(["ladder", "dropout", "--seeds", "0", "1"]) == 0
    assert seen == [
        (
            "overfit_first.procedure.ladder",
            ["python -m overfit_first ladder", "dropout", "--seeds", "0", "1"],
            {"run_name": "__main__", "alter_sys": True},
        )
    ]


def test_require_repo_root(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "metrics" / "fashion_mnist").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    layout.require_repo_root(root)
    for subdirectory in (root / "metrics", root / "metrics" / "fashion_mnist"):
        with pytest.raises(PipelineError, match=r"run from the repository root \(where dvc.yaml is\)"):
            layout.require_repo_root(subdirectory)
    # Outside any DVC project (a scratch project of the tests): nothing to say here.
    layout.require_repo_root(tmp_path)


def test_the_message_quotes_a_root_with_a_space(tmp_path: Path) -> None:
    root = tmp_path / "my repo"
    (root / "reports").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    with pytest.raises(PipelineError, match=re.escape(f"cd '{root.resolve()}' first")):
        layout.require_repo_root(root / "reports")
