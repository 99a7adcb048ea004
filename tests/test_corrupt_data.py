"""Corrupt or stale data files fail with an error that names the file and the command that rebuilds it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from overfit_first.data import raw
from overfit_first.data.splits import Split, load_split, save_split
from overfit_first.errors import PipelineError

from data_fixtures import project, run_data_stage


def _prepared(directory: Path, count: int = 12) -> Path:
    """A small, consistent prepared dataset `tiny` (summary.json matching its files)."""
    out = directory / "tiny"
    out.mkdir(parents=True)
    counts = {}
    for split in ("train", "valid", "test"):
        save_split(out / f"{split}.npz", Split(x=np.zeros((count, 32, 32, 1), np.uint8), y=np.arange(count) % 3))
        counts[split] = {"count": count, "class_counts": [count // 3] * 3}
    summary = {
        "dataset": "tiny",
        "image_shape": [32, 32, 1],
        "num_classes": 3,
        "class_names": ["a", "b", "c"],
        "superclass_names": None,
        "splits": counts,
    }
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def test_truncated_npz_names_file_and_rebuild_command(tmp_path: Path) -> None:
    out = _prepared(tmp_path)
    path = out / "train.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PipelineError) as error:
        load_split(out, "train")
    assert str(path) in str(error.value) and "dvc repro --force prepare@tiny" in str(error.value)


def test_wrong_shape_is_stale_data(tmp_path: Path) -> None:
    out = _prepared(tmp_path)
    save_split(out / "valid.npz", Split(x=np.zeros((12, 28, 28, 1), np.uint8), y=np.zeros(12, np.int64)))
    with pytest.raises(PipelineError, match=r"valid\.npz does not match .*summary\.json.*stale.*prepare@tiny"):
        load_split(out, "valid")


def test_file_not_matching_its_summary(tmp_path: Path) -> None:
    out = _prepared(tmp_path)
    save_split(out / "test.npz", Split(x=np.zeros((5, 32, 32, 1), np.uint8), y=np.zeros(5, np.int64)))
    with pytest.raises(PipelineError, match=r"test\.npz does not match"):
        load_split(out, "test")


def test_labels_out_of_range(tmp_path: Path) -> None:
    out = _prepared(tmp_path)
    save_split(out / "train.npz", Split(x=np.zeros((12, 32, 32, 1), np.uint8), y=np.full(12, 7)))
    with pytest.raises(PipelineError, match=r"train\.npz has labels outside 0\.\.2"):
        load_split(out, "train")


def test_corrupt_summary(tmp_path: Path) -> None:
    out = _prepared(tmp_path)
    (out / "summary.json").write_text("{not json")
    with pytest.raises(PipelineError, match=r"summary\.json is corrupt.*prepare@tiny"):
        load_split(out, "train")


def test_prepare_stage_on_truncated_raw_file(tmp_path: Path) -> None:
    """The real stage process: exit 1, the raw file named, the download command to rebuild, no output."""
    directory = project(tmp_path)
    split = Split(x=np.zeros((20, 28, 28, 1), np.uint8), y=np.arange(20) % 2)
    raw.write(
        directory / "data/raw/tiny",
        raw.RawData(split, split, ["a", "b"]),
        {"dataset": "tiny", "source": "test", "class_names": ["a", "b"], "superclass_names": None, "files": []},
    )
    truncated = directory / "data/raw/tiny/train.npz"
    truncated.write_bytes(truncated.read_bytes()[:100])
    result = run_data_stage(directory, "prepare", "tiny", tmp_path)
    assert result.returncode == 1
    assert "data/raw/tiny" in result.stderr and "dvc repro --force download@tiny" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (directory / "data/prepared").exists()
