"""Progress bars suit where they go (overfit_first.progress): live on a terminal, a few whole lines in a file
or CI log. Before, every redraw of a download's bar landed in a log as one more carriage-return fragment.

Every progress display of the project is covered: the download bar (data.fetch), the archive and image-folder
bars of the download stage (data.archives, data.image_folder), and Keras's training log (verbose=2, checked in
test_interruption on the train stage's piped output).
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest

from overfit_first import progress
from overfit_first.data import fetch
from overfit_first.data.sources import RemoteFile

from data_fixtures import Serve, image_folder, isolate, project, run_data_stage, serve, tar_gz

MIB = 1 << 20


def test_in_a_log_a_bar_writes_its_first_and_last_state_as_whole_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVERFIT_FIRST_PROGRESS_INTERVAL", raising=False)
    log = io.StringIO()
    with progress.bar(total=10_000, desc="data.bin", file=log, leave=False) as bar:
        for _ in range(10_000):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    assert len(lines) == 2 and lines[0].startswith("data.bin:   0%") and lines[1].startswith("data.bin: 100%")


def test_in_a_log_a_long_task_shows_its_progress_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERFIT_FIRST_PROGRESS_INTERVAL", "0.2")
    log = io.StringIO()
    with progress.bar(total=20, desc="slow", file=log) as bar:
        for _ in range(20):
            time.sleep(0.05)  # one second in all: about five lines in between
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert 4 <= len(lines) <= 10, lines
    assert all(line.startswith("slow:") for line in lines) and lines[-1].startswith("slow: 100%")


def test_on_a_terminal_the_bar_redraws_in_place() -> None:
    leader, follower = os.openpty()
    with open(leader, "rb", buffering=0) as screen:
        with open(follower, "w", encoding="utf-8") as terminal:
            with progress.bar(total=3, desc="live", file=terminal) as bar:
                for _ in range(3):
                    bar.update(1)
        # One read returns what the terminal holds at that moment, maybe only the first redraw: read to the end
        # (EIO on Linux once the other side is closed and everything was read).
        shown = b""
        while True:
            try:
                chunk = screen.read(4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    assert b"\rlive:" in shown and b"live: 100%" in shown


def test_the_download_bar_suits_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate(tmp_path, monkeypatch)
    monkeypatch.delenv("OVERFIT_FIRST_PROGRESS_INTERVAL", raising=False)
    content = os.urandom(8 * MIB)  # eight chunks of the downloader: eight updates of its bar
    file = RemoteFile(name="data.bin", urls=(), checksums=(f"sha256:{hashlib.sha256(content).hexdigest()}",))
    with serve() as server:
        server.routes["/data.bin"] = Serve(content)
        fetch.Downloader(retries=1, backoff_s=0.0).download(server.url("data.bin"), file, tmp_path / "data.bin")
    log = capsys.readouterr().err  # captured: not a terminal, like a CI log
    assert "\r" not in log
    assert [line.split("|")[0] for line in log.splitlines()] == ["data.bin:   0%", "data.bin: 100%"]


@pytest.mark.parametrize("kind", ["archive", "directory"])
def test_the_download_stage_writes_a_few_whole_lines_to_a_log_file(tmp_path: Path, kind: str) -> None:
    """`python -m stages.download` on an image folder, its stderr a pipe, not a terminal: as under `dvc repro > log`."""
    image_folder(tmp_path / "tree", n_train=40, n_test=10)
    source = tar_gz(tmp_path / "tree", tmp_path / "tree.tar.gz") if kind == "archive" else tmp_path / "tree"
    directory = project(tmp_path, data={"datasets": ["fashion_mnist", "tiny"], "image_folders": {"tiny": str(source)}})
    result = run_data_stage(directory, "download", "tiny", tmp_path)
    assert result.returncode == 0, result.stderr
    bar = "tree.tar.gz:" if kind == "archive" else "tree:"
    lines = [line for line in result.stderr.splitlines() if line.startswith(bar)]
    assert "\r" not in result.stderr
    assert len(lines) == 2 and "100%" in lines[-1], result.stderr
