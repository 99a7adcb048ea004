"""scripts/ci_restore.sh without DVC: the Actions cache key both workflows compute (pr-check.yml restores with the
base branch's, dvc-cache.yml saves with main's), and what it says when there is nothing to restore from. The
restore itself, from a remote or a cache, runs against real DVC in test_dvc_remote."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / "scripts" / "ci_restore.sh"
PREFIX = "dvc-cache-v1-"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def script(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if key not in ("DVC_REMOTE_URL", "GITHUB_ACTIONS")}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=repo, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def key(repo: Path, rev: str) -> str:
    result = script(repo, "cache-key", rev)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    return repo


def commit_lock(repo: Path, lock: str | None, message: str) -> str:
    (repo / "notes.txt").write_text(message)
    if lock is not None:
        (repo / "dvc.lock").write_text(lock)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def test_cache_key_follows_dvc_lock_only(repo: Path) -> None:
    none = commit_lock(repo, None, "no pipeline yet")
    first = commit_lock(repo, "schema: '2.0'\nstages: {}\n", "a lock")
    unrelated = commit_lock(repo, None, "a commit that leaves dvc.lock alone")
    changed = commit_lock(repo, "schema: '2.0'\nstages: {train: {}}\n", "another lock")

    assert key(repo, none) == f"{PREFIX}none"
    assert key(repo, first).startswith(PREFIX) and len(key(repo, first)) == len(PREFIX) + 16
    assert key(repo, unrelated) == key(repo, first), "the same dvc.lock shares one cache"
    assert key(repo, changed) != key(repo, first)
    assert key(repo, changed) == key(repo, "HEAD") == key(repo, "main")
    assert script(repo, "cache-key").stdout.strip() == key(repo, "HEAD"), "HEAD by default"
    # The pull-request workflow asks for origin/<base>: a branch name resolves like any revision.
    git(repo, "branch", "base", first)
    assert key(repo, "base") == key(repo, first)


def test_cache_key_of_an_unknown_revision_fails(repo: Path) -> None:
    commit_lock(repo, "stages: {}\n", "a lock")
    result = script(repo, "cache-key", "origin/main")
    assert result.returncode == 1 and result.stdout == ""
    assert "origin/main is not a commit of this repository" in result.stderr and "fetch-depth" in result.stderr


def test_nothing_to_restore_from_warns_and_succeeds(repo: Path) -> None:
    result = script(repo, "restore")
    assert result.returncode == 0, result.stderr
    assert "no team remote" in result.stderr and "reruns the whole pipeline" in result.stderr
    result = script(repo, "restore", GITHUB_ACTIONS="true")
    assert result.stdout.startswith("::warning title=DVC restore::no team remote"), "an annotation in CI"


def test_usage(repo: Path) -> None:
    result = script(repo, "push")
    assert result.returncode == 2 and "usage: scripts/ci_restore.sh cache-key [REV] | restore" in result.stderr
