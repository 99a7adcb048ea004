"""Every GitHub workflow passes actionlint (which runs shellcheck on the `run:` scripts), and the pull-request
check keeps its contract with overfit_first.pr_comment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from overfit_first.pr_comment import MARKER

from conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    if ACTIONLINT is None:
        pytest.fail("actionlint not found: install the dev extra (pip install -e '.[dev]', scripts/setup.sh --dev)")
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck not found, so actionlint would skip the run: scripts: apt-get install shellcheck "
                    "(scripts/setup.sh --dev does)")
    return subprocess.run([ACTIONLINT, "-no-color", *map(str, files)], capture_output=True, text=True, timeout=120)


def test_workflows_pass_actionlint() -> None:
    assert WORKFLOWS, "no workflow in .github/workflows"
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_what_it_should(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pull_request\n"
        "jobs:\n"
        "  check:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - run: echo \"${{ github.event.pull_request.title }}\" $UNQUOTED\n"
    )
    result = actionlint(broken)
    assert result.returncode == 1
    assert "potentially untrusted" in result.stdout, "script injection"
    assert "SC2086" in result.stdout, "shellcheck ran"


def test_pull_request_check_contract() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "pr-check.yml").read_text(encoding="utf-8"))
    assert workflow[True] == {"pull_request": None}  # YAML 1.1 reads the key `on` as true
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = workflow["jobs"]["reproduce"]["steps"]
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0, "dvc metrics diff needs the base branch's history"
    scripts = "\n".join(step.get("run", "") for step in steps)
    for command in ("bash scripts/setup.sh", "dvc repro", "python -m overfit_first.pr_comment", "gh api"):
        assert command in scripts
    assert f"marker='{MARKER}'" in scripts, "the post step must look for the marker the comment starts with"
