"""Every GitHub workflow passes actionlint (which runs shellcheck on the `run:` scripts), and the pull-request
check keeps its contract with overfit_first.tools.pr_comment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from overfit_first.tools.pr_comment import MARKER

from conftest import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    if ACTIONLINT is None:
        pytest.fail("actionlint not found: install the dev extra (pip install -e '.[dev]', scripts/setup.sh --dev)")
    if shutil.which("shellcheck") is None:
        pytest.fail(
            "shellcheck not found, so actionlint would skip the run: scripts: apt-get install shellcheck "
            "(scripts/setup.sh --dev does)"
        )
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
        '      - run: echo "${{ github.event.pull_request.title }}" $UNQUOTED\n'
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
    for command in (
        "bash scripts/setup.sh",
        "bash scripts/ci_restore.sh repro",
        "python -m overfit_first pr_comment",
        "gh api",
    ):
        assert command in scripts
    assert f"marker='{MARKER}'" in scripts, "the post step must look for the marker the comment starts with"


def steps_of(name: str) -> list[dict]:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text(encoding="utf-8"))
    return next(iter(workflow["jobs"].values()))["steps"]


def key_prefix() -> str:
    script = (REPO / "scripts" / "ci_restore.sh").read_text(encoding="utf-8")
    return next(line.split("=", 1)[1] for line in script.splitlines() if line.startswith("key_prefix="))


def cache_steps(steps: list[dict], action: str) -> list[dict]:
    return [step for step in steps if step.get("uses", "").startswith(f"actions/cache/{action}@")]


def test_pull_request_check_restores_before_it_reproduces() -> None:
    steps = steps_of("pr-check.yml")
    runs = [step.get("run", "") for step in steps]
    key_step = next(step for step in steps if "scripts/ci_restore.sh cache-key" in step.get("run", ""))
    assert key_step["env"]["BASE"] == "origin/${{ github.base_ref }}", "the base branch's dvc.lock, not the PR's"
    (restore,) = cache_steps(steps, "restore")
    assert restore["with"]["path"] == ".dvc/cache"
    assert restore["with"]["key"] == f"${{{{ steps.{key_step['id']}.outputs.key }}}}"
    assert restore["with"]["restore-keys"] == key_prefix(), "else the newest cache of main"
    assert restore["if"] == "env.DVC_REMOTE_URL == ''", "the team's remote, when there is one, comes first"
    assert not cache_steps(steps, "save"), "only the main branch saves (dvc-cache.yml)"
    order = [index for index, run in enumerate(runs) if "ci_restore.sh restore" in run or "ci_restore.sh repro" in run]
    assert len(order) == 2 and "ci_restore.sh restore" in runs[order[0]] and "ci_restore.sh repro" in runs[order[1]]
    post = next(step for step in steps if "gh api" in step.get("run", ""))
    assert "!cancelled()" in post["if"] and "hashFiles('comment.md')" in post["if"], (
        "a failed check (a verdict got worse) still posts its comment"
    )


def test_main_branch_saves_the_cache_the_check_restores() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "dvc-cache.yml").read_text(encoding="utf-8"))
    assert workflow[True]["push"] == {"branches": ["main"]}
    steps = steps_of("dvc-cache.yml")
    key_step = next(step for step in steps if "scripts/ci_restore.sh cache-key HEAD" in step.get("run", ""))
    (save,) = cache_steps(steps, "save")
    assert save["with"] == {"path": ".dvc/cache", "key": f"${{{{ steps.{key_step['id']}.outputs.key }}}}"}
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "ci_restore.sh restore" in runs and "ci_restore.sh repro" in runs and "dvc push --run-cache" in runs


@pytest.mark.parametrize(
    ("status", "writes", "summary"),
    [(0, True, "the comment\n"), (1, True, "the comment\n"), (1, False, "")],
    ids=["passed", "verdict got worse", "invalid metrics"],
)
def test_comment_goes_to_the_job_summary_even_when_the_check_fails(
    tmp_path: Path, status: int, writes: bool, summary: str
) -> None:
    """The step's script, run as GitHub runs it (bash -e), with pr_comment replaced by a shell function: a failed
    check (exit 1 after writing the comment) still writes the job summary, which is all a fork's pull request gets,
    and the step fails with pr_comment's status. Before, `bash -e` stopped at the exit 1 and skipped the summary."""
    (step,) = [step for step in steps_of("pr-check.yml") if "python -m overfit_first pr_comment" in step.get("run", "")]
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    comment = 'printf "the comment\\n" > comment.md; ' if writes else ""
    (tmp_path / ".venv" / "bin" / "activate").write_text(f"python() {{ {comment}return {status}; }}\n")
    env = {"PATH": "/usr/bin:/bin", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=tmp_path,
        env={**env, "BASE": "origin/main", "IMAGES_URL": "https://x", "ARTIFACT_URL": "https://y"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == status, result.stderr
    written = tmp_path / "summary.md"
    assert (written.read_text() if written.exists() else "") == summary
