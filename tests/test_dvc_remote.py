"""DVC remotes for real, on the tiny pipeline (conftest): `dvc push` / `dvc pull` of data, models and the run-cache
through a local directory remote and through S3 (the `s3` extra, dvc-s3) served by a real S3-compatible server
(moto) on 127.0.0.1; and scripts/ci_restore.sh, which the workflows run so that CI restores instead of retraining.

After a pull into a fresh clone (or a restore of the main branch's .dvc/cache) `dvc repro` has nothing to do, and
`dvc exp run -S model.dropout=0.3` (or a pull request's change of it) retrains only the simplified model; `dvc exp
show`, `dvc metrics diff` and `dvc exp diff` show the experiment. Beside the
pipeline lies a second one whose committed dvc.lock names an output nobody pushed, as cifar/dvc.lock does in the
documentation's remote flow (docs/pr-check.md): its push and pull, run here as it writes them, succeed all the same."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from conftest import REPO, docs_section, free_port
from scratch_repo import DROPOUT_STAGES, commit, copy_repo, dvc, git, ran

pytestmark = pytest.mark.slow  # real dvc, git, MLflow or a browser in every test

BUCKET = "overfit-first"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
SIMPLIFIED_MODEL = Path("models/pets/tiny_simplified.keras")
STAGES = [
    "sources",
    "download@pets",
    "prepare@pets",
    *(f"{stage}@pets-tiny_{model}" for stage in ("train", "evaluate") for model in ("overfit", "simplified")),
    "plot@pets",
    "report",
]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto) on a free port of 127.0.0.1, holding one empty bucket."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:  # boto3 generates its client classes at run time
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@pytest.fixture
def origin(tiny_pipeline: tuple[Path, dict[str, str]], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A team member's repository: the tiny pipeline reproduced and committed, its DVC cache full; beside it a
    second pipeline, cifar/, whose dvc.lock names an output that exists only where someone else ran it."""
    source, env = tiny_pipeline
    repo = copy_repo(source, tmp_path / "origin")
    (repo / "cifar").mkdir()
    stage = {"cmd": "echo built > built.txt", "outs": ["built.txt"]}
    (repo / "cifar" / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"build": stage}}), encoding="utf-8")
    out = {"path": "built.txt", "hash": "md5", "md5": hashlib.md5(b"built\n").hexdigest(), "size": 6}
    lock = {"schema": "2.0", "stages": {"build": {"cmd": stage["cmd"], "outs": [out]}}}
    (repo / "cifar" / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False), encoding="utf-8")
    commit(repo, "the CIFAR pipeline, run on another machine")
    return repo, env


def readme_command(verb: str) -> list[str]:
    """The arguments of the documentation's `dvc <verb> ...` in its DVC remote section (docs/pr-check.md): the
    command tested is the one documented."""
    section = docs_section("DVC remote")
    (line,) = [line for line in section.splitlines() if line.startswith(f"dvc {verb} ")]
    return shlex.split(line, comments=True)[1:]


def model_md5(repo: Path, model: str) -> str:
    """The md5 the committed dvc.lock (HEAD's) records for models/pets/<model>.keras."""
    committed = subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=repo, check=True, capture_output=True, text=True)
    stage = yaml.safe_load(committed.stdout)["stages"][f"train@pets-{model}"]
    return next(out["md5"] for out in stage["outs"] if out["path"] == f"models/pets/{model}.keras")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def fresh_clone(origin: Path, target: Path) -> Path:
    """What a new machine or CI gets: git's files only, no DVC cache, no data, no models."""
    subprocess.run(["git", "clone", "-q", str(origin), str(target)], check=True, capture_output=True)
    git(target, "config", "user.name", "overfit-first tests")  # `dvc exp run` commits
    git(target, "config", "user.email", "tests@overfit-first.invalid")
    assert not (target / SIMPLIFIED_MODEL).exists()
    return target


def ci_restore(repo: Path, env: dict[str, str], *command: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """scripts/ci_restore.sh <command> (default: restore) in `repo`, with `extra` in its environment."""
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "ci_restore.sh"), *(command or ("restore",))],
        cwd=repo,
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=600,
    )


def preview(repo: Path, env: dict[str, str], *args: str) -> tuple[list[str], list[str]]:
    """`python -m overfit_first preview <args>` in `repo`: the stages it says would run, and those after them."""
    result = subprocess.run(
        [sys.executable, "-m", "overfit_first", "preview", *args], cwd=repo, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(r"would run (.+?)(?:; then [^:]+: (.+?))?\. Nothing was run", result.stdout)
    assert summary, result.stdout
    assert set(summary[1].split(", ")) == ran(result.stdout), "DVC's dry run printed each one with its command"
    return summary[1].split(", "), summary[2].split(", ") if summary[2] else []


def assert_nothing_to_do(repo: Path, env: dict[str, str]) -> None:
    assert (repo / SIMPLIFIED_MODEL).is_file()
    status = dvc(repo, env, "status", "dvc.yaml")
    assert [line for line in status.splitlines() if line and not line.startswith("\t")] == ["sources:"], status
    assert ran(dvc(repo, env, "repro")) == {"sources"}, "only the always-changed checksum of the image folder"


def test_local_remote_round_trip(origin: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = origin
    # A team's remote, as the README sets one: committed in .dvc/config, so every clone knows it.
    dvc(repo, env, "remote", "add", "--default", "team", str(tmp_path / "remote"))
    commit(repo, "the team's DVC remote")
    assert readme_command("push") == ["push", "--run-cache", "dvc.yaml"]
    push = dvc(repo, env, *readme_command("push"))
    assert any((tmp_path / "remote" / "runs").iterdir()), "the run-cache was pushed"
    assert "Missing cache files" not in push, "nothing it was asked for is missing"

    clone = fresh_clone(repo, tmp_path / "clone")
    # Nothing pulled yet: every stage reads another's output that is not there. The preview survives each (DVC's
    # own `dvc exp run --dry` stops at the first: treeverse/dvc#9021) and lists them all; it writes nothing.
    assert set(sum(preview(clone, env, "-S", "model.dropout=0.3"), [])) == set(STAGES)
    assert not (clone / SIMPLIFIED_MODEL).exists()
    assert readme_command("pull") == ["pull", "--run-cache", "dvc.yaml"]
    dvc(clone, env, *readme_command("pull"))
    assert_nothing_to_do(clone, env)
    # Without the target, as the README had it: the default pipeline comes back, and exit 1 on cifar/'s output.
    every_pipeline = subprocess.run(
        [sys.executable, "-m", "dvc", "pull", "--run-cache"], cwd=clone, env=env, capture_output=True, text=True
    )
    assert every_pipeline.returncode == 1 and "cifar/built.txt" in every_pipeline.stderr, every_pipeline.stderr
    # The preview names what the experiment then runs, and leaves params.yaml as it was.
    would_run, downstream = preview(clone, env, "-S", "model.dropout=0.3")
    assert would_run == ["sources", "train@pets-tiny_simplified"]
    assert downstream == ["evaluate@pets-tiny_simplified", "plot@pets", "report"]
    assert (clone / "params.yaml").read_bytes() == (repo / "params.yaml").read_bytes()
    output = dvc(clone, env, "exp", "run", "-n", "dropout-0.3", "-S", "model.dropout=0.3")
    assert ran(output) == DROPOUT_STAGES == {*would_run, *downstream}  # only what uses the param reruns

    # The experiment in `dvc exp show`, and its results against the baseline commit (`dvc metrics diff`,
    # `dvc exp diff`; two experiments against each other: test_data_curve_dvc).
    table = json.loads(dvc(clone, env, "exp", "show", "--json"))
    assert "dropout-0.3" in {exp["name"] for baseline in table for exp in (baseline.get("experiments") or [])}
    shown = dvc(clone, env, "exp", "show", "--md")
    assert "dropout-0.3" in shown and "0.3" in shown
    diff = json.loads(dvc(clone, env, "metrics", "diff", "HEAD", "--json", "--all"))
    simplified = diff["metrics/pets/tiny_simplified.json"]
    assert simplified["test_accuracy"]["old"] is not None and "new" in simplified["test_accuracy"]
    assert "metrics/pets/tiny_overfit.json" not in diff or all(
        change.get("diff") in (0, None) for change in diff["metrics/pets/tiny_overfit.json"].values()
    )
    exp_diff = json.loads(dvc(clone, env, "exp", "diff", "HEAD", "dropout-0.3", "--json"))
    dropout = exp_diff["params"]["params.yaml"]["model.dropout"]
    assert (dropout["old"], dropout["new"]) == (0.4, 0.3)
    assert "metrics/pets/tiny_simplified.json" in exp_diff["metrics"]

    # The teammate shares the experiment (the README's push, its results still in the workspace: `dvc push` sends
    # the outputs of the workspace, the run-cache only the entries that name them).
    tried = read_json(clone / "metrics/pets/tiny_simplified.json")
    dvc(clone, env, *readme_command("push"))

    # The preview of the set-back: DVC's dry run looks the run-cache up with the inputs of the last run, and its
    # "is cached - skipping run" lines (then "Running stage" for the same stage) are left out.
    previewed = subprocess.run(
        [sys.executable, "-m", "overfit_first", "preview", "-S", "model.dropout=0.4"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "would run sources, train@pets-tiny_simplified" in previewed.stdout, previewed.stdout + previewed.stderr
    assert (
        "is cached" not in previewed.stdout + previewed.stderr and "restored from DVC's run-cache" in previewed.stdout
    )

    # Back to the committed 0.4: the training comes back from DVC's run-cache (pulled above) in seconds, because every
    # output of train@ is cached. (The cheap stages after it would run; plot@ always does: test_dvc_deps.)
    git(clone, "checkout", "params.yaml")
    back = dvc(clone, env, "repro", "train@pets-tiny_simplified")
    assert ran(back) == {"sources"}, back
    assert "Stage 'train@pets-tiny_simplified' is cached - skipping run, checking out outputs" in back
    assert hashlib.md5((clone / SIMPLIFIED_MODEL).read_bytes()).hexdigest() == model_md5(clone, "tiny_simplified")

    # A pull request sets 0.3 without a new dvc.lock: CI restores from the team's remote, and the workflow's repro
    # restores the teammate's training instead of retraining it on another CPU.
    ci = fresh_clone(repo, tmp_path / "ci")
    params = yaml.safe_load((ci / "params.yaml").read_text(encoding="utf-8"))
    params["model"]["dropout"] = 0.3
    (ci / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    restored = ci_restore(ci, env, DVC_REMOTE_URL=str(tmp_path / "remote"))
    assert restored.returncode == 0 and "warning" not in restored.stderr, restored.stdout + restored.stderr
    # (The workflows run it without a stage, the whole pipeline; here up to evaluate@, which reads the model.)
    checked = ci_restore(ci, env, "repro", "evaluate@pets-tiny_simplified")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert ran(checked.stdout) == {"sources", "evaluate@pets-tiny_simplified"}, checked.stdout
    assert "Stage 'train@pets-tiny_simplified' is cached - skipping run, checking out outputs" in checked.stdout
    assert read_json(ci / "metrics/pets/tiny_simplified.json")["test_accuracy"] == tried["test_accuracy"]


def test_s3_remote_through_ci_restore(origin: tuple[Path, dict[str, str]], s3_endpoint: str, tmp_path: Path) -> None:
    repo, env = origin
    env = {**env, **S3_CREDENTIALS}
    url = f"s3://{BUCKET}/dvc"
    dvc(repo, env, "remote", "add", "--local", "s3", url)
    dvc(repo, env, "remote", "modify", "--local", "s3", "endpointurl", s3_endpoint)
    dvc(repo, env, *readme_command("push"), "--remote", "s3")
    keys = [item["Key"] for item in s3_client(s3_endpoint).list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert any(key.startswith("dvc/files/md5/") for key in keys) and any(key.startswith("dvc/runs/") for key in keys)

    # CI with the team's remote as secrets: scripts/ci_restore.sh configures it and pulls.
    clone = fresh_clone(repo, tmp_path / "clone")
    result = ci_restore(clone, env, DVC_REMOTE_URL=url, DVC_REMOTE_ENDPOINT=s3_endpoint)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ci_restore: warning" not in result.stderr, result.stdout + result.stderr
    assert "built.txt" not in result.stdout + result.stderr, "CI pulls the pipeline it reproduces, and only that"
    assert "testing" not in (clone / ".dvc" / "config.local").read_text(), "no credentials written to disk"
    assert any((clone / ".dvc" / "cache" / "runs").rglob("*")), "the run-cache came along"
    assert_nothing_to_do(clone, env)


def test_actions_cache_restore_then_only_the_change_runs(origin: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = origin
    clone = fresh_clone(repo, tmp_path / "clone")
    # What actions/cache/restore puts in place: the main branch's .dvc/cache, outputs and run-cache.
    shutil.copytree(repo / ".dvc" / "cache", clone / ".dvc" / "cache")
    result = ci_restore(clone, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Actions cache" in result.stdout
    assert_nothing_to_do(clone, env)

    # A pull request that changes model.dropout: the workflow's `dvc repro` starts with the one stage that uses it
    # and skips the rest (a dry run, which cannot show the stages its outputs then change: the real run of the same
    # change is test_local_remote_round_trip's `dvc exp run`, DROPOUT_STAGES).
    params = yaml.safe_load((clone / "params.yaml").read_text(encoding="utf-8"))
    params["model"]["dropout"] = 0.3
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    # (`sources`, always changed, checksums the image folder: unchanged, it reruns no download.)
    assert ran(dvc(clone, env, "repro", "--dry")) == {"sources", "train@pets-tiny_simplified"}
