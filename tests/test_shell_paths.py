"""The Makefile's recipes and the documentation's shell snippets work from a checkout whose path holds a space.

Before, `make mlflow-ui` there failed with `Got unexpected extra argument (...mlflow.db)`: the path reached
`mlflow ui` unquoted and split in two. Every recipe (`make -n`) and every ```bash block of README.md and docs/*.md
(conftest.docs_bash_blocks) is run by a real bash in such a checkout, with HOME holding a space too; external
commands are recorded (bash's command_not_found_handle, PATH empty) rather than run, and no argument may hold a piece
of either path without all of it. Then `make mlflow-ui` and the documentation's `mlflow ui` line are started for real.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO, docs_bash_blocks, free_port

# bash calls this for every command it cannot find: with PATH empty, every external command.
RECORDER = r"""command_not_found_handle() { printf '%s\0' "$@" >> "$RECORD"; printf '\036' >> "$RECORD"; return 0; }
"""


def checkout(tmp_path: Path, venv: Path | None = None) -> Path:
    """A directory with a space in its path, holding the Makefile and `venv` as .venv (default: an empty
    .venv/bin/activate)."""
    root = tmp_path / "check QZX"
    root.mkdir()
    shutil.copy2(REPO / "Makefile", root / "Makefile")
    if venv is not None:
        (root / ".venv").symlink_to(venv)
    else:
        (root / ".venv" / "bin").mkdir(parents=True)
        (root / ".venv" / "bin" / "activate").write_text("")
    return root


def recorded_commands(script: str, cwd: Path, home: Path) -> list[list[str]]:
    """Run `script` with bash in `cwd`; the argument vectors of the external commands it would have run."""
    record = cwd.parent / "commands"
    record.write_bytes(b"")
    env = {"PATH": "/nonexistent", "HOME": str(home), "RECORD": str(record)}
    subprocess.run(["/bin/bash", "-c", RECORDER + script], cwd=cwd, env=env, capture_output=True, timeout=60)
    records = record.read_bytes().decode().split("\036")[:-1]
    return [record.split("\0")[:-1] for record in records]


def split_pieces(commands: list[list[str]], path: Path) -> list[str]:
    """Arguments holding the part of `path` before or after its space, but not the whole path."""
    head, _, tail = str(path).partition(" ")
    return [
        argument
        for command in commands
        for argument in command
        if (head in argument or argument.startswith(tail)) and str(path) not in argument
    ]


def make_targets() -> list[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return re.findall(r"^([A-Za-z][\w-]*):(?!=)", text, flags=re.MULTILINE)


def readme_bash_blocks() -> list[str]:
    """The ```bash blocks of README.md and docs/*.md."""
    return docs_bash_blocks()


def test_every_make_target_is_phony_and_defined() -> None:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    phony = re.search(r"^\.PHONY:(.*)$", text, flags=re.MULTILINE)
    assert phony is not None and sorted(phony.group(1).split()) == sorted(make_targets())


@pytest.mark.parametrize("target", make_targets())
def test_make_recipes_keep_paths_whole(tmp_path: Path, target: str) -> None:
    root, home = checkout(tmp_path), tmp_path / "home QZX"
    # The Makefile's default port; and no make of our own: under `make test` MAKELEVEL would make this `make -n`
    # print "Entering directory" lines among the commands.
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_PORT", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    recipe = subprocess.run(
        ["make", "-n", target], cwd=root, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    commands = recorded_commands(recipe.stdout, root, home)
    assert commands, recipe.stdout
    assert split_pieces(commands, root) == [] and split_pieces(commands, home) == []
    if target == "mlflow-ui":
        assert commands == [
            [
                "python",
                "-m",
                "overfit_first",
                "tracking",
                "links",
                "--store",
                f"sqlite:///{root}/mlflow.db",
                "--url",
                "http://127.0.0.1:5000",
            ],
            [
                "mlflow",
                "ui",
                "--backend-store-uri",
                f"sqlite:///{root}/mlflow.db",
                "--host",
                "127.0.0.1",
                "--port",
                "5000",
                "--workers",
                "1",
            ],
        ]


def test_readme_snippets_keep_paths_whole(tmp_path: Path) -> None:
    root, home = checkout(tmp_path), tmp_path / "home QZX"
    blocks = readme_bash_blocks()
    assert blocks
    commands = [command for block in blocks for command in recorded_commands(block, root, home)]
    assert split_pieces(commands, root) == [] and split_pieces(commands, home) == []
    assert ["mlflow", "ui", "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--workers", "1"] in commands


def readme_mlflow_ui() -> str:
    """The documentation's own `mlflow ui` command line (docs/mlflow.md)."""
    lines = [line for block in readme_bash_blocks() for line in block.splitlines() if " mlflow ui " in f" {line}"]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.slow
def test_mlflow_ui_starts_from_a_checkout_with_a_space(tmp_path: Path) -> None:
    """`make mlflow-ui`, then the README's `mlflow ui` line, each serving the checkout's mlflow.db (the first
    creates it: the second starts on an existing store, as a user's second start does)."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("needs the project's virtualenv (scripts/setup.sh) for .venv/bin/activate")
    root = checkout(tmp_path, venv=Path(sys.prefix))
    for command in ("make mlflow-ui", "readme"):
        port = free_port()
        script = command if command != "readme" else f". .venv/bin/activate && {readme_mlflow_ui()}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
        env["MLFLOW_PORT"] = str(port)  # read by the Makefile (?=) and by `mlflow ui` itself
        log_path = tmp_path / f"{command.split()[0]}.log"
        with log_path.open("w") as log:
            server = subprocess.Popen(
                ["/bin/bash", "-c", script],
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + 180
                while not healthy(f"http://127.0.0.1:{port}/health"):
                    if server.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"`{script}` did not serve:\n{log_path.read_text()}")
                    time.sleep(0.5)
                assert (root / "mlflow.db").is_file(), "the store is the checkout's mlflow.db"
                api = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments"
                if command == "readme":  # the same store as make's: it holds what was written through make's
                    found = requests.get(f"{api}/get-by-name", params={"experiment_name": "via-make"}, timeout=30)
                    assert found.status_code == 200, found.text
                else:
                    assert requests.post(f"{api}/create", json={"name": "via-make"}, timeout=30).status_code == 200
            finally:
                os.killpg(server.pid, signal.SIGTERM)  # its own session: bash, make, mlflow and its workers
                server.wait(timeout=60)


def healthy(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False
