"""Every entry point goes through run_stage and, run from a subdirectory of the repository, stops with the one
shared "run from the repository root" error before doing anything (overfit_first.layout.require_repo_root).

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

from overfit_first import layout
from overfit_first.errors import PipelineError

from conftest import REPO, run_stage, stage_env
from data_fixtures import files_under

# Each entry point with arguments that would make it work from the repository root.
ENTRY_POINTS = {
    "stages.download": ["fashion_mnist"],
    "stages.prepare": ["fashion_mnist"],
    "stages.train": ["fashion_mnist-cnn_overfit"],
    "stages.evaluate": ["fashion_mnist-cnn_overfit"],
    "stages.plot": ["fashion_mnist"],
    "stages.report": [],
    "stages.sources": [],
    "overfit_first.tools.pr_comment": ["--base", "HEAD"],
    "overfit_first.tools.plots_html": ["show"],
    "overfit_first.tracking": ["relog", "fashion_mnist-cnn_overfit"],
    "overfit_first.tools.profiles": ["article"],
    "overfit_first.procedure.seed_spread": ["--seeds", "0", "1"],
    "overfit_first.procedure.noise": [],
    "overfit_first.procedure.claims": [],
    "overfit_first.sanity": ["fashion_mnist-cnn_overfit"],
    "overfit_first.procedure.ladder": ["dropout"],
    "overfit_first.procedure.data_curve": ["size"],
    "overfit_first.tools.pipelines": ["cifar"],
    "overfit_first.tools.preview": ["-S", "model.dropout=0.3"],
    "overfit_first.tools.article_gpu": ["--tiny", "--out", "article-out"],
    "bench": ["--only", "dvc"],
}


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
    """A new `python -m` module is caught here: it must join ENTRY_POINTS (and so the test below) and run_stage."""
    # bench's other modules are the parts `python -m bench` runs itself, from the repository root.
    candidates = [
        *sorted((REPO / "stages").glob("*.py")),
        *sorted((REPO / "overfit_first").rglob("*.py")),
        REPO / "bench" / "__main__.py",
    ]
    found = {module_name(path): block for path in candidates if (block := main_block(path)) is not None}
    assert sorted(found) == sorted(ENTRY_POINTS)
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
    "overfit_first.tracking": "mlflow",
    "overfit_first.procedure.ladder": "mlflow",
    "overfit_first.procedure.data_curve": "mlflow",
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

entry_points, root, heavy = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3].split()

def listing():
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(root) for f in fs}

results = {}
for module, args in entry_points.items():
    before, stderr, code = listing(), io.StringIO(), 0
    sys.argv = [module, *args]
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    after = listing()
    written = sorted(path for path, stamp in after.items() if before.get(path) != stamp)
    results[module] = {"code": code, "stderr": stderr.getvalue(), "written": written}
print(json.dumps({"runs": results, "heavy": [name for name in heavy if name in sys.modules]}))
"""
LIGHT = [module for module in ENTRY_POINTS if module not in HEAVY]


@pytest.fixture(scope="module")
def light_runs(scratch_repo: Path) -> dict:
    """Every light entry point run from scratch_repo/reports in one interpreter (LIGHT_DRIVER)."""
    arguments = [json.dumps({module: ENTRY_POINTS[module] for module in LIGHT}), str(scratch_repo)]
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
    without_model = [module for module, weight in HEAVY.items() if weight == "mlflow"]
    assert imported(without_model, ("tensorflow", "keras")) == []


def stops_at_the_root_check(scratch_repo: Path, code: int, stderr: str) -> None:
    assert code == 1, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"error: {layout.RUN_FROM_ROOT}: {(scratch_repo / 'reports').resolve()} is inside the repository; "
        f"cd {scratch_repo.resolve()} first"
    )


@pytest.mark.parametrize("module", LIGHT)
def test_light_entry_point_run_from_a_subdirectory_stops_before_any_work(
    scratch_repo: Path, light_runs: dict, module: str
) -> None:
    run = light_runs["runs"][module]
    stops_at_the_root_check(scratch_repo, run["code"], run["stderr"])
    assert run["written"] == [], "nothing written"


@pytest.mark.slow
@pytest.mark.parametrize("module", list(HEAVY))
def test_heavy_entry_point_run_from_a_subdirectory_stops_before_any_work(scratch_repo: Path, module: str) -> None:
    before = files_under(scratch_repo)
    result = run_stage(module, *ENTRY_POINTS[module], cwd=scratch_repo / "reports", timeout=300)
    stops_at_the_root_check(scratch_repo, result.returncode, result.stdout + result.stderr)
    assert files_under(scratch_repo) == before, "nothing written"


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
