"""Fixtures shared by the suite: the repository root, a scratch project, running stages for real, a real MLflow
tracking server, and the documentation as the tests read it.

The suite runs in two pytest-xdist workers (pyproject.toml). What is expensive to build (a reproduced scratch
project) is built once for the whole run by `built_once`, whichever worker asks first; the other waits for it.
A new real-component test joins one of these shared projects (copying it before it changes anything) rather than
reproducing a pipeline of its own: docs/development.md, "Tests".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
# Every `dvc` the suite starts, in any repository, sends no usage report: otherwise each command spawns a
# `dvc daemon analytics` process (a second DVC import, seconds of CPU) that cannot reach the internet anyway.
os.environ["DVC_NO_ANALYTICS"] = "1"
# An MLflow server the suite starts runs no GenAI job runners: seven `huey` processes, each importing MLflow
# (about 50 s of CPU per server on 2 cores), which no test uses. `make mlflow-ui` sets the same.
NO_JOB_RUNNERS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


# The documentation: README.md (the front page) and every page of docs/. A test that checks what it says (its shell
# commands, its quoted figures, one section's command) reads it through these, not from one file: a text that moves
# between pages stays checked, and a text that goes missing fails the test that needed it.
def doc_pages() -> list[Path]:
    """README.md, then docs/*.md in name order."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def docs_text() -> str:
    """Every page of the documentation, one after another."""
    return "\n\n".join(path.read_text(encoding="utf-8") for path in doc_pages())


def docs_bash_blocks() -> list[str]:
    """Every ```bash block of the documentation, in page order."""
    pattern = re.compile(r"^```bash\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)
    return [block for path in doc_pages() for block in pattern.findall(path.read_text(encoding="utf-8"))]


def docs_section(heading: str) -> str:
    """The text of the one `## <heading>...` section of the documentation (its heading starts with `heading`), up to
    the next `##` heading or the end of its page."""
    found = [
        part.split("\n## ")[0]
        for path in doc_pages()
        for part in path.read_text(encoding="utf-8").split(f"\n## {heading}")[1:]
    ]
    assert len(found) == 1, f"{len(found)} sections `## {heading}` in README.md and docs/*.md, not one"
    return found[0]


def stage_env(**extra: str) -> dict[str, str]:
    """Environment for a stage subprocess: the repo importable, TensorFlow quiet, no user MLflow store."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def run_stage(
    module: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run `python -m <module> <args>` as DVC would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env or stage_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(autouse=True)
def mlflow_store_restored() -> Iterator[None]:
    """The MLflow store as it was before each test. Code run in-process sets it process-wide (tracking.store_client:
    mlflow.set_tracking_uri, which also sets MLFLOW_TRACKING_URI): left so, a later test of the same worker, or a
    process it starts, would log to a store that is gone (a server of another module, stopped)."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(saved)  # None unsets the variable too
    elif saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture
def default_params() -> dict:
    """A fresh copy of the repository's params.yaml, for tests to modify."""
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real tracking server on a free port, with its own SQLite store and artifact root."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'db'}",
            "--default-artifact-root",
            str(root / "art"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=(root / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **NO_JOB_RUNNERS},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(root / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


# The slow files, longest first, as measured (the durations .ci/run prints; the coverage run of 2026-12-05 on 2 cores).
# Only the order the workers get them in depends on it: a file missing here goes after those listed.
LONGEST = (
    "test_training.py",
    "test_dvc_remote.py",
    "test_tracking.py",
    "test_registry.py",
    "test_interruption.py",
    "test_seed_spread.py",
    "test_atomic_outputs.py",
    "test_sanity.py",
    "test_ladder_dvc.py",
    "test_accelerate.py",
    "test_pipelines.py",
    "test_article_gpu.py",
    "test_evaluate.py",
    "test_shell_paths.py",
    "test_mlflow_ui.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The order in which the workers get the files (each file on one worker), so that the two end together: one
    file that builds the shared `tiny_pipeline` first (about three minutes), the other worker meanwhile on the
    longest slow file that needs no shared pipeline; then the other files that copy the pipeline, then the other slow
    files, each group longest first (LONGEST); the fast files last, those with the most tests first (they fill the
    gaps)."""
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)
    pipeline = [name for name, tests in files.items() if any("tiny_pipeline" in test.fixturenames for test in tests)]
    slow = [name for name, tests in files.items() if any(test.get_closest_marker("slow") for test in tests)]

    def longest(name: str) -> int:
        base = name.rsplit("/", 1)[-1]
        return LONGEST.index(base) if base in LONGEST else len(LONGEST)

    alone = sorted((name for name in slow if name not in pipeline), key=longest)
    first = {pipeline[0]: 0} if pipeline else {}
    first.update({alone[0]: 1} if alone else {})

    def rank(name: str) -> tuple[int, int]:
        if name in first:
            return first[name], 0
        if name not in slow:  # the fast files: those with the most tests first, as xdist itself would order them
            return 4, -len(files[name])
        return (2 if name in pipeline else 3), longest(name)

    items[:] = [item for name in sorted(files, key=rank) for item in files[name]]


def shared_path(factory: pytest.TempPathFactory, name: str) -> Path:
    """`name` in the temporary directory every worker of this test run shares (each worker's own basetemp is one
    level below it under pytest-xdist)."""
    base = factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Any]) -> Any:
    """`build(directory)` run once per test run, whichever worker asks first, under a file lock; its JSON-able
    result is kept beside the directory, so every later call (in any worker) gets it without building again.

    A build that fails leaves no result: the next caller builds again and reports its own failure.
    """
    directory = shared_path(factory, name)
    result = directory.with_name(f"{name}.json")
    with FileLock(f"{directory}.lock"):
        if not result.is_file():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            result.write_text(json.dumps(build(directory)), encoding="utf-8")
    return json.loads(result.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """scratch_repo.tiny_pipeline, reproduced once per test run: a test copies it (scratch_repo.copy_repo) before
    changing anything, or clones it as a fresh checkout would."""
    from scratch_repo import tiny_pipeline  # scratch_repo imports this module: import it when first needed

    def build(directory: Path) -> list[Any]:
        repo, env = tiny_pipeline(directory)
        return [str(repo), env]

    repo, env = built_once(tmp_path_factory, "tiny-pipeline", build)
    return Path(repo), env


def write_params(directory: Path, params: dict) -> Path:
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def default_stop_signals() -> None:
    """In a child before exec: SIGINT, SIGTERM and SIGHUP back to their defaults.

    A process keeps the signals its parent ignored (a shell's background job ignores SIGINT, `nohup` SIGHUP), and
    the stages keep ignoring those on purpose; the tests that send these signals need a child that hears them,
    whatever shell started the test run.
    """
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.SIG_DFL)
