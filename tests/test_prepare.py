"""The prepare stage: validation = the first images, stratified limit, padding, summary, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from overfit_first.config import PrepareConfig
from overfit_first.data import prepare, raw
from overfit_first.data.splits import Split, file_sha256, load_split
from overfit_first.errors import PipelineError

from data_fixtures import files_under, project, run_data_stage

CLASSES = [f"class{index}" for index in range(4)]


def _write_raw(root: Path, n_train: int = 40, n_test: int = 8, side: int = 28, coarse: bool = False) -> raw.RawData:
    """Raw data whose pixel (0, 0) is the image's index, so every row can be traced back."""

    def split(count: int, offset: int) -> Split:
        x = np.zeros((count, side, side, 1), np.uint8)
        x[:, 0, 0, 0] = np.arange(offset, offset + count)
        x[:, 1:, 1:, 0] = 200
        y = np.arange(count) % len(CLASSES)
        return Split(x=x, y=y.astype(np.int64), y_coarse=(y // 2) if coarse else None)

    data = raw.RawData(split(n_train, 0), split(n_test, 100), CLASSES, ["low", "high"] if coarse else None)
    raw.write(
        root / "data" / "raw" / "tiny",
        data,
        {
            "dataset": "tiny",
            "source": "test",
            "class_names": CLASSES,
            "superclass_names": data.superclass_names,
            "files": [],
        },
    )
    return data


def test_stage_splits_pads_and_summarises(tmp_path: Path) -> None:
    directory = project(tmp_path, prepare={"valid_size": 10, "sample_size": None, "pad_to": 32})
    _write_raw(directory)
    result = run_data_stage(directory, "prepare", "tiny", tmp_path)
    assert result.returncode == 0, result.stderr
    out = directory / "data" / "prepared" / "tiny"
    assert files_under(out) == ["summary.json", "test.npz", "train.npz", "valid.npz"]
    valid, train, test = (load_split(out, name) for name in ("valid", "train", "test"))
    assert valid.x[:, 2, 2, 0].tolist() == list(range(10))  # the FIRST 10 training images (pixel 0,0 moved by 2)
    assert train.x[:, 2, 2, 0].tolist() == list(range(10, 40))
    assert test.x[:, 2, 2, 0].tolist() == list(range(100, 108))
    # Centred zero padding: 28 -> 32 adds two blank rows and columns on each side.
    assert train.x.shape[1:] == (32, 32, 1)
    assert not train.x[:, :2].any() and not train.x[:, 30:].any() and not train.x[:, :, 30:].any()
    assert (train.x[:, 3:30, 3:30] == 200).all()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["image_shape"] == [32, 32, 1] and summary["num_classes"] == 4
    assert summary["class_names"] == CLASSES and summary["superclass_names"] is None
    valid_entry = {"count": 10, "class_counts": [3, 3, 2, 2], "sha256": file_sha256(out / "valid.npz")}
    assert summary["splits"]["valid"] == valid_entry
    assert summary["splits"]["train"]["class_counts"] == [7, 7, 8, 8]
    assert "uint8" in summary["scale"]


def test_stage_applies_a_stratified_order_keeping_limit(tmp_path: Path) -> None:
    directory = project(tmp_path, prepare={"valid_size": 8, "sample_size": 12, "pad_to": None, "sample_seed": 3})
    _write_raw(directory, n_train=48, coarse=True)
    result = run_data_stage(directory, "prepare", "tiny", tmp_path)
    assert result.returncode == 0, result.stderr
    train = load_split(directory / "data" / "prepared" / "tiny", "train")
    indices = train.x[:, 0, 0, 0].astype(int)
    assert len(indices) == 12 and np.all(np.diff(indices) > 0) and indices.min() >= 8  # original order kept
    assert np.bincount(train.y).tolist() == [3, 3, 3, 3]
    np.testing.assert_array_equal(train.y, indices % 4)  # labels still travel with their images
    np.testing.assert_array_equal(train.y_coarse, train.y // 2)
    assert train.x.shape[1:] == (28, 28, 1)  # pad_to: null keeps the size


def test_stratified_sample_keeps_proportions_and_every_class() -> None:
    y = np.repeat([0, 1, 2, 3], [60, 30, 9, 1])
    picked = prepare.stratified_sample(y, 20, 4, seed=0)
    # One image per class first, the other 16 in proportion to what is left (59:29:8:0).
    assert np.bincount(y[picked], minlength=4).tolist() == [11, 6, 2, 1]
    assert np.all(np.diff(picked) > 0)
    np.testing.assert_array_equal(picked, prepare.stratified_sample(y, 20, 4, seed=0))
    assert not np.array_equal(picked, prepare.stratified_sample(y, 20, 4, seed=1))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"valid_size": 40}, "prepare.valid_size = 40: must be at least 1 and below the 40 training images of tiny"),
        ({"sample_size": 3}, "prepare.sample_size = 3: must be null or at least the 4 classes of tiny"),
        ({"pad_to": 16}, "prepare.pad_to = 16: smaller than the 28x28 images of tiny; use null or at least 28"),
    ],
)
def test_invalid_settings_fail_clearly_and_keep_previous_output(tmp_path: Path, settings: dict, message: str) -> None:
    directory = project(tmp_path, prepare={"valid_size": 10, "sample_size": None, "pad_to": 32, **settings})
    _write_raw(directory)
    previous = directory / "data" / "prepared" / "tiny"
    previous.mkdir(parents=True)
    (previous / "summary.json").write_text("{}", encoding="utf-8")
    result = run_data_stage(directory, "prepare", "tiny", tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert files_under(directory / "data" / "prepared") == ["tiny/summary.json"]


def test_a_failure_while_writing_leaves_no_partial_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_raw(tmp_path)
    calls: list[Path] = []
    real_save = prepare.save_split

    def save_then_fail(path: Path, split: Split) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real_save(path, split)

    monkeypatch.setattr(prepare, "save_split", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        prepare.prepare(
            "tiny",
            PrepareConfig(valid_size=10, sample_size=None, sample_seed=0, pad_to=None),
            tmp_path / "data" / "raw",
            tmp_path / "out",
        )
    assert list((tmp_path / "out").iterdir()) == []  # not even an empty temporary directory


def test_missing_raw_data_says_which_stage_to_run(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"run `dvc repro download@tiny` first"):
        prepare.prepare(
            "tiny",
            PrepareConfig(valid_size=10, sample_size=None, sample_seed=0, pad_to=None),
            raw_root=tmp_path,
            root=tmp_path / "out",
        )
